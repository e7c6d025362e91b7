// Live model quality, drift and champion/challenger on a synthetic log whose behaviour shifts:
// before day 30 each user logs in every other day (active yesterday → not today), from day 30 in
// blocks of three days on, three off (active yesterday → likely today). A model trained before
// the shift ranks the new regime badly; one trained after it ranks it well.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordLogins, type LoginInput } from '../src/activity/user-activity.ts';
import { VirtualClock } from '../src/clock.ts';
import type { Pool } from '../src/db/pool.ts';
import { markChallenger } from '../src/propensity/champion.ts';
import { createModelScorer } from '../src/propensity/model-scorer.ts';
import { latestModelVersion, listModels } from '../src/propensity/model-store.ts';
import { loadRunQuality } from '../src/propensity/quality.ts';
import { createModelMonitor } from '../src/propensity/quality-monitor.ts';
import { startRetrainSchedule } from '../src/propensity/retrain-schedule.ts';
import { trainPropensity } from '../src/propensity/train.ts';
import { createTestDb, silentLog, type TestDb } from './helpers.ts';

const DAY = 86_400_000;
const START = Date.parse('2024-01-01T00:00:00Z');
const SHIFT_DAY = 30;
const USERS = 600;
const MARGIN = 0.1;

function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 4_294_967_296;
  };
}

function shiftedLog(days: number): LoginInput[] {
  const random = rng(7);
  const logins: LoginInput[] = [];
  for (let u = 0; u < USERS; u++) {
    const parity = u % 2;
    const keen = 0.55 + 0.4 * random();
    for (let day = 0; day < days; day++) {
      const scheduled = day < SHIFT_DAY ? day % 2 === parity : Math.floor(day / 3) % 2 === parity;
      if ((scheduled && random() < keen) || random() < 0.03) {
        logins.push({ userId: `u${u}`, at: new Date(START + day * DAY + Math.floor(random() * DAY)) });
      }
    }
  }
  return logins;
}

const at = (day: number) => new Date(START + day * DAY);

/**
 * What the planner writes for a run of the daily window at `day`, scored by the serving model:
 * the top users by p until Σp reaches 80% of all, 5% of the others as holdout, and a one-in-three
 * sample of the rest with weight 3.
 */
async function planRun(pool: Pool, day: number): Promise<{ runId: number; version: string }> {
  const scorer = await createModelScorer({ pool, log: silentLog });
  const candidates = await scorer.scoreKnownUsers(at(day), DAY);
  candidates.sort((a, b) => b.p - a.p);
  const total = candidates.reduce((sum, c) => sum + c.p, 0);
  const random = rng(1000 + day);
  const userIds: string[] = [];
  const p: number[] = [];
  const selected: boolean[] = [];
  const holdout: boolean[] = [];
  const weight: number[] = [];
  let mass = 0;
  for (const candidate of candidates) {
    const isSelected = mass < 0.8 * total;
    mass += candidate.p;
    const isHoldout = !isSelected && random() < 0.05;
    if (!isSelected && !isHoldout && random() >= 1 / 3) continue;
    userIds.push(candidate.userId);
    p.push(candidate.p);
    selected.push(isSelected);
    holdout.push(isHoldout);
    weight.push(isSelected || isHoldout ? 1 : 3);
  }
  const run = await pool.query<{ id: string }>(
    `INSERT INTO batch_runs (window_name, scheduled_for, started_at, expires_at, model_version, policy, status, candidates, selected)
     VALUES ('daily', $1, $1, $2, $3, 'coverage:0.8', 'completed', $4, $5) RETURNING id`,
    [at(day), at(day + 1), scorer.version, candidates.length, selected.filter(Boolean).length],
  );
  const runId = Number(run.rows[0]?.id);
  await pool.query(
    `INSERT INTO predictions (run_id, user_id, p, selected, holdout, weight)
     SELECT $1, * FROM unnest($2::text[], $3::real[], $4::bool[], $5::bool[], $6::real[])`,
    [runId, userIds, p, selected, holdout, weight],
  );
  return { runId, version: scorer.version };
}

describe('live model quality, drift and champion/challenger on a log with a shift', () => {
  let db: TestDb;
  let champion: string;
  let challenger: string;

  beforeAll(async () => {
    db = await createTestDb();
    await recordLogins(db.pool, shiftedLog(70));
  }, 60_000);
  afterAll(async () => db?.drop());

  it('records weighted live quality for ended runs, without drift while the behaviour holds', async () => {
    const trained = await trainPropensity({ pool: db.pool, log: silentLog, clock: new VirtualClock(at(SHIFT_DAY - 2)), windowMs: DAY, trainWindows: 21 });
    champion = trained.version;
    const runs = [await planRun(db.pool, SHIFT_DAY - 2), await planRun(db.pool, SHIFT_DAY - 1)];
    expect(runs.every((run) => run.version === champion)).toBe(true);
    const monitor = createModelMonitor({ pool: db.pool, log: silentLog, clock: new VirtualClock(at(SHIFT_DAY)), driftMargin: MARGIN });
    const pass = await monitor.check();
    expect(pass).toMatchObject({ evaluated: 2, retrainNow: false, serving: champion });
    for (const { runId } of runs) {
      const quality = await loadRunQuality(db.pool, runId);
      expect(quality).toBeDefined();
      // The sampled rows stand for every scored user.
      expect(quality!.scoredUsers).toBeGreaterThan(0.8 * USERS);
      expect(quality!.scoredUsers).toBeLessThan(1.2 * USERS);
      expect(quality!.averagePrecision).toBeGreaterThan(0.6);
      expect(quality!.rocAuc).toBeGreaterThan(0.7);
      expect(quality!.reliability).toHaveLength(10);
      expect(quality!.holdoutUsers).toBeGreaterThan(0);
      expect(quality!.trainedAveragePrecision).toBe(trained.metrics.calibrationAveragePrecision);
      expect(quality!.drifted).toBe(false);
    }
    // A second pass has nothing new to evaluate.
    expect((await monitor.check()).evaluated).toBe(0);
  }, 120_000);

  it('flags drift after the shift and retrains early, the new model as a challenger', async () => {
    const runs = [await planRun(db.pool, 56), await planRun(db.pool, 57)];
    const clock = new VirtualClock(at(58));
    const monitor = createModelMonitor({ pool: db.pool, log: silentLog, clock, driftMargin: MARGIN });
    // A retraining period far longer than the test: only drift can make this check train.
    const stop = startRetrainSchedule({ pool: db.pool, log: silentLog, clock, windowMs: DAY, maxAgeMs: 365 * DAY, checkEveryMs: 3_600_000, monitor });
    await stop();
    for (const { runId } of runs) expect((await loadRunQuality(db.pool, runId))?.drifted).toBe(true);
    const models = await listModels(db.pool);
    expect(models).toHaveLength(2);
    challenger = models[0]!.version;
    expect(models[0]).toMatchObject({ role: 'challenger', serving: false });
    expect(models[1]).toMatchObject({ version: champion, role: null, serving: true });
    // The same drift does not retrain again.
    expect((await monitor.check()).retrainNow).toBe(false);
  }, 120_000);

  it('scores the challenger in shadow on the next runs and promotes it on the outcomes', async () => {
    const runs = [await planRun(db.pool, 58), await planRun(db.pool, 59), await planRun(db.pool, 60)];
    expect(runs.every((run) => run.version === champion)).toBe(true);
    const monitor = createModelMonitor({ pool: db.pool, log: silentLog, clock: new VirtualClock(at(61)), driftMargin: MARGIN });
    const pass = await monitor.check();
    expect(pass.shadowed).toBe(3);
    expect(pass.decision).toEqual({ version: challenger, role: 'champion' });
    // Every recorded user was compared; the shadow rows go once decided (the figures stay).
    const recorded = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM predictions WHERE run_id = ANY($1)', [runs.map((run) => run.runId)]);
    const shadow = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM challenger_predictions WHERE version = $1', [challenger]);
    expect(Number(shadow.rows[0]?.n)).toBe(0);
    const [promoted] = await listModels(db.pool);
    expect(promoted).toMatchObject({ version: challenger, role: 'champion', serving: true, decidedBy: 'scheduler' });
    const figures = promoted!.figures as { runs: number; champion: { averagePrecision: number; calibrationError: number }; challenger: { averagePrecision: number; calibrationError: number } };
    expect(figures.runs).toBe(3);
    expect((figures as unknown as { rows: number }).rows).toBe(Number(recorded.rows[0]?.n));
    expect(figures.challenger.averagePrecision).toBeGreaterThan(figures.champion.averagePrecision);
    expect(figures.challenger.calibrationError).toBeLessThanOrEqual(figures.champion.calibrationError);
    expect((await latestModelVersion(db.pool))?.version).toBe(challenger);
    expect((await planRun(db.pool, 61)).version).toBe(challenger);
  }, 120_000);

  it('rejects a challenger that is worse on the same users and keeps its figures', async () => {
    // A model of the old behaviour, made the challenger of the one that serves now.
    const old = await trainPropensity({ pool: db.pool, log: silentLog, clock: new VirtualClock(at(SHIFT_DAY - 2)), windowMs: DAY, trainWindows: 21 });
    const clock = new VirtualClock(at(62));
    await markChallenger(db.pool, old.version, clock, silentLog);
    await planRun(db.pool, 62);
    await planRun(db.pool, 63);
    clock.set(at(64).getTime());
    const pass = await createModelMonitor({ pool: db.pool, log: silentLog, clock, driftMargin: MARGIN }).check();
    expect(pass.decision).toEqual({ version: old.version, role: 'rejected' });
    const rejected = (await listModels(db.pool)).find((model) => model.version === old.version);
    expect(rejected).toMatchObject({ role: 'rejected', serving: false });
    const figures = rejected!.figures as { champion: { averagePrecision: number }; challenger: { averagePrecision: number }; champions: string[] };
    expect(figures.champions).toEqual([challenger]);
    expect(figures.challenger.averagePrecision).toBeLessThan(figures.champion.averagePrecision);
    expect((await latestModelVersion(db.pool))?.version).toBe(challenger);
  }, 120_000);
});
