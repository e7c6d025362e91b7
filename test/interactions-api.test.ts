import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../src/db/migrate.ts';
import type { Pool } from '../src/db/pool.ts';
import type { Recommender, UserRecommendations } from '../src/recommender/types.ts';
import { createInteractionRecorder } from '../src/interactions/recorder.ts';
import { createTestDb, silentLog, type TestDb } from './helpers.ts';
import { createScriptedRecommender } from './support/scripted-recommender.ts';
import { API_TOKEN, createServingHarness, type ServingHarness } from './support/serving-harness.ts';

const auth = { authorization: `Bearer ${API_TOKEN}` };

interface StoredInteraction {
  user_id: string;
  item_id: string;
  at: Date;
  weight: number;
}

async function stored(h: ServingHarness): Promise<StoredInteraction[]> {
  await h.interactions.flush();
  const result = await h.db.pool.query<StoredInteraction>('SELECT user_id, item_id, at, weight FROM interactions ORDER BY user_id, at, item_id');
  return result.rows;
}

describe('POST /v1/interactions', () => {
  let h: ServingHarness | undefined;
  let db: TestDb | undefined;
  afterEach(async () => {
    await h?.close();
    await db?.drop();
    h = undefined;
    db = undefined;
  });

  async function post(payload: unknown, headers: Record<string, string> = auth) {
    return h!.app.inject({ method: 'POST', url: '/v1/interactions', headers, payload: payload as object });
  }

  it('acknowledges with 202, writes every interaction with its defaults, and makes its user known', async () => {
    h = await createServingHarness(createScriptedRecommender({}).recommender);
    await h.db.pool.query(`INSERT INTO user_activity (user_id, first_login_at, last_login_at, login_count) VALUES ('bob', '2024-02-01T00:00:00Z', '2024-02-01T00:00:00Z', 1)`);
    const response = await post({
      interactions: [
        { userId: 'alice', itemId: 'i1' },
        { userId: 'bob', itemId: 'i2', at: '2024-03-01T11:00:00+01:00', weight: 2.5 },
        { userId: 'bob', itemId: 'i3', at: '2024-02-29T23:00:00Z' },
      ],
    });
    expect(response.statusCode).toBe(202);
    expect(response.json()).toEqual({ accepted: 3 });
    expect(h.interactions.pending()).toBe(3);
    expect(await stored(h)).toEqual([
      { user_id: 'alice', item_id: 'i1', at: new Date('2024-03-01T12:00:00Z'), weight: 1 },
      { user_id: 'bob', item_id: 'i3', at: new Date('2024-02-29T23:00:00Z'), weight: 1 },
      { user_id: 'bob', item_id: 'i2', at: new Date('2024-03-01T10:00:00Z'), weight: 2.5 },
    ]);
    const known = await h.db.pool.query(`SELECT known_since FROM user_activity WHERE user_id = 'bob'`);
    expect(known.rows[0].known_since).toEqual(new Date('2024-02-29T23:00:00Z'));
    expect(h.interactions.pending()).toBe(0);
  });

  it.each([
    [{ interactions: [{ userId: 'a', itemId: 'i' }, { userId: 'a', itemId: 'i\u0007' }] }, 'body/interactions/1/itemId contains control characters'],
    [{ interactions: [{ userId: 'a', itemId: 'i' }, { userId: 'a', itemId: 'j' }, { userId: '', itemId: 'i' }] }, 'body/interactions/2/userId is empty'],
    [{ interactions: [{ userId: 'x'.repeat(129), itemId: 'i' }] }, 'body/interactions/0/userId is longer than 128 characters'],
    [{ interactions: [{ userId: 'a', itemId: 'i', at: '2024-02-30T00:00:00Z' }] }, 'body/interactions/0/at'],
    [{ interactions: [{ userId: 'a', itemId: 'i', at: '2024-03-01T12:06:00Z' }] }, 'body/interactions/0/at is more than 5 minutes ahead'],
    [{ interactions: [{ userId: 'a', itemId: 'i', weight: 0 }] }, 'body/interactions/0/weight is not a positive number'],
    [{ interactions: [{ userId: 'a', itemId: 'i', weight: 1e39 }] }, 'body/interactions/0/weight is too large for a 4-byte real'],
    [{ interactions: [{ userId: 'a', itemId: 'i', wieght: 2 }] }, 'body/interactions/0'],
    [{ interactions: [{ userId: 'a' }] }, 'body/interactions/0'],
    [{ interactions: [] }, 'body/interactions'],
    [{ interactions: Array.from({ length: 1_001 }, (_, i) => ({ userId: `u${i}`, itemId: 'i' })) }, 'body/interactions'],
    [{ interaction: [{ userId: 'a', itemId: 'i' }] }, 'body'],
  ])('refuses a bad request whole and names what is wrong (%#)', async (payload, message) => {
    h = await createServingHarness(createScriptedRecommender({}).recommender);
    const response = await post(payload);
    expect(response.statusCode).toBe(400);
    expect(response.json().error.code).toBe('PREWARM_ERR_BAD_REQUEST');
    expect(response.json().error.message).toContain(message);
    expect(h.interactions.pending()).toBe(0);
    expect(await stored(h)).toEqual([]);
  });

  it('takes exactly 1,000 interactions, and refuses a request without a service token', async () => {
    h = await createServingHarness(createScriptedRecommender({}).recommender);
    const unauthorised = await post({ interactions: [{ userId: 'a', itemId: 'i' }] }, {});
    expect(unauthorised.statusCode).toBe(401);
    const full = await post({ interactions: Array.from({ length: 1_000 }, (_, i) => ({ userId: `u${i % 7}`, itemId: `i${i}`, at: '2024-03-01T00:00:00Z' })) });
    expect(full.statusCode).toBe(202);
    expect((await stored(h)).length).toBe(1_000);
  });

  it('an on-demand computation sees the interactions acknowledged just before it, though not yet flushed', async () => {
    // A recommender that recommends what the user interacted with before `at`, read from Postgres.
    const history: { pool?: Pool } = {};
    const fromHistory: Recommender = {
      kind: 'history',
      modelVersion: () => 'history-v1',
      async recommend(userIds, at, k) {
        const result = new Map<string, UserRecommendations>();
        for (const userId of userIds) {
          const rows = await history.pool!.query<{ item_id: string }>('SELECT item_id FROM interactions WHERE user_id = $1 AND at <= $2 ORDER BY at DESC LIMIT $3', [userId, at, k]);
          result.set(userId, { personalised: rows.rows.length > 0, items: rows.rows.map((row, i) => ({ itemId: row.item_id, score: 1 - i / 100 })) });
        }
        return result;
      },
      popular: async () => [{ itemId: 'p1', score: 1 }],
      close: async () => undefined,
    };
    h = await createServingHarness(fromHistory);
    history.pool = h.db.pool;
    expect((await post({ interactions: [{ userId: 'carol', itemId: 'ramen', at: '2024-03-01T11:59:00Z' }] })).statusCode).toBe(202);
    expect(h.interactions.hasPending('carol')).toBe(true);
    const response = await h.app.inject({ method: 'GET', url: '/v1/users/carol/recommendations', headers: auth });
    expect(response.json()).toMatchObject({ source: 'on_demand', items: [{ itemId: 'ramen' }] });
    expect(h.interactions.hasPending('carol')).toBe(false);
  });

  it('is documented in the OpenAPI document', async () => {
    h = await createServingHarness(createScriptedRecommender({}).recommender);
    const spec = (await h.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    const operation = spec.paths['/v1/interactions'].post;
    expect(Object.keys(operation.responses).sort()).toEqual(['202', '400', '401', '413', '503']);
    expect(operation.requestBody.content['application/json'].schema.properties.interactions.maxItems).toBe(1_000);
  });
});

describe('interaction recorder', () => {
  let db: TestDb | undefined;
  afterEach(async () => {
    await db?.drop();
    db = undefined;
  });

  it('keeps what it acknowledged while Postgres refuses the writes, writes it once they succeed, and refuses whole requests beyond its bound', async () => {
    // A schema not migrated yet: every write fails until the table exists.
    db = await createTestDb({ migrate: false });
    const recorder = createInteractionRecorder({ pool: db.pool, log: silentLog, flushIntervalMs: 60_000, maxBatch: 2, maxPending: 5 });
    const at = new Date('2024-03-01T00:00:00Z');
    const row = (userId: string, itemId: string) => ({ userId, itemId, at, weight: 1 });
    expect(recorder.offer([row('a', '1'), row('a', '2'), row('b', '1')])).toBe(true);
    await expect(recorder.flush()).rejects.toThrow();
    expect(recorder.pending()).toBe(3);
    expect(recorder.hasPending('a')).toBe(true);
    // Three more would pass the bound of five: none is taken.
    expect(recorder.offer([row('c', '1'), row('c', '2'), row('c', '3')])).toBe(false);
    expect(recorder.offer([row('c', '1'), row('c', '2')])).toBe(true);
    expect(recorder.isFull()).toBe(true);
    await migrate({ pool: db.pool, schema: db.schema, log: silentLog });
    await recorder.close();
    expect(recorder.pending()).toBe(0);
    expect(recorder.hasPending('a')).toBe(false);
    const rows = await db.pool.query('SELECT user_id, item_id FROM interactions ORDER BY 1, 2');
    expect(rows.rows.map((r) => `${r.user_id}/${r.item_id}`)).toEqual(['a/1', 'a/2', 'b/1', 'c/1', 'c/2']);
  });
});
