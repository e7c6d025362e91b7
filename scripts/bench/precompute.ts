// Precompute throughput and overhead: `npx tsx scripts/bench/precompute.ts` (or via npm run bench).
//
// Builds a synthetic population (BENCH_USERS users, default 100 000, with histories over 5 000
// items in taste clusters: BENCH_HISTORY=movielens, MovieLens-100K-like lengths, the default; or
// light, 10–25 interactions), trains and stores an item-CF model, then measures, both sides warm
// (BENCH_WARMUP_USERS users computed first):
//   1. the recommender alone: item-CF called in this process on every user, in chunks of the
//      window's chunk size, one after another (history reads from Postgres included);
//   2. the whole batch path with 1 and with 2 worker processes (`workers/precompute.ts`, the
//      production entry point, PREWARM_WORKER_CONCURRENCY each, default from src/config.ts):
//      plan (score, select, write predictions, addBulk) → workers (recommend, write sets to
//      Postgres and Redis, record the chunk) → run completed;
// and reports users/s and overhead = whole path (1 process) / recommender alone. The recommender
// alone is measured just before and just after the one-process path, and the mean is the
// baseline: this machine's speed drifts by up to ±10% over a minute (other tenants), and a drift
// between two measurements taken a minute apart would otherwise show up in the ratio.
// Everything lives in a schema and queue prefix of its own, dropped at the end.
//
// Repeated measurement (seeding and training take ≈2.5 min of the ≈5 of a run):
//   BENCH_SCHEMA=name      the population lives in that schema and is kept: a first run seeds and
//                          trains it, later runs with the same users and histories reuse it;
//   BENCH_ROUNDS=n         n one-process paths in a row, each followed by a recommender-alone
//                          measurement, so each round's overhead has its own bracket (default 1);
//   BENCH_WORKER_PROCESSES the process counts to run, e.g. `1` (default `1,2`).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { finished } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { from as copyFrom } from 'pg-copy-streams';
import { deleteKeysWithPrefix } from '../../src/redis.ts';
import { backendsCpuDelta, backendsCpuMs, processCpuMs } from './proc-cpu.ts';
import pino from 'pino';
import { recordLogins } from '../../src/activity/user-activity.ts';
import { systemClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { createPool, type Pool } from '../../src/db/pool.ts';
import { migrate, quoteIdent } from '../../src/db/migrate.ts';
import { createPlanner } from '../../src/planner/planner.ts';
import { createPrecomputeQueue } from '../../src/precompute/queue.ts';
import { createRecencyScorer } from '../../src/propensity/recency-scorer.ts';
import { createRunStore } from '../../src/planner/runs.ts';
import { createWindowStore, type Window } from '../../src/planner/windows.ts';
import { createItemCfRecommender, loadLatestModel, saveModel, trainItemCf } from '../../src/recommender/item-cf.ts';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const POSTGRES_PORT = Number(new URL(DATABASE_URL).port || 5432);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const WORKER_ENTRY = fileURLToPath(new URL('../../workers/precompute.ts', import.meta.url));
const DAY = 86_400_000;

export interface PrecomputeBenchResult {
  users: number;
  history: string;
  interactions: number;
  itemsPerUser: number;
  chunkSize: number;
  workerConcurrency: number;
  /** Mean of the two measurements below. */
  recommenderAloneMs: number;
  recommenderAloneUsersPerSecond: number;
  /** Just before and just after the one-process path. */
  recommenderAloneRunsMs: [number, number];
  /** CPU time during each "alone" measurement: this process's, and its Postgres backends' (where /proc shows them). */
  recommenderAloneCpuMs: number[];
  recommenderAlonePostgresCpuMs: number[];
  runs: {
    workerProcesses: number;
    planMs: number;
    pathMs: number;
    usersPerSecond: number;
    /** Enqueue done → run completed: the queue, the workers and their writes. */
    queueAndWorkersMs: number;
    precomputed: number;
    /**
     * CPU time over the path (Linux: /proc) of the worker processes, of the Postgres backends
     * serving them, and of this process's backends (planning, and polling the run every 25 ms):
     * work done, where a loaded host's clock is not.
     */
    workerCpuMs?: number;
    postgresCpuMs?: number;
    plannerPostgresCpuMs?: number;
    /** This process's CPU time over the path: planning, enqueueing, polling the run. */
    plannerCpuMs: number;
    /** Redis's CPU time over the path (INFO cpu), the other clients of a shared server included. */
    redisServerCpuMs: number;
  }[];
  /** Whole path with one worker process / recommender alone (target ≤ 1.20), first round. */
  overhead: number;
  /** The same without planning (queue + workers + writes only) / recommender alone. */
  overheadExcludingPlanning: number;
  /** BENCH_ROUNDS > 1: every one-process round, its path over the mean of the two "alone" around it. */
  rounds?: { pathMs: number; planMs: number; aloneMs: [number, number]; overhead: number; overheadExcludingPlanning: number }[];
}

function envInt(name: string, fallback: number): number {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer`);
  return value;
}

/** A seeded PRNG (mulberry32), so every run of the bench builds the same population. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const userId = (i: number) => `user-${String(i).padStart(7, '0')}`;

/**
 * Interactions per user. `movielens` (default) follows MovieLens-100K, the size DESIGN's
 * recommender figures refer to: at least 20, mean ≈106, a long tail capped at 737. `light` is
 * 10–25, a thin history that makes the recommender cheap and so the fixed cost of writing 100
 * items per user weigh the most: the worst case for the overhead ratio.
 */
type HistoryShape = 'movielens' | 'light';

function historyLength(shape: HistoryShape, rand: () => number): number {
  if (shape === 'light') return 10 + Math.floor(rand() * 16);
  return Math.min(737, 20 + Math.floor(-86 * Math.log(1 - rand())));
}

async function seed(pool: Pool, users: number, history: HistoryShape, now: number, log: pino.Logger): Promise<void> {
  const started = performance.now();
  const rand = random(42);
  const items = 5_000;
  const clusters = 50;
  const client = await pool.connect();
  try {
    const copy = client.query(copyFrom('COPY interactions (user_id, item_id, at, weight) FROM STDIN'));
    let buffer = '';
    for (let u = 0; u < users; u++) {
      const cluster = u % clusters;
      const count = historyLength(history, rand);
      const seen = new Set<number>();
      for (let n = 0; n < count; n++) {
        // 70 %: the user's taste cluster (100 items); else a skewed draw from the whole catalogue.
        const item = rand() < 0.7 ? cluster * 100 + Math.floor(rand() * 100) : Math.floor(items * rand() * rand());
        if (seen.has(item)) continue;
        seen.add(item);
        const at = new Date(now - Math.floor(rand() * 30 * DAY) - 60_000).toISOString();
        buffer += `${userId(u)}\titem-${item}\t${at}\t1\n`;
      }
      if (buffer.length > 1 << 20) {
        if (!copy.write(buffer)) await new Promise((resolve) => copy.once('drain', resolve));
        buffer = '';
      }
    }
    copy.end(buffer);
    await finished(copy);
  } finally {
    client.release();
  }
  // One login per user in the last 3 days: every user is known.
  const logins = Array.from({ length: users }, (_, u) => ({ userId: userId(u), at: new Date(now - 60_000 - Math.floor(rand() * 3 * DAY)) }));
  for (let i = 0; i < logins.length; i += 20_000) await recordLogins(pool, logins.slice(i, i + 20_000));
  // VACUUM, not only ANALYZE: a production table is vacuumed (autovacuum), and until it is, every
  // history read fetches each row from the heap besides the covering index (≈7× the buffers for
  // 500 users, ≈10% more Postgres CPU), which would make the recommender look slower than it is;
  // and an autovacuum starting mid-bench would change it between two measurements.
  // The seeded tables only: a bare VACUUM would walk every schema in the database.
  await pool.query('VACUUM (ANALYZE) interactions, logins, user_activity');
  log.info({ users, ms: Math.round(performance.now() - started) }, 'population seeded');
}

/** The population a kept schema was seeded with (its comment), or undefined when it does not exist. */
async function keptPopulation(pool: Pool, schema: string): Promise<string | undefined> {
  const result = await pool.query<{ comment: string | null }>('SELECT obj_description(oid, $2) AS comment FROM pg_namespace WHERE nspname = $1', [schema, 'pg_namespace']);
  return result.rows.length === 0 ? undefined : (result.rows[0]!.comment ?? '(none)');
}

/** Redis's own CPU time so far (all its threads), in ms. */
async function redisServerCpuMs(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const seconds = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
  return (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1000;
}

const quoteLiteral = (text: string) => `'${text.replaceAll("'", "''")}'`;

function startWorker(env: Record<string, string>): Promise<{ child: ChildProcess; stop(): Promise<void> }> {
  // BENCH_WORKER_NODE_ARGS: extra node flags for the workers, e.g. `--cpu-prof --cpu-prof-dir=prof`.
  const nodeArgs = (process.env.BENCH_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', WORKER_ENTRY], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker did not start: ${output}`)), 60_000);
    child.stderr!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('precompute worker started')) {
        clearTimeout(timer);
        resolve({
          child,
          stop: () =>
            new Promise<void>((done) => {
              if (child.exitCode !== null) return done();
              child.once('exit', () => done());
              child.kill('SIGTERM');
            }),
        });
      }
    });
    child.once('exit', (code) => reject(new Error(`worker exited with ${code}: ${output}`)));
  });
}

async function untilFinished(runs: ReturnType<typeof createRunStore>, runId: number) {
  for (;;) {
    const run = (await runs.get(runId))!;
    if (run.status !== 'running' && run.status !== 'planning') return run;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export async function main(): Promise<PrecomputeBenchResult> {
  const users = envInt('BENCH_USERS', 100_000);
  const itemsPerUser = envInt('BENCH_ITEMS_PER_USER', 100);
  const chunkSize = envInt('BENCH_CHUNK_SIZE', 500);
  const workerConcurrency = envInt('BENCH_WORKER_CONCURRENCY', loadConfig({}).workerConcurrency);
  const warmupUsers = Math.min(users, envInt('BENCH_WARMUP_USERS', 5_000));
  const history = process.env.BENCH_HISTORY ?? 'movielens';
  if (history !== 'movielens' && history !== 'light') throw new Error('BENCH_HISTORY must be movielens or light');
  const rounds = envInt('BENCH_ROUNDS', 1);
  const processCounts = (process.env.BENCH_WORKER_PROCESSES ?? '1,2').split(',').map(Number);
  if (processCounts[0] !== 1 || !processCounts.every((n) => Number.isInteger(n) && n > 0)) throw new Error('BENCH_WORKER_PROCESSES must list process counts starting with 1');
  const log = pino({ level: process.env.BENCH_LOG_LEVEL ?? 'info' }, pino.destination(2));
  const keptSchema = process.env.BENCH_SCHEMA;
  if (keptSchema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(keptSchema)) throw new Error('BENCH_SCHEMA must be a lower-case identifier');
  const schema = keptSchema ?? `bench_precompute_${randomUUID().replaceAll('-', '').slice(0, 10)}`;
  // What a kept schema holds, as its comment: a later run reuses it only for the same population.
  const population = `prewarm precompute bench population: ${users} users, ${history} histories`;
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  const pool = createPool({ databaseUrl: DATABASE_URL, schema, max: 6, log, applicationName: 'prewarm-bench' });
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const queue = createPrecomputeQueue({ connection: redis, prefix, log });
  try {
    const kept = keptSchema === undefined ? undefined : await keptPopulation(pool, schema);
    let model = kept === population ? await loadLatestModel(pool) : undefined;
    if (model !== undefined) {
      log.info({ schema, population }, 'reusing the seeded population and its model');
      // A schema kept by an earlier version of this script may not have been vacuumed.
      await pool.query('VACUUM (ANALYZE) interactions');
    } else {
      if (kept !== undefined) throw new Error(`schema ${schema} holds another population (${kept}); drop it or name another`);
      await migrate({ pool, schema, log });
      const now = Date.now();
      await seed(pool, users, history, now, log);
      model = await trainItemCf({ pool, until: new Date(now - 1), log });
      await saveModel(pool, model);
      if (keptSchema !== undefined) await pool.query(`COMMENT ON SCHEMA ${quoteIdent(schema)} IS ${quoteLiteral(population)}`);
    }
    await migrate({ pool, schema, log });

    // 1. The recommender alone, in this process, chunk after chunk.
    const recommender = createItemCfRecommender({ pool, log, model, reloadIntervalMs: 0 });
    const ids = Array.from({ length: users }, (_, u) => userId(u));
    const at = new Date();
    // Both sides are measured warm (JIT-compiled, connections open): a long-running worker is.
    for (let i = 0; i < warmupUsers; i += chunkSize) await recommender.recommend(ids.slice(i, Math.min(i + chunkSize, warmupUsers)), at, itemsPerUser);
    const aloneCpuMs: number[] = [];
    const alonePostgresCpuMs: number[] = [];
    const measureAlone = async (): Promise<number> => {
      const backends = await backendsCpuMs(pool, POSTGRES_PORT, [process.pid]);
      const cpu = process.cpuUsage();
      const started = performance.now();
      let answered = 0;
      for (let i = 0; i < ids.length; i += chunkSize) answered += (await recommender.recommend(ids.slice(i, i + chunkSize), at, itemsPerUser)).size;
      const ms = performance.now() - started;
      if (answered !== users) throw new Error(`recommender answered ${answered} of ${users} users`);
      const used = process.cpuUsage(cpu);
      aloneCpuMs.push(Math.round((used.user + used.system) / 1000));
      alonePostgresCpuMs.push(backendsCpuDelta(backends, await backendsCpuMs(pool, POSTGRES_PORT, [process.pid])));
      log.info({ ms: Math.round(ms), cpuMs: aloneCpuMs.at(-1), postgresCpuMs: alonePostgresCpuMs.at(-1) }, 'recommender alone');
      return ms;
    };
    const aloneRuns: number[] = [await measureAlone()];

    // 2. The whole path with 1 and 2 worker processes.
    const windows = createWindowStore({ pool, clock: systemClock });
    const { window } = await windows.set('bench', { cron: '* * * * *', ttl: '1h', policy: 'all', chunkSize, holdoutRate: 0 });
    const { window: warmup } = await windows.set('bench-warmup', { cron: '* * * * *', ttl: '1h', policy: `budget:${warmupUsers}`, chunkSize, holdoutRate: 0 });
    const planner = createPlanner({ pool, queue, scorer: createRecencyScorer({ pool }), clock: systemClock, log, itemsPerUser });
    const runs = createRunStore({ pool });
    const env = {
      DATABASE_URL,
      REDIS_URL,
      PREWARM_DB_SCHEMA: schema,
      PREWARM_QUEUE_PREFIX: prefix,
      PREWARM_CACHE_PREFIX: `${prefix}:`,
      PREWARM_WORKER_CONCURRENCY: String(workerConcurrency),
      PREWARM_LOG_LEVEL: 'info',
      PREWARM_RECOMMENDER: 'item-cf',
    };
    const results: PrecomputeBenchResult['runs'] = [];
    for (const workerProcesses of [...Array<number>(rounds).fill(1), ...processCounts.slice(1)]) {
      await pool.query('TRUNCATE recommendations CASCADE');
      const workers = await Promise.all(Array.from({ length: workerProcesses }, () => startWorker(env)));
      try {
        const occurrence = new Date(Math.floor(Date.now() / 1000) * 1000);
        const warmed = await planner.planRun(warmup as Window, occurrence);
        if (!warmed) throw new Error('the warm-up run was claimed elsewhere');
        await untilFinished(runs, warmed.run.id);
        const workersCpu = workers.map((worker) => processCpuMs(worker.child.pid));
        const plannerCpu = process.cpuUsage();
        const redisCpu = await redisServerCpuMs(redis);
        const workerPids = workers.map((worker) => worker.child.pid);
        const backends = await backendsCpuMs(pool, POSTGRES_PORT, workerPids);
        const ownBackends = await backendsCpuMs(pool, POSTGRES_PORT, [process.pid]);
        const started = performance.now();
        const planned = await planner.planRun(window as Window, occurrence);
        if (!planned) throw new Error('the bench run was claimed elsewhere');
        const enqueued = performance.now();
        const run = await untilFinished(runs, planned.run.id);
        const completed = performance.now();
        const workerCpuMs = workers.reduce((sum, worker, n) => sum + (processCpuMs(worker.child.pid) ?? NaN) - (workersCpu[n] ?? NaN), 0);
        const plannerUsed = process.cpuUsage(plannerCpu);
        const plannerCpuMs = Math.round((plannerUsed.user + plannerUsed.system) / 1000);
        const redisServerCpu = Math.round((await redisServerCpuMs(redis)) - redisCpu);
        const postgresCpuMs = backendsCpuDelta(backends, await backendsCpuMs(pool, POSTGRES_PORT, workerPids));
        const plannerPostgresCpuMs = backendsCpuDelta(ownBackends, await backendsCpuMs(pool, POSTGRES_PORT, [process.pid]));
        if (run.status !== 'completed' || run.precomputed !== users) throw new Error(`bench run ended ${run.status} with ${run.precomputed}/${users} sets`);
        const pathMs = completed - started;
        results.push({
          workerProcesses,
          planMs: Math.round(enqueued - started),
          pathMs: Math.round(pathMs),
          usersPerSecond: Math.round(users / (pathMs / 1000)),
          queueAndWorkersMs: Math.round(completed - enqueued),
          precomputed: run.precomputed,
          plannerCpuMs,
          redisServerCpuMs: redisServerCpu,
          ...(Number.isFinite(workerCpuMs) ? { workerCpuMs: Math.round(workerCpuMs), postgresCpuMs, plannerPostgresCpuMs } : {}),
        });
        log.info(results.at(-1), 'path measured');
      } finally {
        await Promise.all(workers.map((worker) => worker.stop()));
      }
      if (workerProcesses === 1) aloneRuns.push(await measureAlone());
      // A fresh second for the next run's occurrence.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    await recommender.close();
    const one = results[0]!;
    const recommenderAloneMs = (aloneRuns[0]! + aloneRuns[1]!) / 2;
    const oneProcess = results.filter((r) => r.workerProcesses === 1);
    const roundsMeasured = oneProcess.map((r, i) => {
      const alone = (aloneRuns[i]! + aloneRuns[i + 1]!) / 2;
      return {
        pathMs: r.pathMs,
        planMs: r.planMs,
        aloneMs: [Math.round(aloneRuns[i]!), Math.round(aloneRuns[i + 1]!)] as [number, number],
        overhead: Number((r.pathMs / alone).toFixed(3)),
        overheadExcludingPlanning: Number((r.queueAndWorkersMs / alone).toFixed(3)),
      };
    });
    const interactions = Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM interactions')).rows[0]!.n);
    return {
      users,
      history,
      interactions,
      itemsPerUser,
      chunkSize,
      workerConcurrency,
      recommenderAloneMs: Math.round(recommenderAloneMs),
      recommenderAloneUsersPerSecond: Math.round(users / (recommenderAloneMs / 1000)),
      recommenderAloneRunsMs: [Math.round(aloneRuns[0]!), Math.round(aloneRuns[1]!)],
      recommenderAloneCpuMs: aloneCpuMs,
      recommenderAlonePostgresCpuMs: alonePostgresCpuMs,
      runs: results,
      overhead: Number((one.pathMs / recommenderAloneMs).toFixed(3)),
      overheadExcludingPlanning: Number((one.queueAndWorkersMs / recommenderAloneMs).toFixed(3)),
      ...(rounds > 1 ? { rounds: roundsMeasured } : {}),
    };
  } finally {
    await queue.close();
    await deleteKeysWithPrefix(redis, prefix);
    await redis.quit();
    if (keptSchema === undefined) await pool.query(`DROP SCHEMA ${quoteIdent(schema)} CASCADE`);
    await pool.end();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await main();
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(
    `precompute: ${result.users} users (${result.history} histories, ${result.interactions} interactions), ${result.itemsPerUser} items/set, chunks of ${result.chunkSize}: ` +
      result.runs.map((r) => `${r.workerProcesses} worker process(es) ${r.usersPerSecond} users/s`).join(', ') +
      `; recommender alone ${result.recommenderAloneUsersPerSecond} users/s; overhead ${result.overhead} (${result.overheadExcludingPlanning} without planning)` +
      (result.rounds ? `; rounds ${result.rounds.map((r) => `${r.overhead} (${r.overheadExcludingPlanning})`).join(', ')}` : '') +
      '\n',
  );
}
