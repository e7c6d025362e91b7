import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_FEEDBACK, resolveHeldPolicy } from '../src/planner/feedback.ts';
import { parsePolicy } from '../src/planner/policy.ts';
import { createRecommendationStore } from '../src/sets/store.ts';
import { batchSetId, type RecommendationSet } from '../src/sets/set.ts';
import { createTestDb, type TestDb } from './helpers.ts';

const DAY = 86_400_000;
const T0 = Date.parse('2024-03-01T00:00:00Z');
const day = (d: number, hours = 0) => new Date(T0 + d * DAY + hours * 3_600_000);
const USERS = Array.from({ length: 20 }, (_v, i) => `u${String(i).padStart(2, '0')}`);

/**
 * The planner's side of the controller: the window's last run whose horizon is over, read from
 * the views over a real Postgres history (runs, sets, logins, serves).
 */
describe('resolveHeldPolicy reads the last finished run of the window', () => {
  let db: TestDb | undefined;
  afterEach(async () => {
    await db?.drop();
    db = undefined;
  });

  /**
   * Twenty users known since the day before. Each run d (daily, horizon 1 d) applied `policy` and
   * precomputed for `covered` of the ten users who log in during its day, plus `idle` users who do
   * not (its waste).
   */
  async function seed(runs: { d: number; policy: string; covered: number; idle: number; window?: string }[]) {
    db = await createTestDb();
    const pool = db.pool;
    for (const user of USERS) {
      await pool.query('INSERT INTO user_activity (user_id, first_login_at, last_login_at, login_count, known_since) VALUES ($1, $2, $2, 1, $2)', [user, day(-1)]);
    }
    const store = createRecommendationStore({ pool });
    for (const run of runs) {
      const inserted = await pool.query<{ id: number }>(
        `INSERT INTO batch_runs (window_name, scheduled_for, started_at, planned_at, expires_at, horizon_ms, policy, status)
         VALUES ($1, $2, $2, $2, $3, $4, $5, 'completed') RETURNING id`,
        [run.window ?? 'nightly', day(run.d), day(run.d + 1), DAY, run.policy],
      );
      const runId = (inserted.rows[0] as { id: number }).id;
      const active = USERS.slice(0, 10);
      const chosen = [...active.slice(0, run.covered), ...USERS.slice(10, 10 + run.idle)];
      const sets: RecommendationSet[] = chosen.map((userId) => ({
        id: batchSetId(runId, userId),
        userId,
        source: 'batch',
        runId,
        holdout: false,
        computedAt: day(run.d),
        expiresAt: day(run.d + 1),
        itemIds: ['i1'],
        scores: [1],
        modelVersion: 'm1',
        computeMs: 1,
      }));
      await store.insertMany(pool, sets);
      for (const userId of active) {
        await pool.query('INSERT INTO logins (user_id, at) VALUES ($1, $2)', [userId, day(run.d, 9)]);
        if (chosen.includes(userId)) await pool.query('UPDATE recommendations SET first_served_at = $2, serve_count = 1 WHERE id = $1', [batchSetId(runId, userId), day(run.d, 9)]);
      }
    }
    return pool;
  }

  it('under-covered: the next run applies a higher coverage target, moved from what the last run applied', async () => {
    // Day 0 applied 0.8 and covered 5 of 10; day 1 applied 0.85 and covered 6 of 10.
    const pool = await seed([
      { d: 0, policy: 'coverage:0.8', covered: 5, idle: 2 },
      { d: 1, policy: 'coverage:0.85', covered: 6, idle: 2 },
    ]);
    const window = { name: 'nightly', policy: parsePolicy('coverage:0.8') };
    const { gain, evidenceHalf } = DEFAULT_FEEDBACK;
    const step = (measured: number) => gain * (10 / (10 + evidenceHalf)) * (0.8 - measured);
    // At day 2 the last finished run is day 1's: 0.85 moved by its error (0.8 − 0.6).
    const atDay2 = await resolveHeldPolicy(pool, window, day(2));
    expect(atDay2.kind === 'coverage' && atDay2.target).toBeCloseTo(0.85 + step(0.6), 4);
    // Mid-day 1, day 1's horizon is not over: day 0's outcome counts, from what day 0 applied.
    const midDay1 = await resolveHeldPolicy(pool, window, day(1, 12));
    expect(midDay1.kind === 'coverage' && midDay1.target).toBeCloseTo(0.8 + step(0.5), 4);
    // Before any run is over: the goal.
    expect(await resolveHeldPolicy(pool, window, day(0, 12))).toEqual({ kind: 'coverage', target: 0.8 });
    // Another window's runs do not count.
    expect(await resolveHeldPolicy(pool, { name: 'other', policy: parsePolicy('coverage:0.8') }, day(2))).toEqual({ kind: 'coverage', target: 0.8 });
  });

  it('waste: over the bound, the next run applies a tighter one', async () => {
    // 8 sets, 4 served: waste 0.5 against a bound of 0.3.
    const pool = await seed([{ d: 0, policy: 'waste:0.3', covered: 4, idle: 4 }]);
    const next = await resolveHeldPolicy(pool, { name: 'nightly', policy: parsePolicy('waste:0.3') }, day(1));
    expect(next.kind).toBe('waste');
    expect(next.kind === 'waste' && next.max).toBeCloseTo(0.3 - DEFAULT_FEEDBACK.gain * (8 / (8 + DEFAULT_FEEDBACK.evidenceHalf)) * 0.2, 4);
  });

  it('fixed and model-free policies are left as they are; a switched policy starts from its goal', async () => {
    const pool = await seed([{ d: 0, policy: 'waste:0.3', covered: 4, idle: 4 }]);
    for (const text of ['coverage:0.8,fixed', 'recent:3', 'budget:5']) {
      const policy = parsePolicy(text);
      expect(await resolveHeldPolicy(pool, { name: 'nightly', policy }, day(1))).toEqual(policy);
    }
    expect(await resolveHeldPolicy(pool, { name: 'nightly', policy: parsePolicy('coverage:0.7') }, day(1))).toEqual({ kind: 'coverage', target: 0.7 });
  });
});
