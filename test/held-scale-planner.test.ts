// The planner's side of the scale maps: the stored models score the same known users (states in
// Postgres), and the pooled runs of an earlier model are read on the serving model's scale.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordLogins } from '../src/activity/user-activity.ts';
import { VirtualClock } from '../src/clock.ts';
import { binOf, DEFAULT_FEEDBACK, resolveHeldPolicy } from '../src/planner/feedback.ts';
import { parsePolicy } from '../src/planner/policy.ts';
import { saveModel, type StoredPropensityModel } from '../src/propensity/model-store.ts';
import { createScaleMapper } from '../src/propensity/scale-map.ts';
import { trainPropensity } from '../src/propensity/train.ts';
import { generateActivity } from '../src/replay/generate.ts';
import { createTestDb, silentLog, type TestDb } from './helpers.ts';

const DAY = 86_400_000;
const START = Date.parse('2024-03-01T00:00:00Z');
const logit = (p: number) => Math.log(p / (1 - p));

describe('the pooled runs of an earlier model, on the serving model\'s scale', () => {
  let db: TestDb;
  let earlier: StoredPropensityModel;
  let serving: StoredPropensityModel;

  beforeAll(async () => {
    db = await createTestDb();
    const { logins } = generateActivity({ seed: 5, users: 600, days: 41, start: new Date(START - 40 * DAY) });
    await recordLogins(db.pool, logins);
    earlier = await trainPropensity({ pool: db.pool, log: silentLog, clock: new VirtualClock(START - DAY), windowMs: DAY });
    // A retraining that moved the calibration by one log-odds: the same ranking, another scale.
    const { calibration } = earlier.model;
    serving = { ...earlier, version: `${earlier.version}-b`, trainedAt: new Date(START), model: { ...earlier.model, calibration: { ...calibration, b: calibration.b + 1 } } };
    await saveModel(db.pool, serving);
  }, 120_000);
  afterAll(async () => db?.drop());

  it('maps the earlier model\'s scores one log-odds up; the serving model\'s runs need no map', async () => {
    const maps = await createScaleMapper({ pool: db.pool, log: silentLog })([earlier.version, serving.version, 'not-a-model'], new Date(START), DAY);
    expect([...(maps?.keys() ?? [])]).toEqual([earlier.version]);
    const map = maps?.get(earlier.version) as Int32Array;
    for (const p of [0.02, 0.1, 0.3, 0.6]) expect(Math.abs((map[binOf(p)] as number) - binOf(1 / (1 + Math.exp(-(logit(p) + 1)))))).toBeLessThanOrEqual(2);
  });

  it('estimates each map on the days its pooled runs started (states rewound to them), not at the run\'s start', async () => {
    const mapper = createScaleMapper({ pool: db.pool, log: silentLog });
    // A week back: the same one log-odds (the calibration moved, whatever the day).
    const weekBack = await mapper([earlier.version], new Date(START), DAY, new Map([[earlier.version, [new Date(START - 7 * DAY)]]]));
    const map = weekBack?.get(earlier.version) as Int32Array;
    for (const p of [0.02, 0.1, 0.3]) expect(Math.abs((map[binOf(p)] as number) - binOf(1 / (1 + Math.exp(-(logit(p) + 1)))))).toBeLessThanOrEqual(2);
    // A day before any user was known: no users to estimate it on, so the runs pool as recorded.
    expect(await mapper([earlier.version], new Date(START), DAY, new Map([[earlier.version, [new Date(START - 60 * DAY)]]]))).toBeUndefined();
  });

  it('resolveHeldPolicy: a pool scored by the earlier model gives a threshold on the serving model\'s scale', async () => {
    // One finished run scored by the earlier model: 200 recorded users, the top half logged in.
    const run = await db.pool.query<{ id: number }>(
      `INSERT INTO batch_runs (window_name, scheduled_for, started_at, planned_at, expires_at, horizon_ms, policy, status, model_version)
       VALUES ('nightly', $1, $1, $1, $2, $3, 'coverage:0.8', 'completed', $4) RETURNING id`,
      [new Date(START - DAY), new Date(START), DAY, earlier.version],
    );
    const runId = (run.rows[0] as { id: number }).id;
    for (let i = 0; i < 200; i++) {
      const userId = `pool-${i}`;
      await db.pool.query('INSERT INTO predictions (run_id, user_id, p, selected, holdout, weight) VALUES ($1, $2, $3, false, false, 1)', [runId, userId, 0.9 - i * 0.004]);
      if (i < 100) await db.pool.query('INSERT INTO logins (user_id, at) VALUES ($1, $2)', [userId, new Date(START - DAY / 2)]);
    }
    const window = { name: 'nightly', policy: parsePolicy('coverage:0.8'), horizonMs: DAY };
    const mapped = await resolveHeldPolicy(db.pool, window, new Date(START), DEFAULT_FEEDBACK, createScaleMapper({ pool: db.pool, log: silentLog }));
    const recorded = await resolveHeldPolicy(db.pool, window, new Date(START), DEFAULT_FEEDBACK);
    expect(mapped.kind).toBe('threshold');
    expect(recorded.kind).toBe('threshold');
    const p = mapped.kind === 'threshold' ? mapped.p : NaN;
    const q = recorded.kind === 'threshold' ? recorded.p : NaN;
    // The same users' logins, one log-odds up (within the bins' rounding).
    expect(logit(p) - logit(q)).toBeGreaterThan(0.95);
    expect(logit(p) - logit(q)).toBeLessThan(1.05);
    // Off, the pool is read as recorded.
    expect(await resolveHeldPolicy(db.pool, window, new Date(START), { ...DEFAULT_FEEDBACK, rescale: false }, createScaleMapper({ pool: db.pool, log: silentLog }))).toEqual(recorded);
  });
});
