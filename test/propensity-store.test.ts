import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VirtualClock } from '../src/clock.ts';
import { FEATURE_COUNT, featureRowsAt } from '../src/propensity/features.ts';
import { readLoginLog, type LoginLog } from '../src/propensity/login-log.ts';
import { modelProbability } from '../src/propensity/model.ts';
import { createModelScorer } from '../src/propensity/model-scorer.ts';
import { loadLatestModel, loadModel, newModelVersion, saveModel, type StoredPropensityModel } from '../src/propensity/model-store.ts';
import { applyLoginsToState, gridKey, loadGrid, rebuildGrid, syncGrid } from '../src/propensity/state-store.ts';
import { retrainIfDue, trainOnLog, trainPropensity } from '../src/propensity/train.ts';
import { walkWindows } from '../src/propensity/walk.ts';
import { createTestDb, silentLog, type TestDb } from './helpers.ts';

const DAY = 86_400_000;
const FIXTURE = 'test/fixtures/propensity-logins.csv';
const grid = { windowMs: DAY, phaseMs: 0 };

async function insertLogins(db: TestDb, rows: { userId: string; at: Date }[]): Promise<void> {
  await db.pool.query('INSERT INTO logins (user_id, at) SELECT * FROM unnest($1::text[], $2::timestamptz[]) ON CONFLICT DO NOTHING', [
    rows.map((r) => r.userId),
    rows.map((r) => r.at),
  ]);
}

function rowsOf(log: LoginLog, filter: (atMs: number) => boolean = () => true): { userId: string; at: Date }[] {
  const rows: { userId: string; at: Date }[] = [];
  for (let i = 0; i < log.at.length; i++) {
    const at = log.at[i] as number;
    if (filter(at)) rows.push({ userId: log.userIds[log.user[i] as number] as string, at: new Date(at) });
  }
  return rows;
}

/** Calibrated probabilities at window `tMs`, computed the way `evaluate` computes them. */
function offlineScores(log: LoginLog, stored: StoredPropensityModel, tMs: number): Map<string, number> {
  const scores = new Map<string, number>();
  walkWindows(log, grid, tMs, tMs + DAY, {
    windowStart: ({ knownCount, states, startMs }) => {
      const { rows } = featureRowsAt(states, knownCount, startMs, grid);
      for (let u = 0; u < knownCount; u++) scores.set(log.userIds[u] as string, modelProbability(stored.model, rows, u * FEATURE_COUNT));
    },
  });
  return scores;
}

describe('propensity model store and scorer (Postgres)', () => {
  let db: TestDb;
  let log: LoginLog;
  let stored: StoredPropensityModel;

  beforeAll(async () => {
    db = await createTestDb();
    ({ log } = await readLoginLog(FIXTURE));
    const trained = trainOnLog(log, { windowMs: DAY, trainToMs: Date.UTC(2024, 1, 15) });
    stored = {
      version: newModelVersion(new Date('2024-02-15T00:00:00Z')),
      trainedAt: new Date('2024-02-15T00:00:00Z'),
      trainFrom: new Date(trained.trainFromMs),
      trainTo: new Date(trained.trainToMs),
      model: trained.model,
      metrics: trained.metrics,
    };
  });
  afterAll(async () => db?.drop());

  it('round-trips a model with its version, period and metrics', async () => {
    await saveModel(db.pool, stored);
    const latest = await loadLatestModel(db.pool);
    expect(latest).toEqual(stored);
    expect(await loadModel(db.pool, stored.version)).toEqual(stored);
    expect(await loadModel(db.pool, 'no-such-version')).toBeUndefined();
    expect(latest?.metrics.reliability).toHaveLength(10);
    const view = await db.pool.query('SELECT decile, mean_predicted, observed_rate FROM propensity_model_reliability WHERE version = $1 ORDER BY decile', [stored.version]);
    expect(view.rows).toHaveLength(10);
    expect(view.rows[9].mean_predicted).toBeCloseTo(stored.metrics.reliability[9]!.meanPredicted, 12);
  });

  it('scores every known user exactly as the offline evaluation does, at a past window too', async () => {
    await insertLogins(db, rowsOf(log));
    const scorer = await createModelScorer({ pool: db.pool, log: silentLog });
    expect(scorer.version).toBe(stored.version);
    // A window in the middle of the log: most states have seen later logins and are rewound.
    const t = Date.UTC(2024, 1, 20);
    const candidates = await scorer.scoreKnownUsers(new Date(t), DAY);
    const offline = offlineScores(log, stored, t);
    expect(candidates.length).toBe(offline.size);
    for (const candidate of candidates) expect(candidate.p).toBeCloseTo(offline.get(candidate.userId) as number, 10);
    // And the latest login before the window, for recent:K.
    const someone = candidates[0]!;
    const before = rowsOf(log, (at) => at < t).filter((r) => r.userId === someone.userId);
    expect(someone.lastLoginAt).toBe(before.at(-1)?.at.getTime());
  });

  it('keeps persisted states equal to a rebuild when logins are applied incrementally, twice or late', async () => {
    const more = [
      { userId: 'user-01', at: new Date('2024-03-12T08:00:00Z') },
      { userId: 'user-01', at: new Date('2024-03-13T09:00:00Z') },
      { userId: 'newcomer', at: new Date('2024-03-13T10:00:00Z') },
    ];
    await insertLogins(db, more);
    await applyLoginsToState(db.pool, more);
    await applyLoginsToState(db.pool, more); // a retried flush counts nothing twice
    const incremental = await loadGrid(db.pool, grid);
    await rebuildGrid(db.pool, grid);
    const rebuilt = await loadGrid(db.pool, grid);
    expect(incremental.userIds).toEqual(rebuilt.userIds);
    expect(Array.from(incremental.states)).toEqual(Array.from(rebuilt.states));
  });

  it('catches up with logins recorded without applyLoginsToState', async () => {
    const unseen = [{ userId: 'user-02', at: new Date('2024-03-14T11:00:00Z') }];
    await insertLogins(db, unseen);
    const { folded, rebuilt } = await syncGrid(db.pool, grid);
    expect(rebuilt).toBe(false);
    expect(folded).toBe(1);
    const caughtUp = await loadGrid(db.pool, grid);
    await rebuildGrid(db.pool, grid);
    expect(Array.from(caughtUp.states)).toEqual(Array.from((await loadGrid(db.pool, grid)).states));
    const grids = await db.pool.query('SELECT grid, observed_through FROM propensity_state_grids');
    expect(grids.rows).toEqual([{ grid: gridKey(grid), observed_through: new Date('2024-03-14T11:00:00Z') }]);
  });

  it('train-propensity trains on the logins table, stores the newest version, and retrains only when due', async () => {
    const clock = new VirtualClock(new Date('2024-03-15T06:00:00Z'));
    const trained = await trainPropensity({ pool: db.pool, log: silentLog, clock, windowMs: DAY });
    expect(trained.trainTo.toISOString()).toBe('2024-03-15T00:00:00.000Z');
    expect((await loadLatestModel(db.pool))?.version).toBe(trained.version);
    expect(await retrainIfDue({ pool: db.pool, log: silentLog, clock, windowMs: DAY, maxAgeMs: DAY })).toBeUndefined();
    clock.advance(2 * DAY);
    const again = await retrainIfDue({ pool: db.pool, log: silentLog, clock, windowMs: DAY, maxAgeMs: DAY });
    expect(again?.version).not.toBe(trained.version);
    // The scorer follows the newest model.
    const scorer = await createModelScorer({ pool: db.pool, log: silentLog });
    expect(scorer.version).toBe(again?.version);
  });
});

describe('propensity state on an empty logins table', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await createTestDb();
  });
  afterAll(async () => db?.drop());

  it('builds an empty grid, then catches up with the first logins', async () => {
    expect(await syncGrid(db.pool, grid)).toEqual({ rebuilt: true, folded: 0 });
    expect((await loadGrid(db.pool, grid)).userIds).toEqual([]);
    await insertLogins(db, [
      { userId: 'first', at: new Date('2024-05-01T10:00:00Z') },
      { userId: 'first', at: new Date('2024-05-02T10:00:00Z') },
    ]);
    expect(await syncGrid(db.pool, grid)).toEqual({ rebuilt: false, folded: 2 });
    // Nothing new: the overlap re-reads the same logins and folds none of them again.
    expect(await syncGrid(db.pool, grid)).toEqual({ rebuilt: false, folded: 0 });
    expect((await loadGrid(db.pool, grid)).userIds).toEqual(['first']);
  });

  it('the scorer says how to get a model when there is none', async () => {
    await expect(createModelScorer({ pool: db.pool, log: silentLog })).rejects.toThrow(/train-propensity/);
  });
});
