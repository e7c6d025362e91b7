import { afterEach, describe, expect, it } from 'vitest';
import { addScores, DEFAULT_FEEDBACK, emptyHistogram, nextTarget, resolveHeldPolicy, thresholdFor } from '../src/planner/feedback.ts';
import { parsePolicy } from '../src/planner/policy.ts';
import { createRecommendationStore } from '../src/sets/store.ts';
import { batchSetId, type RecommendationSet } from '../src/sets/set.ts';
import { createTestDb, type TestDb } from './helpers.ts';

const DAY = 86_400_000;
const T0 = Date.parse('2024-03-01T00:00:00Z');
const day = (d: number, hours = 0) => new Date(T0 + d * DAY + hours * 3_600_000);
const USERS = Array.from({ length: 20 }, (_v, i) => `u${String(i).padStart(2, '0')}`);
/** Each run's scores by user: 0.95, 0.9, … 0.0 (the unselected half recorded with weight 2). */
const SCORES = USERS.map((_u, i) => Math.round((0.95 - 0.05 * i) * 100) / 100);
/** Who logs in during each run: `loggedIn` of the ten users scored highest (the seed's `active`). */
const LOGGED_IN = USERS.map((_u, i) => (i < 10 ? 1 : 0));
/** The pooled histogram of `runs` finished runs with those scores and logins, as the planner reads it from predictions and logins. */
const pooled = (runs: number, loggedIn: number[] = LOGGED_IN) => {
  const histogram = emptyHistogram();
  for (let r = 0; r < runs; r++) addScores(histogram, SCORES.map((p) => Math.fround(p)), SCORES.map((_p, i) => (i < 10 ? 1 : 2)), loggedIn);
  return histogram;
};

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
  async function seed(runs: { d: number; policy: string; covered: number; idle: number; window?: string; version?: string; active?: string[]; selected?: number }[]) {
    db = await createTestDb();
    const pool = db.pool;
    for (const user of USERS) {
      await pool.query('INSERT INTO user_activity (user_id, first_login_at, last_login_at, login_count, known_since) VALUES ($1, $2, $2, 1, $2)', [user, day(-1)]);
    }
    const store = createRecommendationStore({ pool });
    for (const run of runs) {
      const inserted = await pool.query<{ id: number }>(
        `INSERT INTO batch_runs (window_name, scheduled_for, started_at, planned_at, expires_at, horizon_ms, policy, status, model_version)
         VALUES ($1, $2, $2, $2, $3, $4, $5, 'completed', $6) RETURNING id`,
        [run.window ?? 'nightly', day(run.d), day(run.d + 1), DAY, run.policy, run.version ?? 'm1'],
      );
      const runId = (inserted.rows[0] as { id: number }).id;
      if (run.selected !== undefined) await pool.query('UPDATE batch_runs SET candidates = $2, selected = $3 WHERE id = $1', [runId, USERS.length, run.selected]);
      // The run's scores: user i scored SCORES[i] (the planner records every selected user and a weighted sample of the others).
      for (const [i, userId] of USERS.entries()) {
        await pool.query('INSERT INTO predictions (run_id, user_id, p, selected, holdout, weight) VALUES ($1, $2, $3, $4, false, $5)', [runId, userId, SCORES[i], i < 10, i < 10 ? 1 : 2]);
      }
      const active = run.active ?? USERS.slice(0, 10);
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

  it('under-covered: the next run applies a higher coverage target, as one threshold on the pooled scores of the runs before', async () => {
    // Day 0 applied the goal as a share and covered 5 of 10; day 1 applied 0.83 (inside the goal ± 0.05) as a threshold and covered 6 of 10.
    const pool = await seed([
      { d: 0, policy: 'coverage:0.8', covered: 5, idle: 2 },
      { d: 1, policy: 'threshold:0.5,coverage:0.83', covered: 6, idle: 2 },
    ]);
    const window = { name: 'nightly', policy: parsePolicy('coverage:0.8') };
    // At day 2 the last finished run is day 1's: 0.83 moved by its error (0.8 − 0.6), on both runs' scores.
    const target2 = nextTarget(0.8, { applied: 0.83, measured: 0.6, evidence: 10 });
    expect(target2).toBeGreaterThan(0.83);
    expect(await resolveHeldPolicy(pool, window, day(2))).toEqual({ kind: 'threshold', p: thresholdFor('coverage', pooled(2), target2, 'outcomes'), held: { kind: 'coverage', target: target2 } });
    // Mid-day 1, day 1's horizon is not over: day 0's outcome counts, from what day 0 applied; day 0's scores are the pool.
    const target1 = nextTarget(0.8, { applied: 0.8, measured: 0.5, evidence: 10 });
    const midDay1 = await resolveHeldPolicy(pool, window, day(1, 12));
    expect(midDay1).toEqual({ kind: 'threshold', p: thresholdFor('coverage', pooled(1), target1, 'outcomes'), held: { kind: 'coverage', target: target1 } });
    // Σp of the weighted scores is 9.5 + 2·0.45·… : the threshold keeps the top users holding target1 of it.
    expect(midDay1.kind === 'threshold' && midDay1.p).toBeGreaterThan(0);
    // Before any run: the goal as a share of the window's expected logins.
    expect(await resolveHeldPolicy(pool, window, day(0))).toEqual({ kind: 'coverage', target: 0.8 });
    // Another window's runs do not count.
    expect(await resolveHeldPolicy(pool, { name: 'other', policy: parsePolicy('coverage:0.8') }, day(2))).toEqual({ kind: 'coverage', target: 0.8 });
  });

  it('the threshold comes from who logged in during the finished runs, not from the scores\' Σp', async () => {
    // The model is over-confident at the top: the ten users scored lowest log in, the ten highest do not.
    const active = USERS.slice(10);
    const pool = await seed([{ d: 0, policy: 'coverage:0.8', covered: 0, idle: 0, active }]);
    const next = await resolveHeldPolicy(pool, { name: 'nightly', policy: parsePolicy('coverage:0.8') }, day(1));
    const target = nextTarget(0.8, { applied: 0.8, measured: 0, evidence: 10 });
    const loggedIn = USERS.map((_u, i) => (i >= 10 ? 1 : 0));
    expect(next).toEqual({ kind: 'threshold', p: thresholdFor('coverage', pooled(1, loggedIn), target, 'outcomes'), held: { kind: 'coverage', target } });
    // 0.8 of their logins (weight 2 each) reaches down to user 17 (p 0.1); on Σp the threshold would stay near 0.35.
    expect(next.kind === 'threshold' && next.p).toBeLessThanOrEqual(0.1);
    expect(thresholdFor('coverage', pooled(1, loggedIn), target, 'expected')).toBeGreaterThan(0.3);
  });

  it('anti-wind-up: after a run that selected almost every candidate, an under-covered target does not rise', async () => {
    const pool = await seed([{ d: 0, policy: 'coverage:0.8', covered: 5, idle: 2, selected: 19 }]);
    const next = await resolveHeldPolicy(pool, { name: 'nightly', policy: parsePolicy('coverage:0.8') }, day(1));
    expect(next.kind === 'threshold' && next.held?.target).toBe(0.8);
    await db?.drop();
    const roomy = await seed([{ d: 0, policy: 'coverage:0.8', covered: 5, idle: 2, selected: 7 }]);
    const raised = await resolveHeldPolicy(roomy, { name: 'nightly', policy: parsePolicy('coverage:0.8') }, day(1));
    expect(raised.kind === 'threshold' && raised.held?.target).toBe(nextTarget(0.8, { applied: 0.8, measured: 0.5, evidence: 10 }));
    expect(raised.kind === 'threshold' && raised.held?.target).toBeGreaterThan(0.8);
  });

  it('waste: over the bound, the next run applies a tighter one', async () => {
    // 8 sets, 4 served: waste 0.5 against a bound of 0.3.
    const pool = await seed([{ d: 0, policy: 'waste:0.3', covered: 4, idle: 4 }]);
    const next = await resolveHeldPolicy(pool, { name: 'nightly', policy: parsePolicy('waste:0.3') }, day(1));
    const target = 0.3 - DEFAULT_FEEDBACK.gain * (8 / (8 + DEFAULT_FEEDBACK.evidenceHalf)) * 0.2;
    expect(next.kind === 'threshold' && next.held?.kind === 'waste' && next.held.target).toBeCloseTo(target, 4);
    expect(next).toEqual({ kind: 'threshold', p: thresholdFor('waste', pooled(1), nextTarget(0.3, { applied: 0.3, measured: 0.5, evidence: 8 }), 'outcomes'), held: { kind: 'waste', target: nextTarget(0.3, { applied: 0.3, measured: 0.5, evidence: 8 }) } });
  });

  it('fixed and model-free policies are left as they are; a switched policy starts from its goal; the recency stand-in\'s scores are not pooled', async () => {
    const pool = await seed([{ d: 0, policy: 'waste:0.3', covered: 4, idle: 4 }]);
    for (const text of ['coverage:0.8,fixed', 'recent:3', 'budget:5']) {
      const policy = parsePolicy(text);
      expect(await resolveHeldPolicy(pool, { name: 'nightly', policy }, day(1))).toEqual(policy);
    }
    expect(await resolveHeldPolicy(pool, { name: 'nightly', policy: parsePolicy('coverage:0.7') }, day(1))).toEqual({
      kind: 'threshold',
      p: thresholdFor('coverage', pooled(1), 0.7, 'outcomes'),
      held: { kind: 'coverage', target: 0.7 },
    });
    await db?.drop();
    const cold = await seed([{ d: 0, policy: 'recent:3', covered: 4, idle: 4, version: 'recency-v1' }]);
    expect(await resolveHeldPolicy(cold, { name: 'nightly', policy: parsePolicy('coverage:0.8') }, day(1))).toEqual({ kind: 'coverage', target: 0.8 });
  });
});
