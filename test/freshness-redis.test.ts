// src/freshness/freshness.ts on real Redis and Postgres: up to date from one read, behind counted
// exactly, the bounds that make it count in Postgres, and what happens when Redis loses or
// refuses writes. `fromRead` is what the login's MGET alone says (0, or undefined: count it).
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VirtualClock } from '../src/clock.ts';
import { createFreshness, type Freshness } from '../src/freshness/freshness.ts';
import { createTestDb, createTestRedis, silentLog, TEST_REDIS_URL, type TestDb, type TestRedis } from './helpers.ts';

const MINUTE = 60_000;
const T0 = Date.parse('2024-03-01T12:00:00Z');
const at = (minutes: number) => new Date(T0 + minutes * MINUTE);

describe('freshness: missed interactions from Redis', () => {
  let db: TestDb;
  let testRedis: TestRedis;
  let clock: VirtualClock;
  const opened: Freshness[] = [];
  const clients: Redis[] = [];

  beforeEach(async () => {
    db = await createTestDb();
    testRedis = await createTestRedis();
    clock = new VirtualClock(T0);
  });
  afterEach(async () => {
    for (const freshness of opened.splice(0)) freshness.close();
    for (const client of clients.splice(0)) client.disconnect();
    await testRedis.drop();
    await db.drop();
  });

  function make(redis: Redis = testRedis.redis, options: { maxPerUser?: number; keepMs?: number } = {}): Freshness {
    const freshness = createFreshness({ redis, prefix: `${testRedis.prefix}:`, pool: db.pool, clock, log: silentLog, clockAheadMs: 5 * MINUTE, ...options });
    opened.push(freshness);
    return freshness;
  }

  async function count(freshness: Freshness, userId: string, computedAt: Date, loginAt: Date): Promise<{ fromRead: number | undefined; exact: number | null }> {
    const read = await freshness.read(userId);
    return { fromRead: freshness.countFrom(read, computedAt, loginAt), exact: await freshness.countExactly(read, userId, computedAt, loginAt) };
  }

  async function inPostgres(userId: string, ...ats: Date[]): Promise<void> {
    for (const when of ats) await db.pool.query('INSERT INTO interactions (user_id, item_id, at, weight) VALUES ($1, $2, $3, 1)', [userId, 'i', when]);
  }

  it('counts [computedAt, login): two items at one instant are two, a repeat of one is one (as in Postgres); up to date from the read alone', async () => {
    const freshness = make();
    await freshness.start();
    await freshness.record([
      { userId: 'u', itemId: 'i', at: at(9) },
      { userId: 'u', itemId: 'i', at: at(10) },
      { userId: 'u', itemId: 'i', at: at(20) },
      { userId: 'u', itemId: 'j', at: at(20) },
      { userId: 'u', itemId: 'j', at: at(20) },
      { userId: 'u', itemId: 'i', at: at(31) },
      { userId: 'other', itemId: 'i', at: at(20) },
    ]);
    expect(await count(freshness, 'u', at(10), at(30))).toEqual({ fromRead: undefined, exact: 3 });
    // The newest (at 31, after the login) is past the set: the read cannot say; the count is 0.
    expect(await count(freshness, 'u', at(21), at(30))).toEqual({ fromRead: undefined, exact: 0 });
    expect(await count(freshness, 'u', at(32), at(40))).toEqual({ fromRead: 0, exact: 0 });
    expect(await count(freshness, 'other', at(21), at(30))).toEqual({ fromRead: 0, exact: 0 });
    expect(await count(freshness, 'nobody', at(10), at(30))).toEqual({ fromRead: 0, exact: 0 });
  });

  it("does not count an interaction at the login's instant: the login's own (a session's first message is its login)", async () => {
    const freshness = make();
    await freshness.start();
    await freshness.record([
      { userId: 'u', itemId: 'i', at: at(20) },
      { userId: 'u', itemId: 'i', at: at(30) },
      { userId: 'u', itemId: 'j', at: at(30) },
    ]);
    await inPostgres('u', at(20), at(30));
    await db.pool.query(`INSERT INTO interactions (user_id, item_id, at, weight) VALUES ('u', 'j', $1, 1)`, [at(30)]);
    expect(await count(freshness, 'u', at(10), at(30))).toEqual({ fromRead: undefined, exact: 1 });
    // Counted in Postgres (a set older than the marker): the same rule.
    expect(await count(freshness, 'u', at(-10), at(30))).toEqual({ fromRead: undefined, exact: 1 });
  });

  it('records a request of many users in several script calls, each user counted', async () => {
    const freshness = make();
    await freshness.start();
    await freshness.record(Array.from({ length: 1_000 }, (_, i) => ({ userId: `u${i % 120}`, itemId: `i${i}`, at: at(10 + (i % 7)) })));
    for (const user of ['u0', 'u57', 'u119']) {
      const n = Array.from({ length: 1_000 }, (_, i) => i).filter((i) => `u${i % 120}` === user).length;
      expect(await count(freshness, user, at(10), at(30)), user).toEqual({ fromRead: undefined, exact: n });
      expect(await count(freshness, user, at(17), at(30)), user).toEqual({ fromRead: 0, exact: 0 });
    }
  });

  it('keeps the newest time only ever raised: an older interaction recorded later does not lower it', async () => {
    const freshness = make();
    await freshness.start();
    await freshness.record(Array.from({ length: 9 }, (_, i) => ({ userId: 'u', itemId: 'i', at: at(10 + i) })));
    await freshness.record([{ userId: 'u', itemId: 'j', at: at(5) }]);
    expect(await testRedis.redis.get(`${testRedis.prefix}:fr:n:u`)).toBe(String(at(18).getTime()));
    expect(await count(freshness, 'u', at(10), at(30))).toEqual({ fromRead: undefined, exact: 9 });
    expect(await count(freshness, 'u', at(16), at(30))).toEqual({ fromRead: undefined, exact: 3 });
    expect(await count(freshness, 'u', at(19), at(30))).toEqual({ fromRead: 0, exact: 0 });
  });

  it('keeps at most maxPerUser times; a set older than the dropped ones is counted in Postgres', async () => {
    const freshness = make(testRedis.redis, { maxPerUser: 5 });
    await freshness.start();
    const times = Array.from({ length: 8 }, (_, i) => at(10 + i));
    await freshness.record(times.map((t) => ({ userId: 'u', itemId: 'i', at: t })));
    await inPostgres('u', ...times);
    expect(await testRedis.redis.zcard(`${testRedis.prefix}:fr:t:u`)).toBe(5);
    // 10..12 dropped: a set computed at 12 or before cannot be judged from Redis.
    expect(await count(freshness, 'u', at(12), at(30))).toEqual({ fromRead: undefined, exact: 6 });
    expect(await count(freshness, 'u', at(13), at(30))).toEqual({ fromRead: undefined, exact: 5 });
    await db.pool.query('DELETE FROM interactions');
    // From Redis's times (ZCOUNT), not Postgres's, as long as Redis holds them all.
    expect(await count(freshness, 'u', at(13), at(30))).toEqual({ fromRead: undefined, exact: 5 });
  });

  it('drops times older than keepMs before the clock, and counts sets served longer than that in Postgres', async () => {
    const freshness = make(testRedis.redis, { keepMs: 60 * MINUTE });
    await freshness.start();
    clock.set(at(10));
    await freshness.record([{ userId: 'u', itemId: 'i', at: at(10) }]);
    clock.set(at(100));
    await freshness.record([{ userId: 'u', itemId: 'i', at: at(100) }]);
    await inPostgres('u', at(10), at(100));
    expect(await testRedis.redis.zcard(`${testRedis.prefix}:fr:t:u`)).toBe(1);
    expect(await count(freshness, 'u', at(6), at(101))).toEqual({ fromRead: undefined, exact: 2 });
    expect(await count(freshness, 'u', at(50), at(101))).toEqual({ fromRead: undefined, exact: 1 });
    expect(await count(freshness, 'u', at(100.5), at(120))).toEqual({ fromRead: 0, exact: 0 });
    // No interaction for keepMs: nothing behind for a set younger than that; an older one, Postgres.
    clock.set(at(170));
    await testRedis.redis.del(`${testRedis.prefix}:fr:n:u`, `${testRedis.prefix}:fr:t:u`);
    expect(await count(freshness, 'u', at(120), at(170))).toEqual({ fromRead: 0, exact: 0 });
    expect(await count(freshness, 'u', at(50), at(170))).toEqual({ fromRead: undefined, exact: 1 });
  });

  it("after Redis lost everything, a user's first login counts in Postgres and loads the user's times; the next is judged from Redis", async () => {
    // Started after a restart of Redis: no marker until the first read sets one.
    const freshness = make();
    clock.set(at(40));
    await inPostgres('u', at(15), at(20), at(35));
    // No marker (Redis restarted empty), the set older than the new one: Postgres, and a load.
    expect(await count(freshness, 'u', at(10), at(40))).toEqual({ fromRead: undefined, exact: 3 });
    // Judged from Redis now: Postgres no longer has them, Redis's ZCOUNT still counts them.
    await db.pool.query('DELETE FROM interactions');
    expect(await count(freshness, 'u', at(18), at(40))).toEqual({ fromRead: undefined, exact: 2 });
    expect(await count(freshness, 'u', at(36), at(40))).toEqual({ fromRead: 0, exact: 0 });
    // What comes after the load is recorded as usual.
    await freshness.record([{ userId: 'u', itemId: 'k', at: at(38) }]);
    expect(await count(freshness, 'u', at(10), at(40))).toEqual({ fromRead: undefined, exact: 4 });
    expect(await count(freshness, 'u', at(36), at(40))).toEqual({ fromRead: undefined, exact: 1 });
    // Another user, never loaded, still goes to Postgres.
    expect((await count(freshness, 'w', at(10), at(40))).fromRead).toBeUndefined();
  });

  it('after a failed write, sets computed before Redis takes writes again are counted in Postgres', async () => {
    // A serving-style connection: commands fail at once while it is disconnected.
    const redis = new Redis(TEST_REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
    clients.push(redis);
    redis.on('error', () => undefined);
    await redis.connect();
    const freshness = make(redis);
    await freshness.start();
    clock.set(at(20));
    redis.disconnect();
    // Acknowledged (the recorder buffers it for Postgres) but not in Redis.
    await freshness.record([{ userId: 'u', itemId: 'i', at: at(20) }]);
    await inPostgres('u', at(20));
    const unread = await freshness.read('u');
    expect(unread.ok).toBe(false);
    expect(await freshness.countExactly(unread, 'u', at(10), at(30))).toBe(1);

    await redis.connect();
    clock.set(at(40));
    await freshness.record([{ userId: 'u', itemId: 'i', at: at(40) }]);
    await inPostgres('u', at(40));
    // The marker moved to 12:40: a set of 12:10 is counted in Postgres, and right.
    expect(await count(freshness, 'u', at(10), at(45))).toEqual({ fromRead: undefined, exact: 2 });
    expect(await count(freshness, 'u', at(46), at(50))).toEqual({ fromRead: 0, exact: 0 });
  });
});
