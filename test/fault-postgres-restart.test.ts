// Fault: Postgres stopped at once (`pg_ctl stop -m immediate`) under load and started again 20 s
// later. The API process must keep answering, buffer what it acknowledged, write it when
// Postgres is back, and count nothing twice: rows in logins and serves equal the 2xx answers.
// Before the fix the process died on an unhandled 'error' event of a checked-out pg client.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, type Pool } from '../src/db/pool.ts';
import { migrate } from '../src/db/migrate.ts';
import { fillServeCounts } from '../src/maintenance/rollups.ts';
import { createRecommendationCache } from '../src/sets/cache.ts';
import { createRecommendationStore } from '../src/sets/store.ts';
import { silentLog } from './helpers.ts';
import { precomputedSet } from './support/sets.ts';
import { ok, percentile, startLoad } from './support/load.ts';
import { freePort, startOwnPostgres, startOwnRedis, type OwnPostgres, type OwnRedis } from './support/own-servers.ts';
import { spawnPrewarm, waitUntilAnswering, type PrewarmProcess } from './support/prewarm-process.ts';

const SCHEMA = 'fault';
const TOKEN = 'fault-test-token-0123456789';
const LOOPS = 20;
const USERS_PER_LOOP = 5;
const OUTAGE_MS = 20_000;

// Each loop asks for its own users in turn, so no two requests for one user share a
// millisecond: one login row per acknowledged request, (user_id, at) being the key.
const userOf = (loop: number, n: number) => (n % 2 === 0 ? `warm-${loop}-${n % USERS_PER_LOOP}` : `cold-${loop}-${n % USERS_PER_LOOP}`);

/** Backends of the API waiting for a lock (its flush, blocked inside its transaction). */
async function waitingOnLock(pool: Pool): Promise<number> {
  const result = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'prewarm-api' AND wait_event_type = 'Lock'`);
  return result.rows[0]?.n ?? 0;
}

describe('Postgres restarted under load', () => {
  let postgres: OwnPostgres;
  let redis: OwnRedis;
  let pool: Pool;
  let api: PrewarmProcess | undefined;

  beforeAll(async () => {
    [postgres, redis] = await Promise.all([startOwnPostgres(), startOwnRedis()]);
    pool = createPool({ databaseUrl: postgres.url, schema: SCHEMA, log: silentLog, max: 2 });
    await migrate({ pool, schema: SCHEMA, log: silentLog });
    // Half the users have a precomputed set (Redis and Postgres); the rest are cold.
    const now = new Date();
    const sets = Array.from({ length: LOOPS * USERS_PER_LOOP }, (_, i) => precomputedSet(`warm-${Math.floor(i / USERS_PER_LOOP)}-${i % USERS_PER_LOOP}`, now));
    await createRecommendationStore({ pool }).insertMany(pool, sets);
    const cacheRedis = new Redis(redis.url);
    await createRecommendationCache({ redis: cacheRedis, prefix: 'prewarm:', log: silentLog }).setMany(sets, now);
    await cacheRedis.quit();
    await pool.query(`INSERT INTO interactions (user_id, item_id, at) SELECT 'someone', 'i' || n, now() - interval '1 day' FROM generate_series(1, 20) n`);
  }, 120_000);

  afterAll(async () => {
    await api?.stop('SIGKILL');
    await pool?.end();
    await Promise.all([postgres?.destroy(), redis?.destroy()]);
  });

  it('keeps answering, then writes every acknowledged login and serve exactly once', async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    api = spawnPrewarm(['serve'], {
      DATABASE_URL: postgres.url,
      REDIS_URL: redis.url,
      PREWARM_DB_SCHEMA: SCHEMA,
      PORT: String(port),
      PREWARM_API_TOKENS: TOKEN,
      PREWARM_SHUTDOWN_TIMEOUT_MS: '20000',
    });
    await waitUntilAnswering(`${base}/healthz`, api);

    const load = startLoad({
      concurrency: LOOPS,
      url: (loop, n) => `${base}/v1/users/${userOf(loop, n)}/recommendations?limit=3`,
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    // Make sure the crash finds a flush inside its transaction (a checked-out client): hold a
    // lock its insert into logins waits for. One simple-protocol query, so no client of ours
    // stays checked out.
    const lockHeld = pool
      .query(`BEGIN; LOCK TABLE logins IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT`)
      .then(() => 'released', () => 'broken by the stop');
    await expect.poll(() => waitingOnLock(pool), { timeout: 10_000, interval: 100 }).toBeGreaterThan(0);
    const beforeOutage = ok(load.counts);
    await postgres.stopImmediately();
    expect(await lockHeld).toBe('broken by the stop');
    await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS));
    const duringOutage = ok(load.counts) - beforeOutage;
    expect(api.alive(), api.stderr()).toBe(true);
    await postgres.start();
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const counts = await load.stop();
    const acknowledged = ok(counts);
    console.info(
      `postgres restart: ${acknowledged} requests acknowledged (${beforeOutage} before, ${duringOutage} during the ${OUTAGE_MS / 1000} s outage), ` +
        `statuses ${JSON.stringify(counts.statuses)}, network errors ${counts.networkErrors}, p50 ${percentile(counts.latenciesMs, 50).toFixed(1)} ms, p99 ${percentile(counts.latenciesMs, 99).toFixed(1)} ms`,
    );

    expect(api.alive(), api.stderr()).toBe(true);
    expect(counts.networkErrors).toBe(0);
    expect(Object.keys(counts.statuses)).toEqual(['200']);
    expect(duringOutage).toBeGreaterThan(100);

    // The buffer drains by itself once Postgres is back, before any shutdown.
    await expect
      .poll(async () => Number(/^prewarm_pending_events (\d+)/m.exec(await (await fetch(`${base}/metrics`)).text())?.[1]), { timeout: 30_000, interval: 250 })
      .toBe(0);
    expect(await api.stop('SIGTERM')).toBe(0);

    await fillServeCounts(pool, new Date());
    const rows = await pool.query<{ logins: number; serves: number; served_sets: number; serve_count: number }>(
      `SELECT (SELECT count(*) FROM logins) AS logins, (SELECT count(*) FROM serves) AS serves,
              (SELECT count(*) FROM serves WHERE recommendation_id IS NOT NULL) AS served_sets,
              (SELECT coalesce(sum(serve_count), 0) FROM recommendations) AS serve_count`,
    );
    expect(rows.rows[0]).toMatchObject({ logins: acknowledged, serves: acknowledged });
    // Each serve of a stored set is written once, retried flushes included, so maintenance counts it once on its set.
    expect(rows.rows[0]?.serve_count).toBe(rows.rows[0]?.served_sets);
  }, 180_000);
});
