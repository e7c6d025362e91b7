// Fault: Redis killed (SIGKILL) while the API serves under load and while a batch run is half
// done, then started again empty (it keeps nothing on disk) 6 s later. Expected:
// - the API keeps answering from Postgres, on demand or with popular items: no 5xx, nothing
//   refused, p99 bounded, a few log lines rather than a stack trace per request;
// - the cache refills from Postgres as users log in again;
// - the worker and the scheduler reconnect; the interrupted run completes (the scheduler's sweep
//   re-enqueues the chunks whose jobs Redis lost), with exactly one set per planned user;
// - the next occurrence runs normally;
// - every acknowledged request is a login and a serve in Postgres.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRecommendationCache } from '../src/sets/cache.ts';
import { createRecommendationStore } from '../src/sets/store.ts';
import { createTestDb, silentLog, TEST_DATABASE_URL, type TestDb } from './helpers.ts';
import { describeRuns, finished, runCounts, seedBatch, spawnScheduler, spawnWorker, waitForRuns, type RunCounts } from './support/batch-fault.ts';
import { precomputedSet } from './support/sets.ts';
import { ok, percentile, startLoad } from './support/load.ts';
import { freePort, startOwnRedis, type OwnRedis } from './support/own-servers.ts';
import { spawnPrewarm, waitUntilAnswering, type PrewarmProcess } from './support/prewarm-process.ts';

const TOKEN = 'fault-redis-token-0123456789';
const LOOPS = 10;
const USERS_PER_LOOP = 4;
const OUTAGE_MS = 6_000;
const BATCH_USERS = 120;
const CHUNK_SIZE = 6;

const warmUser = (loop: number, i: number) => `warm-${loop}-${i % USERS_PER_LOOP}`;
// Each loop asks for its own users, so no two requests for one user share a millisecond: one
// login row per acknowledged request, (user_id, at) being its key.
const userOf = (loop: number, n: number) => (n % 2 === 0 ? warmUser(loop, n / 2) : `cold-${loop}-${n % USERS_PER_LOOP}`);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('Redis killed during serving and during a run', () => {
  let redis: OwnRedis;
  let db: TestDb;
  const processes: PrewarmProcess[] = [];

  beforeAll(async () => {
    [redis, db] = await Promise.all([startOwnRedis(), createTestDb()]);
    const now = new Date();
    const warm = Array.from({ length: LOOPS * USERS_PER_LOOP }, (_, i) => precomputedSet(warmUser(Math.floor(i / USERS_PER_LOOP), i), now));
    await createRecommendationStore({ pool: db.pool }).insertMany(db.pool, warm);
    const cacheRedis = new Redis(redis.url);
    await createRecommendationCache({ redis: cacheRedis, prefix: 'prewarm:', log: silentLog }).setMany(warm, now);
    await cacheRedis.quit();
    await db.pool.query(`INSERT INTO interactions (user_id, item_id, at) SELECT 'someone', 'i' || n, now() - interval '1 day' FROM generate_series(1, 20) n`);
    // Every 15 s; the scheduler's start-up tick plans the latest occurrence at once.
    await seedBatch(db.pool, { users: BATCH_USERS, window: 'fault', settings: { cron: '*/15 * * * * *', ttl: '1h', policy: 'all', chunkSize: CHUNK_SIZE, holdoutRate: 0 } });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop('SIGKILL')));
    await redis?.destroy();
    await db?.drop();
  });

  it('serves through the outage, refills the cache, and finishes the interrupted run and the next one', async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const env = { DATABASE_URL: TEST_DATABASE_URL, REDIS_URL: redis.url, PREWARM_DB_SCHEMA: db.schema };
    const api = spawnPrewarm(['serve'], { ...env, PORT: String(port), PREWARM_API_TOKENS: TOKEN });
    const worker = spawnWorker(env, { delayMs: 400, lockMs: 2_000, concurrency: 2 });
    processes.push(api, worker);
    await waitUntilAnswering(`${base}/healthz`, api);
    const load = startLoad({
      concurrency: LOOPS,
      url: (loop, n) => `${base}/v1/users/${userOf(loop, n)}/recommendations?limit=3`,
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const scheduler = spawnScheduler(env);
    processes.push(scheduler);

    // The first run is under way: a few chunks done, most not.
    const [interrupted] = (await waitForRuns(db.pool, (runs) => runs.some((r) => r.chunksDone >= 2), 30_000)).filter((r) => r.chunksDone >= 2) as [RunCounts];
    expect(interrupted.status).toBe('running');
    const logBytes = () => ({ api: api.stderr().length, worker: worker.stderr().length, scheduler: scheduler.stderr().length });
    const before = { ok: ok(load.counts), latencies: load.counts.latenciesMs.length, logs: logBytes() };

    await redis.kill();
    await sleep(OUTAGE_MS);
    const outage = {
      ok: ok(load.counts) - before.ok,
      latencies: load.counts.latenciesMs.slice(before.latencies),
      logs: Object.fromEntries(Object.entries(logBytes()).map(([name, bytes]) => [name, bytes - before.logs[name as keyof typeof before.logs]])),
      chunksDone: (await runCounts(db.pool)).find((r) => r.id === interrupted.id)?.chunksDone,
    };
    for (const p of [api, worker, scheduler]) expect(p.alive(), p.stderr()).toBe(true);
    await redis.start();
    const restartedAt = Date.now();

    // The cache refills from Postgres as the warm users log in again.
    const probe = new Redis(redis.url);
    try {
      const warmKeys = Array.from({ length: LOOPS * USERS_PER_LOOP }, (_, i) => `prewarm:rec:${warmUser(Math.floor(i / USERS_PER_LOOP), i)}`);
      await expect.poll(() => probe.exists(...warmKeys), { timeout: 15_000, interval: 200 }).toBe(warmKeys.length);
    } finally {
      await probe.quit();
    }

    // The interrupted run completes; the next occurrence after the restart runs normally.
    await waitForRuns(db.pool, (runs) => runs.some((r) => r.id === interrupted.id && finished(r)) && runs.some((r) => r.scheduledFor.getTime() > restartedAt && finished(r)), 45_000);
    expect(await scheduler.stop('SIGTERM')).toBe(0);
    // Never stuck: every run the scheduler started finishes.
    const runs = await waitForRuns(db.pool, (all) => all.every(finished), 30_000);
    const counts = await load.stop();
    expect(await api.stop('SIGTERM')).toBe(0);
    expect(await worker.stop('SIGTERM')).toBe(0);

    const acknowledged = ok(counts);
    const rows = (await db.pool.query<{ logins: number; serves: number }>('SELECT (SELECT count(*) FROM logins WHERE user_id NOT LIKE $1) AS logins, (SELECT count(*) FROM serves) AS serves', ['u%'])).rows[0];
    console.info(
      `redis kill: ${acknowledged} requests acknowledged (${outage.ok} during the ${OUTAGE_MS / 1000} s outage), statuses ${JSON.stringify(counts.statuses)}, ` +
        `network errors ${counts.networkErrors}; p50/p99 overall ${percentile(counts.latenciesMs, 50).toFixed(1)}/${percentile(counts.latenciesMs, 99).toFixed(1)} ms, ` +
        `during the outage ${percentile(outage.latencies, 50).toFixed(1)}/${percentile(outage.latencies, 99).toFixed(1)} ms; ` +
        `log bytes during the outage ${JSON.stringify(outage.logs)}; rows: logins ${rows?.logins}, serves ${rows?.serves}; ` +
        `run ${interrupted.id} had ${interrupted.chunksDone}/${interrupted.chunksTotal} chunks done at the kill, ${outage.chunksDone} at the restart\n${describeRuns(runs)}`,
    );

    // The API: no 5xx, nothing refused, bounded latency, a few log lines.
    expect(counts.networkErrors).toBe(0);
    expect(Object.keys(counts.statuses)).toEqual(['200']);
    expect(outage.ok).toBeGreaterThan(100);
    expect(percentile(outage.latencies, 99)).toBeLessThan(1_000);
    expect(outage.logs.api).toBeLessThan(50_000);
    expect(outage.logs.worker).toBeLessThan(50_000);
    expect(outage.logs.scheduler).toBeLessThan(50_000);
    expect(rows).toEqual({ logins: acknowledged, serves: acknowledged });

    // The batch side: every run complete, one set per planned user, nothing missing.
    const after = runs.find((r) => r.id === interrupted.id)!;
    const next = runs.find((r) => r.scheduledFor.getTime() > restartedAt)!;
    for (const run of [after, next]) {
      expect(run).toMatchObject({ status: 'completed', failed: 0, precomputed: run.planned, sets: run.planned, usersWithSets: run.planned, missing: 0, undoneChunks: 0 });
      // The seeded users, and from the second run on the API's users too (they logged in).
      expect(run.planned).toBeGreaterThanOrEqual(BATCH_USERS);
    }
    for (const run of runs) expect(run.sets, describeRuns([run])).toBe(run.usersWithSets);
  }, 150_000);
});
