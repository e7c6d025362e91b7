// The scheduler planning through the plan-shard queue (PREWARM_PLAN_SHARDS): a real `prewarm
// scheduler` process merges, real worker processes score the shards and compute the chunks. A
// shard job abandoned by a killed process and a duplicated select still give one run, each
// planned user computed exactly once, and the selection a single-process plan makes with the same
// propensity model.
import { randomUUID } from 'node:crypto';
import { Worker, type Job } from 'bullmq';
import { afterEach, describe, expect, it } from 'vitest';
import { createPlanShardQueue, createPrecomputeQueue } from '../src/precompute/queue.ts';
import { holdoutDraw } from '../src/planner/planner.ts';
import { parsePolicy, selectUsers } from '../src/planner/policy.ts';
import { streamingScorer } from '../src/planner/scorer.ts';
import { executeShardPhase, PLAN_SHARD_QUEUE, type ShardJobData } from '../src/planner/shard-plan.ts';
import { systemClock } from '../src/clock.ts';
import { createDefaultScorer } from '../src/propensity/default-scorer.ts';
import { createModelScorer } from '../src/propensity/model-scorer.ts';
import { trainPropensity } from '../src/propensity/train.ts';
import { createTestDb, createTestRedis, silentLog, TEST_DATABASE_URL, TEST_REDIS_URL, type TestDb, type TestRedis } from './helpers.ts';
import { DAY } from './fixtures/precompute-harness.ts';
import { describeRuns, finished, runCounts, seedBatch, spawnScheduler, spawnWorker, waitForRuns } from './support/batch-fault.ts';
import type { PrewarmProcess } from './support/prewarm-process.ts';

const USERS = 240;
const SHARDS = 3;

describe('scheduler with PREWARM_PLAN_SHARDS: runs scored by worker processes', () => {
  let db: TestDb | undefined;
  let redis: TestRedis | undefined;
  const processes: PrewarmProcess[] = [];
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    await Promise.all(processes.splice(0).map((p) => p.stop('SIGKILL')));
    for (const close of closers.splice(0).reverse()) await close();
    await redis?.drop();
    await db?.drop();
    db = undefined;
    redis = undefined;
  });

  it('one run, planned in 3 shards on the workers, each planned user computed once, despite an abandoned shard job and a duplicated select', async () => {
    db = await createTestDb();
    redis = await createTestRedis();
    const { pool } = db;
    await seedBatch(pool, { users: USERS, window: 'sharded', settings: { cron: '0 0 * * *', ttl: '1d', horizon: '1d', policy: 'coverage:0.8', chunkSize: 20, holdoutRate: 0.05 } });
    // A fresh propensity model, so the scheduler does not train one while it plans: a model
    // appearing mid-test would make the run's scorer depend on which came first.
    const model = await trainPropensity({ pool, log: silentLog, clock: systemClock, windowMs: DAY });
    const env = {
      DATABASE_URL: TEST_DATABASE_URL,
      REDIS_URL: TEST_REDIS_URL,
      PREWARM_DB_SCHEMA: db.schema,
      PREWARM_QUEUE_PREFIX: redis.prefix,
      PREWARM_CACHE_PREFIX: `${redis.prefix}:`,
      PREWARM_PLAN_SHARDS: String(SHARDS),
    };
    const chunkQueue = createPrecomputeQueue({ connection: redis.redis, prefix: redis.prefix, log: silentLog });
    const shardQueue = createPlanShardQueue({ connection: redis.redis, prefix: redis.prefix, log: silentLog });
    closers.push(() => chunkQueue.close(), () => shardQueue.close());

    // No worker yet: the scheduler's start-up tick claims today's occurrence and puts its first
    // phase on the plan-shard queue. A stand-in takes the shard jobs as a worker would, runs every
    // phase except shard 1's select, which it holds without finishing, as a process killed
    // mid-job leaves it: active, its lock lapsing.
    processes.push(spawnScheduler({ ...env, PREWARM_SWEEP_INTERVAL: '2s' }));
    const rogue = new Worker<ShardJobData>(PLAN_SHARD_QUEUE, null, { connection: redis.redis, prefix: redis.prefix, lockDuration: 1_000 });
    closers.push(() => rogue.close(true));
    // Scores as a real worker does: with the scorer of the version the run pinned.
    const deps = { pool, scorer: streamingScorer(createDefaultScorer({ pool, log: silentLog })), chunkQueue, log: silentLog, draw: holdoutDraw, now: () => new Date() };
    const token = randomUUID();
    const selects = new Set<number>();
    let abandoned: Job<ShardJobData> | undefined;
    const giveUpAt = Date.now() + 60_000;
    while (selects.size < SHARDS - 1 || !abandoned) {
      if (Date.now() > giveUpAt) throw new Error(`the scheduler did not reach the select phase; runs: ${describeRuns(await runCounts(pool))}`);
      const job = (await rogue.getNextJob(token, { block: true })) as Job<ShardJobData> | undefined;
      if (!job) continue;
      if (job.data.phase === 'select' && job.data.shard === 1) {
        abandoned = job;
        continue;
      }
      if (job.data.phase === 'select') selects.add(job.data.shard);
      await job.moveToCompleted(await executeShardPhase(deps, job.data), token, false);
    }
    await rogue.close(true);
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // the abandoned job's lock lapses
    expect(await shardQueue.getJobState(abandoned.id!)).toBe('active');
    const [run] = await runCounts(pool);
    expect(run).toMatchObject({ status: 'planning' });

    // Two worker processes: their stalled-job check hands the abandoned select to one (BullMQ
    // marks an active job without a lock at one check and moves it at the next, 30 s later).
    for (let i = 0; i < 2; i++) processes.push(spawnWorker(env, { delayMs: 10, lockMs: 5_000, concurrency: 2 }));
    const runs = await waitForRuns(pool, (all) => all.length === 1 && all.every(finished), 120_000).catch(async (error: unknown) => {
      const logs = processes.map((p) => p.stderr().split('\n').filter((line) => /"level":(?:40|50|60)/.test(line)).slice(-5).join('\n')).join('\n');
      throw new Error(`${String(error)}; the abandoned select is ${await shardQueue.getJobState(abandoned.id!)}; warnings and errors of the processes:\n${logs}`);
    });
    console.info(`scheduler-shards:\n${describeRuns(runs)}`);
    const done = runs[0]!;
    expect(done.status).toBe('completed');
    expect(done.planned).toBeGreaterThan(0);
    expect(done).toMatchObject({ precomputed: done.planned, failed: 0, chunksDone: done.chunksTotal, sets: done.planned, usersWithSets: done.planned, missing: 0, undoneChunks: 0 });
    const planned = (await pool.query<{ shards: number; scheduled_for: Date }>('SELECT shards, scheduled_for FROM batch_runs WHERE id = $1', [done.id])).rows[0]!;
    expect(planned.shards).toBe(SHARDS);
    expect(await shardQueue.getJobState(abandoned.id!)).toBe('completed'); // taken back from the lapsed lock
    const steps = await pool.query<{ step: string; n: number }>('SELECT step, count(*)::int AS n FROM plan_shards WHERE run_id = $1 AND done_at IS NOT NULL GROUP BY step', [done.id]);
    expect(steps.rows.map((r) => r.step)).toContain('select');
    for (const row of steps.rows) expect(row.n).toBe(SHARDS);

    // The selection a single-process plan makes of the same occurrence, with the same model.
    expect((await pool.query('SELECT model_version FROM batch_runs WHERE id = $1', [done.id])).rows[0].model_version).toBe(model.version);
    const candidates = await (await createModelScorer({ pool, log: silentLog })).scoreKnownUsers(planned.scheduled_for, DAY);
    const expected = selectUsers(candidates, parsePolicy('coverage:0.8'), { windowStart: planned.scheduled_for.getTime(), windowMs: DAY }).selected.map((c) => c.userId).sort();
    const selected = (await pool.query<{ user_id: string }>('SELECT user_id FROM predictions WHERE run_id = $1 AND selected ORDER BY user_id', [done.id])).rows.map((r) => r.user_id);
    expect(selected).toEqual(expected);

    // Every select delivered again under a new job id (a duplicate): nothing is written or computed twice.
    const before = await pool.query('SELECT (SELECT count(*)::int FROM predictions) AS predictions, (SELECT count(*)::int FROM batch_chunks) AS chunks, (SELECT count(*)::int FROM recommendations) AS sets');
    const again = await Promise.all(
      Array.from({ length: SHARDS }, async (_v, shard) => {
        const original = (await shardQueue.getJob(`plan-${done.id}-select-${shard}`))!;
        return shardQueue.add(`duplicate-${shard}`, original.data, { jobId: `duplicate-${done.id}-${shard}` });
      }),
    );
    for (const job of again) await expect.poll(() => shardQueue.getJobState(job.id!), { timeout: 20_000, interval: 100 }).toBe('completed');
    await new Promise((resolve) => setTimeout(resolve, 500)); // any chunk re-enqueued would be taken by now
    const after = await pool.query('SELECT (SELECT count(*)::int FROM predictions) AS predictions, (SELECT count(*)::int FROM batch_chunks) AS chunks, (SELECT count(*)::int FROM recommendations) AS sets');
    expect(after.rows[0]).toEqual(before.rows[0]);
    expect((await runCounts(pool))[0]).toMatchObject({ precomputed: done.planned, chunksDone: done.chunksTotal, sets: done.planned });
  }, 240_000);
});
