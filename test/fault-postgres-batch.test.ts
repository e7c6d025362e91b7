// Fault: the batch side loses Postgres, on a Postgres of the test's own (so that only its own
// processes' backends are touched). While a run is under way:
// 1. the worker's backends are killed (pg_terminate_backend) three times, 700 ms apart;
// 2. later in the same run, Postgres stops at once (`pg_ctl stop -m immediate`) for 6 s.
// Expected: the worker and the scheduler stay up and resume; failed chunks are retried; the run
// completes with exactly one set per planned user; the next occurrence runs normally.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Pool } from '../src/db/pool.ts';
import { migrate } from '../src/db/migrate.ts';
import { silentLog } from './helpers.ts';
import { describeRuns, finished, seedBatch, spawnScheduler, spawnWorker, waitForRuns, type RunCounts } from './support/batch-fault.ts';
import { startOwnPostgres, startOwnRedis, type OwnPostgres, type OwnRedis } from './support/own-servers.ts';
import type { PrewarmProcess } from './support/prewarm-process.ts';

const SCHEMA = 'fault_batch';
const USERS = 180;
const CHUNK_SIZE = 6;
const OUTAGE_MS = 6_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('the batch side through Postgres faults', () => {
  let postgres: OwnPostgres;
  let redis: OwnRedis;
  let pool: Pool;
  const processes: PrewarmProcess[] = [];

  beforeAll(async () => {
    [postgres, redis] = await Promise.all([startOwnPostgres(), startOwnRedis()]);
    pool = createPool({ databaseUrl: postgres.url, schema: SCHEMA, log: silentLog, max: 2, applicationName: 'fault-test' });
    await migrate({ pool, schema: SCHEMA, log: silentLog });
    await seedBatch(pool, { users: USERS, window: 'fault', settings: { cron: '*/15 * * * * *', ttl: '1h', policy: 'all', chunkSize: CHUNK_SIZE, holdoutRate: 0 } });
  }, 120_000);

  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop('SIGKILL')));
    await pool?.end();
    await Promise.all([postgres?.destroy(), redis?.destroy()]);
  });

  it('worker and scheduler survive killed backends and a Postgres restart; the run completes once per user', async () => {
    const env = { DATABASE_URL: postgres.url, REDIS_URL: redis.url, PREWARM_DB_SCHEMA: SCHEMA };
    const worker = spawnWorker(env, { delayMs: 400, lockMs: 2_000, concurrency: 2 });
    const scheduler = spawnScheduler(env);
    processes.push(worker, scheduler);

    // 1. Killed backends, a few chunks into the run started by the scheduler's start-up tick.
    const [run] = (await waitForRuns(pool, (runs) => runs.some((r) => r.chunksDone >= 2), 30_000)) as [RunCounts];
    let terminated = 0;
    for (let round = 0; round < 3; round++) {
      const result = await pool.query<{ n: number }>(
        `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'prewarm-worker'`,
      );
      terminated += result.rows[0]?.n ?? 0;
      await sleep(700);
    }
    expect(terminated).toBeGreaterThan(0);
    expect(worker.alive(), worker.stderr()).toBe(true);

    // 2. Postgres stops at once later in the same run, and comes back 6 s later.
    const beforeOutage = (await waitForRuns(pool, (runs) => (runs.find((r) => r.id === run.id)?.chunksDone ?? 0) >= 8 || runs.some((r) => r.id === run.id && finished(r)), 30_000)).find((r) => r.id === run.id)!;
    expect(beforeOutage.status, 'the run ended before the outage: make it longer').toBe('running');
    await pool.query('SELECT 1'); // the pool's own connection is open before the stop, and breaks with it
    await postgres.stopImmediately();
    await sleep(OUTAGE_MS);
    for (const p of [worker, scheduler]) expect(p.alive(), p.stderr()).toBe(true);
    await postgres.start();
    const restartedAt = Date.now();

    await waitForRuns(pool, (runs) => runs.some((r) => r.id === run.id && finished(r)) && runs.some((r) => r.scheduledFor.getTime() > restartedAt && finished(r)), 60_000);
    expect(await scheduler.stop('SIGTERM')).toBe(0);
    const runs = await waitForRuns(pool, (all) => all.every(finished), 30_000);
    expect(await worker.stop('SIGTERM')).toBe(0);
    console.info(
      `postgres faults on the batch side: ${terminated} worker backends terminated at ${run.chunksDone}/${run.chunksTotal} chunks; ` +
        `Postgres stopped for ${OUTAGE_MS / 1000} s at ${beforeOutage.chunksDone}/${beforeOutage.chunksTotal}\n${describeRuns(runs)}`,
    );

    const interrupted = runs.find((r) => r.id === run.id)!;
    const next = runs.find((r) => r.scheduledFor.getTime() > restartedAt)!;
    for (const r of [interrupted, next]) {
      expect(r).toMatchObject({ status: 'completed', failed: 0, precomputed: r.planned, sets: r.planned, usersWithSets: r.planned, missing: 0, undoneChunks: 0, chunkPrecomputed: r.planned });
    }
    expect(interrupted.planned).toBe(USERS);
    for (const r of runs) expect(r.sets, describeRuns([r])).toBe(r.usersWithSets);
  }, 150_000);
});
