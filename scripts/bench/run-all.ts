// `npm run bench`: every benchmark in scripts/bench, one after another, each reporting against a
// baseline measured in the same run. Figures go to stdout and to reports/bench-*.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { main as ingest } from './ingest.ts';
import { main as plan } from './plan.ts';
import { main as precompute } from './precompute.ts';
import { main as serve } from './serve.ts';
import { main as views } from './views.ts';

const benches: [string, () => Promise<void>][] = [
  ['login path (scripts/bench/serve.ts)', () => serve([])],
  ['interactions API (scripts/bench/ingest.ts)', async () => void (await ingest([]))],
  [
    'batch precompute (scripts/bench/precompute.ts)',
    async () => {
      const result = await precompute();
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      mkdirSync('reports', { recursive: true });
      writeFileSync('reports/bench-precompute.json', JSON.stringify(result, null, 2));
    },
  ],
  [
    'planner (scripts/bench/plan.ts)',
    async () => {
      const result = await plan([]);
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      mkdirSync('reports', { recursive: true });
      writeFileSync('reports/bench-plan.json', JSON.stringify(result, null, 2));
    },
  ],
  [
    "analysts' views at 1M users (scripts/bench/views.ts)",
    async () => {
      const result = await views([]);
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      mkdirSync('reports', { recursive: true });
      writeFileSync('reports/bench-views.json', JSON.stringify(result, null, 2));
    },
  ],
];

for (const [name, run] of benches) {
  process.stdout.write(`\n== ${name}\n`);
  await run();
}
