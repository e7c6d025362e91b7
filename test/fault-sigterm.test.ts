// Fault: SIGTERM to the API under load, to a worker with chunks in flight and to the scheduler,
// all at once. Expected: each exits 0 within the shutdown bound; the API answers what it
// received and writes every event it buffered (flushes are 2 s apart here, so the last flush is
// the shutdown's): rows = acknowledged requests; the worker finishes its active chunks and leaves
// none locked, each recorded once; a new worker finishes the run with one set per user.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrecomputeQueue } from '../src/precompute/queue.ts';
import { createTestDb, silentLog, TEST_DATABASE_URL, type TestDb } from './helpers.ts';
import { describeRuns, finished, runCounts, seedBatch, spawnScheduler, spawnWorker, waitForRuns, type RunCounts } from './support/batch-fault.ts';
import { ok, percentile, startLoad } from './support/load.ts';
import { freePort, startOwnRedis, type OwnRedis } from './support/own-servers.ts';
import { spawnPrewarm, waitUntilAnswering, type PrewarmProcess } from './support/prewarm-process.ts';

const TOKEN = 'fault-sigterm-token-0123456789';
const LOOPS = 16;
const USERS = 120;
const SHUTDOWN_TIMEOUT_MS = 10_000;

const userOf = (loop: number, n: number) => `user-${loop}-${n % 5}`;

/** Sends SIGTERM and resolves with the exit code and how long the process took to exit. */
async function terminate(p: PrewarmProcess): Promise<{ code: number | string; ms: number }> {
  const started = Date.now();
  const code = await p.stop('SIGTERM');
  return { code, ms: Date.now() - started };
}

describe('SIGTERM under load', () => {
  let redis: OwnRedis;
  let db: TestDb;
  const processes: PrewarmProcess[] = [];

  beforeAll(async () => {
    [redis, db] = await Promise.all([startOwnRedis(), createTestDb()]);
    await db.pool.query(`INSERT INTO interactions (user_id, item_id, at) SELECT 'someone', 'i' || n, now() - interval '1 day' FROM generate_series(1, 20) n`);
    // An occurrence a day, planned by the scheduler's start-up tick: one run in this test.
    await seedBatch(db.pool, { users: USERS, window: 'fault', settings: { cron: '0 0 * * *', ttl: '1d', policy: 'all', chunkSize: 6, holdoutRate: 0 } });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop('SIGKILL')));
    await redis?.destroy();
    await db?.drop();
  });

  it('API, worker and scheduler finish their work, flush, and exit 0 within the bound', async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const env = { DATABASE_URL: TEST_DATABASE_URL, REDIS_URL: redis.url, PREWARM_DB_SCHEMA: db.schema, PREWARM_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) };
    const api = spawnPrewarm(['serve'], { ...env, PORT: String(port), PREWARM_API_TOKENS: TOKEN, PREWARM_FLUSH_INTERVAL_MS: '2000' });
    const scheduler = spawnScheduler(env);
    const worker = spawnWorker(env, { delayMs: 600, lockMs: 30_000, concurrency: 2 });
    processes.push(api, scheduler, worker);
    await waitUntilAnswering(`${base}/healthz`, api);
    const load = startLoad({ concurrency: LOOPS, url: (loop, n) => `${base}/v1/users/${userOf(loop, n)}/recommendations?limit=3`, headers: { authorization: `Bearer ${TOKEN}` } });

    const [run] = (await waitForRuns(db.pool, (runs) => runs.some((r) => r.chunksDone >= 2), 30_000)) as [RunCounts];
    // Under load for a while, and the worker mid-chunk.
    await expect.poll(() => ok(load.counts), { timeout: 30_000, interval: 50 }).toBeGreaterThan(300);
    const queueRedis = new Redis(redis.url, { maxRetriesPerRequest: null });
    const queue = createPrecomputeQueue({ connection: queueRedis, prefix: 'prewarm', log: silentLog });
    try {
      const activeAtSignal = await queue.getJobCountByTypes('active');
      const [apiExit, workerExit, schedulerExit] = await Promise.all([terminate(api), terminate(worker), terminate(scheduler)]);
      const counts = await load.stop();
      const acknowledged = ok(counts);
      const queueAfter = await queue.getJobCounts('active', 'completed', 'failed', 'waiting', 'prioritized');
      const atExit = (await runCounts(db.pool)).find((r) => r.id === run.id)!;
      const rows = (await db.pool.query<{ logins: number; serves: number }>(`SELECT (SELECT count(*) FROM logins WHERE user_id LIKE 'user-%') AS logins, (SELECT count(*) FROM serves) AS serves`)).rows[0];

      // A new worker finishes the run.
      const second = spawnWorker(env, { delayMs: 0, lockMs: 30_000, concurrency: 2 });
      processes.push(second);
      const runs = await waitForRuns(db.pool, (all) => all.every(finished), 30_000);
      const secondExit = await terminate(second);
      console.info(
        `sigterm: api exit ${apiExit.code} in ${apiExit.ms} ms, worker exit ${workerExit.code} in ${workerExit.ms} ms (${activeAtSignal} chunks active at the signal), ` +
          `scheduler exit ${schedulerExit.code} in ${schedulerExit.ms} ms; ${acknowledged} requests acknowledged, statuses ${JSON.stringify(counts.statuses)}, ` +
          `network errors ${JSON.stringify(counts.networkErrorCodes)}, p99 ${percentile(counts.latenciesMs, 99).toFixed(1)} ms; rows: logins ${rows?.logins}, serves ${rows?.serves}; ` +
          `queue after the worker's exit ${JSON.stringify(queueAfter)}, run at exit ${atExit.chunksDone}/${atExit.chunksTotal} chunks\n${describeRuns(runs)}`,
      );

      for (const exit of [apiExit, workerExit, schedulerExit, secondExit]) {
        expect(exit.code).toBe(0);
        expect(exit.ms).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
      }
      // The API: what it acknowledged is in Postgres, once, and it answered every request it
      // processed (a request answered after being recorded, or recorded after being refused,
      // would break the equality). The rest are refusals of new requests: 503 while closing,
      // connection refused once it stopped listening, or an idle keep-alive connection closed
      // as the client sent on it (ECONNRESET / UND_ERR_SOCKET: HTTP/1.1's race, which is why
      // clients retry idempotent requests; the server never read them).
      expect(rows).toEqual({ logins: acknowledged, serves: acknowledged });
      expect(acknowledged).toBeGreaterThan(300);
      expect(Object.keys(counts.statuses).filter((status) => status !== '200' && status !== '503')).toEqual([]);
      expect(Object.keys(counts.networkErrorCodes).filter((code) => !['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET'].includes(code))).toEqual([]);
      // The worker: it finished its active chunks, left none locked, and each is recorded once.
      expect(activeAtSignal).toBeGreaterThan(0);
      expect(queueAfter.active).toBe(0);
      expect(queueAfter.failed).toBe(0);
      expect(atExit.chunksDone).toBe(queueAfter.completed);
      expect(atExit.chunksDone).toBeLessThan(atExit.chunksTotal);
      // The scheduler left no run half planned, and the run completes once per user.
      const after = runs.find((r) => r.id === run.id)!;
      expect(runs).toHaveLength(1);
      expect(after).toMatchObject({ status: 'completed', failed: 0, planned: USERS, precomputed: USERS, sets: USERS, usersWithSets: USERS, missing: 0, undoneChunks: 0 });
    } finally {
      await queue.close();
      await queueRedis.quit();
    }
  }, 120_000);
});
