// Planner benchmark (`npm run bench`, or `node --import tsx scripts/bench/plan.ts --users 1000000`):
// N synthetic users with 3 logins each over 35 days, generated in SQL in a scratch schema; reports,
// beside a bare SQL aggregate over the same logins measured in the same run: the dry run, the full
// plan in one process, and the plan with 1 and 2 worker processes scoring its shards (tick → last
// chunk enqueued), each with its peak RSS, and the predictions rows written per run.
// Each planner runs in a fresh child process, so that its peak RSS is its own and not what an
// earlier mode left in the heap (the first version measured every planner in this process, after
// the dry run); its heap-used peak is reported beside RSS.
// Model-free (recency rule): training is measured by the propensity benchmarks, not here.
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import pino from 'pino';
import { VirtualClock } from '../../src/clock.ts';
import { migrate } from '../../src/db/migrate.ts';
import { createPool } from '../../src/db/pool.ts';
import { createPlanner } from '../../src/planner/planner.ts';
import { createWindowStore } from '../../src/planner/windows.ts';
import { createPlanShardWorker } from '../../src/precompute/plan-shard-worker.ts';
import { createPlanShardQueue, createPrecomputeQueue } from '../../src/precompute/queue.ts';
import { createRecencyScorer } from '../../src/propensity/recency-scorer.ts';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const log = pino({ level: 'silent' });
const START = Date.parse('2024-03-01T00:00:00Z');

function flag(args: string[], name: string, fallback: number): number {
  const at = args.indexOf(name);
  return at >= 0 ? Number(args[at + 1]) : fallback;
}

const mb = (bytes: number) => Math.round(bytes / 2 ** 20);

/** Peak RSS and heap used of this process while `work` runs, sampled every 20 ms. */
async function measured<T>(work: () => Promise<T>): Promise<{ result: T; seconds: number; startRssMb: number; peakRssMb: number; peakHeapUsedMb: number }> {
  const start = process.memoryUsage();
  let peak = start.rss;
  let heap = start.heapUsed;
  const sample = () => {
    const now = process.memoryUsage();
    peak = Math.max(peak, now.rss);
    heap = Math.max(heap, now.heapUsed);
  };
  const timer = setInterval(sample, 20);
  const started = performance.now();
  try {
    const result = await work();
    sample();
    return { result, seconds: (performance.now() - started) / 1000, startRssMb: mb(start.rss), peakRssMb: mb(peak), peakHeapUsedMb: mb(heap) };
  } finally {
    clearInterval(timer);
  }
}

interface PlanRequest {
  schema: string;
  prefix: string;
  name: string;
  policy: string;
  dryRun: boolean;
  /** Put the shards on the plan-shard queue (worker processes score them). */
  shards?: number;
  scheduledFor: number;
}

/** One planning, in a fresh child process: its own peak RSS, not an earlier mode's heap. */
async function plannerChild(request: PlanRequest): Promise<void> {
  const pool = createPool({ databaseUrl: DATABASE_URL, schema: request.schema, log, max: 6, applicationName: 'bench-plan' });
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const queue = createPrecomputeQueue({ connection: redis, prefix: request.prefix, log });
  const shardQueue = request.shards === undefined ? undefined : createPlanShardQueue({ connection: redis, prefix: request.prefix, log });
  const clock = new VirtualClock(START);
  await pool.query('SELECT 1');
  const { window } = await createWindowStore({ pool, clock }).set(request.name, { cron: '0 0 * * *', policy: request.policy, chunkSize: 500, holdoutRate: 0.01 });
  const planner = createPlanner({ pool, queue, scorer: createRecencyScorer({ pool }), clock, log, itemsPerUser: 20, ...(shardQueue ? { shardQueue, shards: request.shards } : {}) });
  let report: Record<string, unknown>;
  if (request.dryRun) {
    const run = await measured(() => planner.dryRun(window));
    report = { seconds: +run.seconds.toFixed(2), startRssMb: run.startRssMb, peakRssMb: run.peakRssMb, peakHeapUsedMb: run.peakHeapUsedMb, selected: run.result.selected };
  } else {
    const run = await measured(() => planner.planRun(window, new Date(request.scheduledFor)));
    const planned = run.result!.run;
    const written = (await pool.query('SELECT predictions_written AS n, shards FROM batch_runs WHERE id = $1', [planned.id])).rows[0];
    report = {
      seconds: +run.seconds.toFixed(2),
      plannerStartRssMb: run.startRssMb,
      plannerPeakRssMb: run.peakRssMb,
      plannerPeakHeapUsedMb: run.peakHeapUsedMb,
      shards: written.shards,
      selected: planned.selected,
      chunks: planned.chunksTotal,
      predictionsWritten: Number(written.n),
    };
  }
  await shardQueue?.close();
  await queue.close();
  redis.disconnect();
  await pool.end();
  process.send?.(report);
}

function runChild(args: string[]): Promise<Record<string, unknown>> {
  const child = fork(fileURLToPath(import.meta.url), args, { execArgv: ['--import', 'tsx'] });
  return new Promise((resolve, reject) => {
    child.once('message', (message) => resolve(message as Record<string, unknown>));
    child.once('exit', (code) => reject(new Error(`planner child exited with ${code} before reporting`)));
  });
}

/** A child process scoring plan shards until told to stop. */
async function shardWorkerChild(schema: string, prefix: string): Promise<void> {
  const pool = createPool({ databaseUrl: DATABASE_URL, schema, log, max: 4, applicationName: 'bench-plan-worker' });
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const chunkQueue = createPrecomputeQueue({ connection: redis, prefix, log });
  const worker = createPlanShardWorker({ connection: redis, prefix, pool, scorer: createRecencyScorer({ pool }), chunkQueue, clock: new VirtualClock(START), log });
  let peak = 0;
  let heap = 0;
  const timer = setInterval(() => {
    const now = process.memoryUsage();
    peak = Math.max(peak, now.rss);
    heap = Math.max(heap, now.heapUsed);
  }, 20);
  await worker.waitUntilReady();
  process.send?.({ ready: true });
  process.on('message', async () => {
    clearInterval(timer);
    await worker.close();
    await chunkQueue.close();
    redis.disconnect();
    await pool.end();
    process.send?.({ peakRssMb: mb(peak), peakHeapUsedMb: mb(heap) });
    process.exit(0);
  });
}

export async function main(args: string[] = process.argv.slice(2)) {
  const users = flag(args, '--users', 1_000_000);
  const schema = `bench_plan_${randomUUID().slice(0, 8)}`;
  const pool = createPool({ databaseUrl: DATABASE_URL, schema, log, max: 6, applicationName: 'bench-plan' });
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const children: ChildProcess[] = [];
  try {
    await migrate({ pool, schema, log });
    const imported = await measured(async () => {
      // 3 logins per user in the 35 days before START, at pseudo-random instants.
      await pool.query(
        `INSERT INTO logins (user_id, at)
         SELECT 'u' || g, to_timestamp($2::float8 / 1000) - make_interval(secs => ((hashint4(g * 3 + k) & 2147483647) % (35 * 86400)))
           FROM generate_series(1, $1::int) g, generate_series(0, 2) k
         ON CONFLICT DO NOTHING`,
        [users, START],
      );
      // Known since their first login (migration 0010): only known users are planned for.
      await pool.query(`INSERT INTO user_activity (user_id, first_login_at, last_login_at, login_count, known_since)
                        SELECT user_id, min(at), max(at), count(*), min(at) FROM logins GROUP BY user_id`);
      await pool.query('ANALYZE logins; ANALYZE user_activity');
      return Number((await pool.query('SELECT count(*) AS n FROM logins')).rows[0].n);
    });
    const bare = await measured(() => pool.query('SELECT user_id, count(*), max(at) FROM logins GROUP BY user_id'));
    const prefix = `bench-plan-${randomUUID().slice(0, 8)}`;
    const queue = createPrecomputeQueue({ connection: redis, prefix, log });
    const shardQueue = createPlanShardQueue({ connection: redis, prefix, log });
    const report: Record<string, unknown> = {
      users,
      logins: imported.result,
      importRowsPerSecond: Math.round(imported.result / imported.seconds),
      bareAggregateSeconds: +bare.seconds.toFixed(2),
    };
    let occurrence = 0;
    const planIn = (name: string, policy: string, extra: Partial<PlanRequest>) =>
      runChild(['--planner', JSON.stringify({ schema, prefix, name, policy, dryRun: false, scheduledFor: START + occurrence++ * 1000, ...extra } satisfies PlanRequest)]);
    report.dryRun = { policy: 'coverage:0.8', ...(await planIn('dry', 'coverage:0.8', { dryRun: true })) };
    report.planInProcess = { policy: 'coverage:0.8', ...(await planIn('one', 'coverage:0.8', {})) };
    for (const processes of [1, 2]) {
      while (children.length < processes) {
        const child = fork(fileURLToPath(import.meta.url), ['--shard-worker', schema, prefix], { execArgv: ['--import', 'tsx'] });
        await new Promise((resolve) => child.once('message', resolve));
        children.push(child);
      }
      const result = await planIn(`workers${processes}`, 'coverage:0.8', { shards: 4 });
      const workers = await Promise.all(
        children.splice(0).map(
          (child) =>
            new Promise<{ peakRssMb: number; peakHeapUsedMb: number }>((resolve) => {
              child.once('message', (m: { peakRssMb: number; peakHeapUsedMb: number }) => resolve(m));
              child.send('stop');
            }),
        ),
      );
      report[`planWith${processes}WorkerProcess${processes > 1 ? 'es' : ''}`] = {
        ...result,
        workerPeakRssMb: workers.map((w) => w.peakRssMb),
        workerPeakHeapUsedMb: workers.map((w) => w.peakHeapUsedMb),
      };
    }
    await shardQueue.obliterate({ force: true });
    await queue.obliterate({ force: true });
    await shardQueue.close();
    await queue.close();
    return report;
  } finally {
    for (const child of children) child.kill();
    await pool.query(`DROP SCHEMA ${schema} CASCADE`).catch(() => undefined);
    await pool.end();
    redis.disconnect();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === '--shard-worker') await shardWorkerChild(process.argv[3] as string, process.argv[4] as string);
  else if (process.argv[2] === '--planner') await plannerChild(JSON.parse(process.argv[3] as string) as PlanRequest);
  else process.stdout.write(`${JSON.stringify(await main(), null, 2)}\n`);
}
