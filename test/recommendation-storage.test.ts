import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Packr } from 'msgpackr';
import { createRecommendationCache } from '../src/sets/cache.ts';
import { packItems } from '../src/sets/packed-items.ts';
import { batchSetId, storedItems, storedScore, type RecommendationSet } from '../src/sets/set.ts';
import { createRecommendationStore } from '../src/sets/store.ts';
import { createTestDb, createTestRedis, silentLog, type TestDb, type TestRedis } from './helpers.ts';

// Item ids that a Postgres array literal or CSV must quote or escape.
const AWKWARD_IDS = ['plain-1', 'naïve café ✓ then ascii', '😀 emoji', 'y'.repeat(64), 'z'.repeat(65), 'ascii-then-é', 'a,b', '{braced}', 'say "hi"', 'back\\slash', 'with space', ' lead', 'NULL', 'null', 'tab\there', 'new\nline', 'é-ü-✓', '""', 'x'.repeat(300)];

/** The cache under the test's own key prefix. */
function cacheOn(redis: TestRedis) {
  return createRecommendationCache({ redis: redis.redis, prefix: `${redis.prefix}:`, log: silentLog });
}

/**
 * A set read back, as a plain object of the interface's fields: a cached set keeps its items
 * packed behind the `itemIds` and `scores` getters (src/sets/packed-items.ts).
 */
function fieldsOf(set: RecommendationSet | undefined): RecommendationSet | undefined {
  if (set === undefined) return undefined;
  const { id, userId, source, runId, holdout, computedAt, expiresAt, itemIds, scores, modelVersion, computeMs } = set;
  return { id, userId, source, runId, holdout, computedAt, expiresAt, itemIds, scores, modelVersion, computeMs };
}

function setWith(items: Pick<RecommendationSet, 'itemIds' | 'scores'>, userId = 'u1'): RecommendationSet {
  const computedAt = new Date('2026-01-01T00:00:00Z');
  return {
    id: randomUUID(),
    userId,
    source: 'on_demand',
    runId: null,
    holdout: false,
    computedAt,
    expiresAt: new Date(computedAt.getTime() + 3_600_000),
    ...items,
    modelVersion: 'v1',
    computeMs: 1.5,
  };
}

describe('batchSetId', () => {
  it('derives the same uuid from (run, user) as every earlier version, so retries find their sets', () => {
    expect(batchSetId(42, 'user-0000007')).toBe('b0f22414-750d-531e-af06-20482c0477c5');
    expect(batchSetId(42, 'user-0000008')).not.toBe(batchSetId(42, 'user-0000007'));
    expect(batchSetId(43, 'user-0000007')).not.toBe(batchSetId(42, 'user-0000007'));
  });
});

describe('storedScore', () => {
  it('keeps 6 significant digits, as Number(x.toPrecision(6)) does', () => {
    const samples = [0, -0, 1, -1, 0.1, 1 / 3, 2 / 3, 123456.5, 999999.5, 9.999995, 1e-7 / 3, 12345678.9, -98765.4321, 1e-20 / 7, 3e25 / 7, 0.000123456789];
    for (let i = 0; i < 10_000; i++) samples.push((Math.random() - 0.3) * 10 ** Math.floor(Math.random() * 24 - 12));
    for (const x of samples) expect(storedScore(x), String(x)).toBe(Number(x.toPrecision(6)));
    expect(storedScore(Number.NaN)).toBeNaN();
    expect(storedScore(Number.POSITIVE_INFINITY)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('recommendation storage', () => {
  let db: TestDb | undefined;
  let redis: TestRedis | undefined;
  afterEach(async () => {
    await db?.drop();
    await redis?.drop();
    db = redis = undefined;
  });

  it('gives back from Postgres and from Redis exactly the items written, awkward ids included', async () => {
    db = await createTestDb();
    redis = await createTestRedis();
    const store = createRecommendationStore({ pool: db.pool });
    const cache = cacheOn(redis);
    const items = storedItems(AWKWARD_IDS.map((itemId, rank) => ({ itemId, score: (AWKWARD_IDS.length - rank) / 7 - 1 })));
    const set = setWith(items);
    const empty = setWith({ itemIds: [], scores: [] }, 'u2');

    expect(await store.insertMany(db.pool, [set, empty])).toEqual(new Set([set.id, empty.id]));
    // Written again (a retried batch): nothing new.
    expect(await store.insertMany(db.pool, [set])).toEqual(new Set());
    const at = new Date(set.computedAt.getTime() + 1);
    expect(await store.findFresh('u1', at)).toEqual(set);
    expect(await store.findFresh('u2', at)).toEqual(empty);

    await cache.setMany([set, empty], at);
    expect(fieldsOf(await cache.get('u1'))).toEqual(set);
    expect(fieldsOf(await cache.get('u2'))).toEqual(empty);

    // Redis restarted (its script cache emptied): the sets are still written.
    await redis.redis.script('FLUSH');
    await cache.setMany([{ ...set, userId: 'u3' }], at);
    expect(fieldsOf(await cache.get('u3'))).toEqual({ ...set, userId: 'u3' });

    // Analysts read items one per row, best first.
    const rows = await db.pool.query<{ rank: string; item_id: string; score: number }>('SELECT rank, item_id, score FROM recommendation_items WHERE recommendation_id = $1 ORDER BY rank', [set.id]);
    expect(rows.rows.map((row) => row.item_id)).toEqual(items.itemIds);
    expect(rows.rows.map((row) => row.score)).toEqual(items.scores);
    expect(rows.rows.map((row) => Number(row.rank))).toEqual(items.itemIds.map((_, rank) => rank + 1));
  });

  it('writes a chunk straight in (insertNew), refuses an id already there, and compresses items with lz4', async () => {
    db = await createTestDb();
    const store = createRecommendationStore({ pool: db.pool });
    // 100 ids of ≈20 bytes: the row passes the 2 kB TOAST threshold, as a real set does.
    const hundred = storedItems(Array.from({ length: 100 }, (_, rank) => ({ itemId: `catalogue-item-${rank * 37}`, score: 1 / (rank + 1) })));
    const chunk = [setWith(hundred, 'u1'), setWith(hundred, 'u2')];
    const client = await db.pool.connect();
    try {
      await store.insertNew(client, store.encode(chunk));
      const at = new Date(chunk[0]!.computedAt.getTime() + 1);
      expect(await store.findFresh('u2', at)).toEqual(chunk[1]);
      await expect(store.insertNew(client, store.encode([setWith(hundred, "u3"), chunk[0]!]))).rejects.toMatchObject({ code: '23505' });
      // Through the staging table too (it copies the column's compression).
      await store.insertMany(db.pool, [setWith(hundred, 'u4')]);
      // These servers have lz4 (migration 0007 keeps pglz where a server lacks it).
      const compression = await client.query('SELECT user_id, pg_column_compression(item_ids) AS method FROM recommendations ORDER BY user_id');
      expect(compression.rows).toEqual([
        { user_id: 'u1', method: 'lz4' },
        { user_id: 'u2', method: 'lz4' },
        { user_id: 'u4', method: 'lz4' },
      ]);
    } finally {
      client.release();
    }
  });

  it('caches a chunk bigger than one script call, each set with its own TTL', async () => {
    redis = await createTestRedis();
    const cache = cacheOn(redis);
    const now = new Date('2026-01-01T00:00:00Z');
    const sets = Array.from({ length: 250 }, (_, n) => ({
      ...setWith(storedItems([{ itemId: `i${n}`, score: n }]), `user-${n}`),
      computedAt: now,
      expiresAt: new Date(now.getTime() + 60_000 + n * 1_000),
    }));
    await cache.setMany(sets, now);
    for (const n of [0, 99, 100, 249]) {
      expect(fieldsOf(await cache.get(`user-${n}`))).toEqual(sets[n]);
      const ttl = await redis.redis.pttl(cache.key(`user-${n}`));
      expect(ttl).toBeGreaterThan(60_000 + n * 1_000 - 5_000);
      expect(ttl).toBeLessThanOrEqual(60_000 + n * 1_000);
    }
    expect(await redis.redis.keys(`${redis.prefix}:rec:*`)).toHaveLength(250);
  });

  it('treats a cache entry it did not write as a miss rather than failing the login', async () => {
    redis = await createTestRedis();
    const cache = cacheOn(redis);
    // The layout before item arrays (JSON of item objects), garbage, and arrays that disagree.
    const fields = { id: randomUUID(), source: 'batch', runId: null, holdout: false, computedAt: 0, expiresAt: 1, modelVersion: 'v1', computeMs: 1 };
    const packr = new Packr({ useRecords: false });
    await redis.redis.set(cache.key('json'), JSON.stringify({ ...fields, items: [{ itemId: 'a', score: 1 }] }));
    await redis.redis.set(cache.key('garbage'), '{not json');
    await redis.redis.set(cache.key('lengths'), packr.pack({ ...fields, itemIds: ['a', 'b'], scores: [1] }));
    await redis.redis.set(cache.key('no-scores'), packr.pack({ ...fields, itemIds: ['a'] }));
    // The packed layout (version 2) with a block that is not its count of items, or no block.
    const block = packItems(['a', 'b'], [0.5, 0.25]);
    await redis.redis.set(cache.key('short-block'), packr.pack({ ...fields, v: 2, count: 2, items: block.subarray(0, block.length - 1) }));
    await redis.redis.set(cache.key('count'), packr.pack({ ...fields, v: 2, count: 3, items: block }));
    await redis.redis.set(cache.key('no-block'), packr.pack({ ...fields, v: 2, count: 2, itemIds: ['a', 'b'], scores: [0.5, 0.25] }));
    for (const userId of ['json', 'garbage', 'lengths', 'no-scores', 'short-block', 'count', 'no-block']) expect(await cache.get(userId), userId).toBeUndefined();
    await redis.redis.set(cache.key('packed'), packr.pack({ ...fields, v: 2, count: 2, items: block }));
    expect(fieldsOf(await cache.get('packed'))).toMatchObject({ itemIds: ['a', 'b'], scores: [0.5, 0.25] });
    // The layout before version 2 (two arrays), well formed: still a hit.
    await redis.redis.set(cache.key('good'), packr.pack({ ...fields, itemIds: ['a', 'b'], scores: [0.5, 0.25] }));
    expect(await cache.get('good')).toMatchObject({ itemIds: ['a', 'b'], scores: [0.5, 0.25] });
  });
});
