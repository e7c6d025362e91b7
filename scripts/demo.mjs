#!/usr/bin/env node
// The main job (`npm run demo`): make sure PostgreSQL and Redis answer, migrate, generate a
// synthetic activity log with a fixed seed (or take the files given), and replay about 60 days of
// it through the real components, printing prewarm's policy beside "precompute everyone" and
// "on demand only", and the path of the HTML report.
//
//   npm run demo
//   npm run demo -- --logins L.csv.gz --interactions I.csv.gz [--from D] [--to D] [--policy SPEC]
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const started = Date.now();

function run(command, commandArgs) {
  const result = spawnSync(command, commandArgs, { cwd: root, stdio: 'inherit', env: { PREWARM_LOG_LEVEL: 'warn', ...process.env } });
  if (result.status !== 0) {
    process.stderr.write(`demo: ${command} ${commandArgs.join(' ')} failed (exit ${result.status ?? result.signal})\n`);
    process.exit(result.status ?? 1);
  }
}
const prewarm = (...commandArgs) => run(process.execPath, [join(root, 'src/cli/bin.mjs'), ...commandArgs]);

run('bash', [join(root, 'scripts/services.sh')]);
prewarm('migrate');

let replayArgs = args;
if (!args.includes('--logins')) {
  const dataDir = join(root, 'reports', 'demo-data');
  mkdirSync(dataDir, { recursive: true });
  // 90 days: the first 30 are history the models learn from, the last 60 are replayed.
  prewarm('generate', '--out', dataDir, '--seed', '42', '--users', '1500', '--days', '90', '--start', '2024-01-01', '--gzip');
  replayArgs = [
    '--logins', join(dataDir, 'logins.csv.gz'),
    '--interactions', join(dataDir, 'interactions.csv.gz'),
    '--from', '2024-01-31', '--to', '2024-03-31',
    ...args,
  ];
}
if (!replayArgs.includes('--report')) replayArgs = [...replayArgs, '--report', join(root, 'reports', 'demo-replay.html')];
prewarm('replay', ...replayArgs);
process.stdout.write(`demo finished in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
