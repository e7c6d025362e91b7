// Propensity training at scale: `npx tsx scripts/bench/train.ts [--users 1000000] [--days 35]
// [--runs 3] [--schema bench_train] [--keep] [--max-training-rows N]`.
//
// Fills a schema of its own with the logins of a generated population (`prewarm generate`'s
// generator, fixed seed; interactions are not stored) unless it already holds logins, then runs
// `train-propensity`'s code (trainPropensity, on the logins table) `--runs` times, each in a fresh
// process, and reports each run's wall time and peak RSS (getrusage's ru_maxrss, what
// `/usr/bin/time -v` calls "Maximum resident set size") with what was sampled. The machine is
// shared: compare runs taken side by side, never with a figure from another day. The schema is
// dropped at the end unless --keep (generating a million users takes minutes; keep it to re-run).
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { from as copyFrom } from 'pg-copy-streams';
import pino from 'pino';
import { systemClock } from '../../src/clock.ts';
import { createPool } from '../../src/db/pool.ts';
import { migrate, quoteIdent } from '../../src/db/migrate.ts';
import { trainPropensity } from '../../src/propensity/train.ts';
import { streamActivity } from '../../src/replay/generate.ts';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const DAY = 86_400_000;

const { values: flags } = parseArgs({
  options: {
    users: { type: 'string', default: '1000000' },
    days: { type: 'string', default: '35' },
    runs: { type: 'string', default: '3' },
    schema: { type: 'string', default: 'bench_train' },
    keep: { type: 'boolean', default: false },
    'max-training-rows': { type: 'string' },
    child: { type: 'boolean', default: false },
  },
});
const log = pino({ level: 'silent' });
const maxTrainingRows = flags['max-training-rows'] === undefined ? undefined : Number(flags['max-training-rows']);

interface RunResult {
  wallMs: number;
  maxRssMb: number;
  fitRows: number;
  calibrationRows: number;
  calibrationAveragePrecision: number;
  sample: unknown;
}

/** One training, in this process: what `prewarm train-propensity` runs. */
async function child(): Promise<void> {
  const pool = createPool({ databaseUrl: DATABASE_URL, schema: flags.schema, log, max: 2 });
  const started = performance.now();
  const stored = await trainPropensity({ pool, log, clock: systemClock, windowMs: DAY, maxTrainingRows });
  const wallMs = performance.now() - started;
  await pool.end();
  const m = stored.metrics;
  const result: RunResult = {
    wallMs: Math.round(wallMs),
    maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    fitRows: m.fitRows,
    calibrationRows: m.calibrationRows,
    calibrationAveragePrecision: m.calibrationAveragePrecision,
    sample: m.sample,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** Migrates the schema and loads a generated population's logins, unless it has logins already. */
async function prepare(): Promise<{ logins: number }> {
  const pool = createPool({ databaseUrl: DATABASE_URL, schema: flags.schema, log, max: 2 });
  try {
    await migrate({ pool, schema: flags.schema, log });
    const existing = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM logins');
    if ((existing.rows[0]?.n ?? 0) > 0) return { logins: existing.rows[0]?.n ?? 0 };
    const users = Number(flags.users);
    const days = Number(flags.days);
    process.stderr.write(`generating ${users} users over ${days} days into schema ${flags.schema} …\n`);
    const started = performance.now();
    const activity = streamActivity({ seed: 42, users, days, start: new Date('2024-01-01T00:00:00Z') });
    let logins = 0;
    const client = await pool.connect();
    try {
      for (const day of activity.days) {
        const lines = day.logins.map((login) => `${login.userId}\t${login.at.toISOString()}\n`);
        logins += lines.length;
        await pipeline(Readable.from([lines.join('')]), client.query(copyFrom('COPY logins (user_id, at) FROM STDIN')));
      }
      // Fresh statistics and the visibility map, as `prewarm import` leaves them.
      await client.query('VACUUM ANALYZE logins');
    } finally {
      client.release();
    }
    process.stderr.write(`${logins} logins in ${Math.round((performance.now() - started) / 1000)} s\n`);
    return { logins };
  } finally {
    await pool.end();
  }
}

function runChild(): Promise<RunResult> {
  const args = ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', '--schema', flags.schema];
  if (maxTrainingRows !== undefined) args.push('--max-training-rows', String(maxTrainingRows));
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    proc.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    proc.once('exit', (code) => (code === 0 ? resolve(JSON.parse(stdout) as RunResult) : reject(new Error(`training run exited with ${code}`))));
  });
}

async function main(): Promise<void> {
  const { logins } = await prepare();
  const results: RunResult[] = [];
  try {
    for (let run = 0; run < Number(flags.runs); run++) {
      const result = await runChild();
      results.push(result);
      process.stdout.write(`run ${run + 1}: ${(result.wallMs / 1000).toFixed(1)} s, peak RSS ${result.maxRssMb} MB, ${result.fitRows + result.calibrationRows} rows, ${JSON.stringify(result.sample)}\n`);
    }
  } finally {
    if (!flags.keep) {
      const pool = createPool({ databaseUrl: DATABASE_URL, log, max: 1 });
      await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(flags.schema)} CASCADE`);
      await pool.end();
    }
  }
  const report = { users: Number(flags.users), days: Number(flags.days), logins, maxTrainingRows, runs: results };
  mkdirSync('reports', { recursive: true });
  writeFileSync('reports/bench-train.json', JSON.stringify(report, null, 2));
}

await (flags.child ? child() : main());
