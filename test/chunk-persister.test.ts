import { afterEach, describe, expect, it } from 'vitest';
import { createThreadPersister } from '../src/planner/thread-persister.ts';
import type { ChunkPersister, ChunkWrite } from '../src/planner/chunk-persister.ts';
import { createRecommendationCache, encodeCacheEntries } from '../src/recommendations/cache.ts';
import { batchSetId, storedItems, type RecommendationSet } from '../src/recommendations/set.ts';
import { createRecommendationStore, encodeSets } from '../src/recommendations/store.ts';
import { createTestDb, createTestRedis, silentLog, TEST_DATABASE_URL, TEST_REDIS_URL, type TestDb, type TestRedis } from './helpers.ts';

const START = new Date('2026-03-02T00:00:00Z');
const HOUR = 3_600_000;

async function insertRun(db: TestDb, chunks: number): Promise<number> {
  const run = await db.pool.query<{ id: string }>(
    `INSERT INTO batch_runs (window_name, scheduled_for, started_at, expires_at, policy, status, chunks_total)
     VALUES ('w', $1, $1, $2, 'all', 'running', $3) RETURNING id`,
    [START, new Date(START.getTime() + 24 * HOUR), chunks],
  );
  const runId = Number(run.rows[0]!.id);
  await db.pool.query('INSERT INTO batch_chunks (run_id, chunk_no, users) SELECT $1, n, 3 FROM generate_series(0, $2 - 1) n', [runId, chunks]);
  return runId;
}

function chunkSets(runId: number, users: string[]): RecommendationSet[] {
  return users.map((userId, i) => ({
    id: batchSetId(runId, userId),
    userId,
    source: 'batch',
    runId,
    holdout: i === 0,
    computedAt: START,
    expiresAt: new Date(START.getTime() + 24 * HOUR),
    items: storedItems([
      { itemId: `a-${userId}`, score: 2 / 3 },
      { itemId: 'b,"c"', score: 1 / 7 },
    ]),
    modelVersion: 'v1',
    computeMs: 0.25,
  }));
}

describe('chunk writer thread', () => {
  let db: TestDb | undefined;
  let redis: TestRedis | undefined;
  let persister: ChunkPersister | undefined;
  afterEach(async () => {
    await persister?.close();
    await db?.drop();
    await redis?.drop();
    db = redis = persister = undefined;
  });

  async function setUp() {
    db = await createTestDb();
    redis = await createTestRedis();
    const cachePrefix = `${redis.prefix}:`;
    persister = await createThreadPersister({ databaseUrl: TEST_DATABASE_URL, schema: db.schema, poolSize: 2, cacheRedisUrl: TEST_REDIS_URL, cachePrefix, logLevel: 'silent', log: silentLog });
    const cache = createRecommendationCache({ redis: redis.redis, prefix: cachePrefix, log: silentLog });
    const write = (runId: number, chunkNo: number, sets: RecommendationSet[]): ChunkWrite => ({
      sets: encodeSets(sets),
      cache: encodeCacheEntries(cache.key, sets, START),
      completion: { runId, chunkNo, at: START, precomputed: sets.length, failed: 0, computeMs: 1.5, error: null },
    });
    return { db, cache, persister, write, store: createRecommendationStore({ pool: db.pool }) };
  }

  it('writes the sets and the completion in one transaction, then the cache; a duplicate writes nothing', async () => {
    const { db, cache, persister, write, store } = await setUp();
    const runId = await insertRun(db, 2);
    const sets = chunkSets(runId, ['u1', 'u2', 'u3']);

    await expect(persister.persist(write(runId, 0, sets))).resolves.toBe(true);
    const later = new Date(START.getTime() + HOUR);
    for (const set of sets) {
      expect(await store.findFresh(set.userId, later)).toEqual(set);
      expect(await cache.get(set.userId)).toEqual(set);
    }
    const run = await db.pool.query('SELECT precomputed, chunks_done, status FROM batch_runs WHERE id = $1', [runId]);
    expect(run.rows[0]).toEqual({ precomputed: 3, chunks_done: 1, status: 'running' });

    // The same chunk again (a redelivered job): not recorded, no second set, nothing counted twice.
    await expect(persister.persist(write(runId, 0, sets))).resolves.toBe(false);
    const count = await db.pool.query('SELECT count(*)::int AS n FROM recommendations');
    expect(count.rows[0].n).toBe(3);
    // The run's last chunk completes it.
    await expect(persister.persist(write(runId, 1, chunkSets(runId, ['u4'])))).resolves.toBe(true);
    const done = await db.pool.query('SELECT precomputed, chunks_done, status FROM batch_runs WHERE id = $1', [runId]);
    expect(done.rows[0]).toEqual({ precomputed: 4, chunks_done: 2, status: 'completed' });
  });

  it('rejects with the database error when the transaction fails, leaving nothing written', async () => {
    const { db, cache, persister, write } = await setUp();
    const runId = await insertRun(db, 1);
    // Sets that name a run that does not exist: the foreign key refuses them.
    const orphans = chunkSets(runId + 1000, ['u1']);
    await expect(persister.persist(write(runId, 0, orphans))).rejects.toMatchObject({ code: '23503' });
    const written = await db.pool.query('SELECT (SELECT count(*)::int FROM recommendations) AS sets, (SELECT chunks_done FROM batch_runs WHERE id = $1) AS done', [runId]);
    expect(written.rows[0]).toEqual({ sets: 0, done: 0 });
    expect(await cache.get('u1')).toBeUndefined();
    // The thread is still there for the retry.
    await expect(persister.persist(write(runId, 0, chunkSets(runId, ['u1'])))).resolves.toBe(true);
  });

  it('refuses writes once closed', async () => {
    const { persister } = await setUp();
    await persister.close();
    await expect(persister.persist({} as ChunkWrite)).rejects.toMatchObject({ code: 'PREWARM_ERR_WRITER' });
  });
});
