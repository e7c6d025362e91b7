// recommendations.serve_count and first_served_at, derived from the serves by every maintenance
// pass (src/maintenance/rollups.ts fillServeCounts): absolute, so repeating a pass or a flush
// changes nothing; a serve flushed late is counted by the next pass; a set whose life ended over
// a day (plus the grace) ago is settled and no longer touched.
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fillAllServeCounts, fillServeCounts } from '../src/maintenance/rollups.ts';
import { createRecommendationStore } from '../src/sets/store.ts';
import { createTestDb, type TestDb } from './helpers.ts';
import { precomputedSet } from './support/sets.ts';

const HOUR = 3_600_000;
const T0 = Date.parse('2024-03-10T00:00:00Z');
const at = (hours: number) => new Date(T0 + hours * HOUR);

describe('serve counts derived from the serves', () => {
  let db: TestDb;
  beforeEach(async () => {
    db = await createTestDb();
  });
  afterEach(() => db.drop());

  async function serve(setId: string, userId: string, when: Date): Promise<void> {
    await db.pool.query(
      `INSERT INTO serves (id, user_id, at, source, recommendation_id, staleness_ms, latency_ms) VALUES ($1, $2, $3, 'precomputed', $4, 0, 1)`,
      [randomUUID(), userId, when, setId],
    );
  }
  async function counts(): Promise<Record<string, { n: number; first: string | null }>> {
    const { rows } = await db.pool.query<{ user_id: string; serve_count: number; first_served_at: Date | null }>(
      'SELECT user_id, serve_count, first_served_at FROM recommendations ORDER BY user_id',
    );
    return Object.fromEntries(rows.map((r) => [r.user_id, { n: r.serve_count, first: r.first_served_at?.toISOString() ?? null }]));
  }

  it('counts each set from its serves, again and again to the same result, late serves included, settled sets left alone', async () => {
    const store = createRecommendationStore({ pool: db.pool });
    // old: lived [-72 h, -48 h), long settled at the passes below; day: [-24 h, 0); now: [-2 h, 22 h).
    const sets = { old: precomputedSet('old', at(-72)), day: precomputedSet('day', at(-24)), now: precomputedSet('now', at(-2)) };
    await store.insertMany(db.pool, Object.values(sets));
    await serve(sets.old.id, 'old', at(-60));
    await serve(sets.day.id, 'day', at(-20));
    await serve(sets.day.id, 'day', at(-3));
    await serve(sets.now.id, 'now', at(-1));

    const first = await fillServeCounts(db.pool, at(0));
    expect(first?.sets).toBe(2);
    expect(await counts()).toEqual({
      day: { n: 2, first: at(-20).toISOString() },
      now: { n: 1, first: at(-1).toISOString() },
      old: { n: 0, first: null },
    });
    expect((await fillServeCounts(db.pool, at(0)))?.sets).toBe(0);

    // A flush that arrived late (Postgres was down): the day set's serve of -4 h, and one of now.
    await serve(sets.day.id, 'day', at(-4));
    await serve(sets.now.id, 'now', at(-1.5));
    expect((await fillServeCounts(db.pool, at(1)))?.sets).toBe(2);
    expect(await counts()).toMatchObject({ day: { n: 3, first: at(-20).toISOString() }, now: { n: 2, first: at(-1.5).toISOString() } });

    // A replay's schema at its end: every set, whenever computed.
    expect(await fillAllServeCounts(db.pool)).toBe(1);
    expect((await counts()).old).toEqual({ n: 1, first: at(-60).toISOString() });
    // A dry run counts nothing.
    await serve(sets.now.id, 'now', at(-0.5));
    expect(await fillServeCounts(db.pool, at(1), true)).toMatchObject({ sets: null });
    expect((await counts()).now).toMatchObject({ n: 2 });
  });

  it('no sets: nothing to count', async () => {
    expect(await fillServeCounts(db.pool, at(0))).toEqual({ from: at(-24).toISOString(), sets: 0 });
  });
});
