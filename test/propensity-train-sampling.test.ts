import { execFile } from 'node:child_process';
import { to as copyTo } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trainingPeriod } from '../src/propensity/periods.ts';
import { FEATURE_COUNT, featureRowsAt, populationContext } from '../src/propensity/features.ts';
import { loginLogFrom, type LoginLog } from '../src/propensity/login-log.ts';
import { loadLatestModel } from '../src/propensity/model-store.ts';
import { readTrainingSampleFromDb, stateSql } from '../src/propensity/state-store.ts';
import { trainOnLog, trainPropensity } from '../src/propensity/train.ts';
import { chooseTrainingUsers, forEachUserInCopy, sampleLoginLog, trainingRowsOf, userHash } from '../src/propensity/training-sample.ts';
import { walkWindows } from '../src/propensity/walk.ts';
import { VirtualClock } from '../src/clock.ts';
import { generateActivity } from '../src/replay/generate.ts';
import { windowIndex } from '../src/propensity/state.ts';
import { createTestDb, silentLog, TEST_DATABASE_URL, type TestDb } from './helpers.ts';

const DAY = 86_400_000;
const grid = { windowMs: DAY, phaseMs: 0 };
const START = Date.UTC(2024, 0, 1);
const DAYS = 63;
const END = START + DAYS * DAY;
/** About a fifth of the generated log's training rows. */
const BUDGET = 8_000;

function loginsOf(log: LoginLog, userId: string, beforeMs = Number.POSITIVE_INFINITY): number[] {
  const times: number[] = [];
  for (let i = 0; i < log.at.length; i++) if (log.userIds[log.user[i] as number] === userId && (log.at[i] as number) < beforeMs) times.push(log.at[i] as number);
  return times;
}

/** Feature rows of the given users at the window starting `startMs`, by user id. */
function featuresOf(log: LoginLog, startMs: number, options: { population?: ReturnType<typeof sampleLoginLog>['population'] } = {}): Map<string, Float64Array> {
  const rowsById = new Map<string, Float64Array>();
  walkWindows(log, grid, startMs, startMs + DAY, {
    windowStart: ({ knownCount, states }) => {
      const { rows } = featureRowsAt(states, knownCount, startMs, grid, undefined, options.population?.contextAt(startMs));
      for (let u = 0; u < knownCount; u++) rowsById.set(log.userIds[u] as string, rows.slice(u * FEATURE_COUNT, (u + 1) * FEATURE_COUNT));
    },
  });
  return rowsById;
}

describe('training on a sample of users', () => {
  // 900 users over 9 weeks: ≈ 40 000 training rows, of which BUDGET are sampled.
  const activity = generateActivity({ seed: 11, users: 900, days: DAYS, start: new Date(START) });
  const log = loginLogFrom(activity.logins);
  const period = trainingPeriod(log, grid, END, 182, 'the end of the training period');
  let db: TestDb;

  beforeAll(async () => {
    db = await createTestDb();
    await db.pool.query('INSERT INTO logins (user_id, at) SELECT * FROM unnest($1::text[], $2::timestamptz[]) ON CONFLICT DO NOTHING', [
      activity.logins.map((login) => login.userId),
      activity.logins.map((login) => login.at),
    ]);
  });
  afterAll(async () => db?.drop());

  it('keeps the users with the smallest hashes whose rows fit in the budget, the same every time', () => {
    const first = chooseTrainingUsers(log, grid, period, BUDGET);
    const again = chooseTrainingUsers(log, grid, period, BUDGET);
    expect(first.keep).toBeDefined();
    expect(Array.from(again.keep ?? [])).toEqual(Array.from(first.keep ?? []));
    const { stats } = first;
    expect(stats.rows).toBeGreaterThan(4 * BUDGET);
    expect(stats.sampledRows).toBeLessThanOrEqual(BUDGET);
    expect(stats.sampledUsers).toBeLessThan(stats.users / 3);

    // Every kept user hashes below every left-out user, and the next one would not have fitted.
    const fromWindow = windowIndex(period.fromMs, grid);
    const toWindow = windowIndex(period.toMs, grid);
    const users = log.userIds.map((userId, u) => ({
      hash: userHash(userId),
      kept: first.keep?.[u] === 1,
      rows: trainingRowsOf(windowIndex(loginsOf(log, userId)[0] as number, grid), fromWindow, toWindow),
    }));
    const maxKept = Math.max(...users.filter((user) => user.kept).map((user) => user.hash));
    const left = users.filter((user) => !user.kept).sort((a, b) => a.hash - b.hash);
    expect(left[0]!.hash).toBeGreaterThan(maxKept);
    expect(users.filter((user) => user.kept).reduce((sum, user) => sum + user.rows, 0)).toBe(stats.sampledRows);
    expect(stats.sampledRows + left[0]!.rows).toBeGreaterThan(BUDGET);
    expect(stats.hashBound).toBeCloseTo(left[0]!.hash / 2 ** 32, 12);

    // A budget that holds every row keeps everybody: training is then what it was without sampling.
    const everybody = chooseTrainingUsers(log, grid, period, stats.rows);
    expect(everybody.keep).toBeUndefined();
    expect(everybody.stats).toMatchObject({ sampledUsers: stats.users, sampledRows: stats.rows, sampledLogins: stats.logins, hashBound: 1 });
  });

  it('gives a sampled user exactly the features it has in the whole population', () => {
    const sample = sampleLoginLog(log, grid, period, BUDGET);
    expect(sample.population).toBeDefined();
    expect(sample.log.userIds.length).toBeLessThan(log.userIds.length / 3);
    for (const startMs of [period.fromMs, period.fromMs + 20 * DAY, period.toMs - DAY]) {
      // The counts rebuild the population context the states of everybody give.
      walkWindows(log, grid, startMs, startMs + DAY, {
        windowStart: ({ knownCount, states }) => {
          const fromStates = populationContext(states, knownCount, startMs, grid);
          const fromCounts = sample.population!.contextAt(startMs);
          expect(fromCounts.populationLag1).toBe(fromStates.populationLag1);
          expect(fromCounts.populationLagDay).toBe(fromStates.populationLagDay);
          expect(fromCounts.populationLagWeek).toBe(fromStates.populationLagWeek);
          expect([...fromCounts.cohorts.keys()].sort()).toEqual([...fromStates.cohorts.keys()].sort());
          for (const [cohort, totals] of fromStates.cohorts) {
            Array.from(totals).forEach((value, i) => expect(fromCounts.cohorts.get(cohort)![i]).toBeCloseTo(value, 10));
          }
        },
      });
      const whole = featuresOf(log, startMs);
      const sampled = featuresOf(sample.log, startMs, { population: sample.population });
      expect(sampled.size).toBeGreaterThan(0);
      for (const [userId, row] of sampled) {
        const expected = whole.get(userId)!;
        row.forEach((value, j) => expect(value).toBeCloseTo(expected[j] as number, 10));
      }
    }
    // Only the sampled users' logins are held, all of them before the period's end.
    expect(sample.log.at.length).toBe(sample.stats.sampledLogins);
    for (const userId of sample.log.userIds.slice(0, 20)) expect(loginsOf(sample.log, userId)).toEqual(loginsOf(log, userId, period.toMs));
  });

  it('reads from Postgres the same sample, holding only the sampled users\' logins', async () => {
    const inMemory = sampleLoginLog(log, grid, period, BUDGET);
    const fromDb = await readTrainingSampleFromDb(db.pool, { grid, period, maxRows: BUDGET });
    expect(fromDb.stats).toEqual(inMemory.stats);
    expect(fromDb.log.userIds).toEqual(inMemory.log.userIds);
    expect(Array.from(fromDb.log.user)).toEqual(Array.from(inMemory.log.user));
    expect(Array.from(fromDb.log.at)).toEqual(Array.from(inMemory.log.at));
    for (const startMs of [period.fromMs, period.toMs - DAY]) {
      expect(fromDb.population!.contextAt(startMs)).toEqual(inMemory.population!.contextAt(startMs));
    }
  });

  it('reads a binary COPY split anywhere', async () => {
    const client = await db.pool.connect();
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of client.query(copyTo(stateSql.copyLoginsByUser(period.toMs)))) chunks.push(chunk as Buffer);
    } finally {
      client.release();
    }
    const whole = Buffer.concat(chunks);
    const visits = async (size: number) => {
      const pieces: Buffer[] = [];
      for (let o = 0; o < whole.length; o += size) pieces.push(whole.subarray(o, o + size));
      const seen: string[] = [];
      await forEachUserInCopy(pieces, (id, times, count) => seen.push(`${Buffer.from(id).toString('utf8')}:${Array.from(times.subarray(0, count)).join(',')}`));
      return seen;
    };
    const expected = await visits(whole.length);
    expect(expected).toHaveLength(new Set(activity.logins.filter((login) => login.at.getTime() < period.toMs).map((login) => login.userId)).size);
    expect(await visits(7)).toEqual(expected);
    expect(await visits(1)).toEqual(expected);
    await expect(forEachUserInCopy([whole.subarray(0, whole.length - 2)], () => {})).rejects.toThrow(/trailer/);
  });

  it('train-propensity trains on the sample, deterministically, and stores what it sampled', async () => {
    const clock = new VirtualClock(new Date(END + 6 * 3_600_000));
    const stored = await trainPropensity({ pool: db.pool, log: silentLog, clock, windowMs: DAY, maxTrainingRows: BUDGET });
    const { sample } = stored.metrics;
    expect(sample).toEqual(chooseTrainingUsers(log, grid, period, BUDGET).stats);
    expect(stored.metrics.fitRows + stored.metrics.calibrationRows).toBe(sample!.sampledRows);
    expect((await loadLatestModel(db.pool))?.metrics.sample).toEqual(sample);
    // The same data give the same model, from Postgres or from memory.
    const again = await trainPropensity({ pool: db.pool, log: silentLog, clock, windowMs: DAY, maxTrainingRows: BUDGET });
    expect(again.model).toEqual(stored.model);
    const inMemory = trainOnLog(log, { windowMs: DAY, trainToMs: END, maxTrainingRows: BUDGET });
    inMemory.model.logistic.weights.forEach((weight, j) => expect(weight).toBeCloseTo(stored.model.logistic.weights[j] as number, 9));
    expect(inMemory.metrics.sample).toEqual(sample);
    // A sample of a fifth of the users still ranks the held-out week well.
    const full = trainOnLog(log, { windowMs: DAY, trainToMs: END });
    expect(full.metrics.sample).toMatchObject({ sampledUsers: sample!.users, sampledRows: sample!.rows });
    expect(stored.metrics.calibrationRocAuc).toBeGreaterThan(full.metrics.calibrationRocAuc - 0.03);
  });

  it('prewarm train-propensity --max-training-rows samples and says so', async () => {
    const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        'node',
        ['src/cli/bin.mjs', 'train-propensity', '--max-training-rows', String(BUDGET)],
        { env: { ...process.env, DATABASE_URL: TEST_DATABASE_URL, PREWARM_DB_SCHEMA: db.schema, PREWARM_LOG_LEVEL: 'silent' } },
        (error, stdout, stderr) => resolve({ code: error ? Number((error as NodeJS.ErrnoException & { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const { stats } = chooseTrainingUsers(log, grid, period, BUDGET);
    expect(result.stdout).toContain(`sampled ${stats.sampledUsers.toLocaleString('en-US')} of ${stats.users.toLocaleString('en-US')} users`);
    const bad = await new Promise<number>((resolve) => {
      execFile('node', ['src/cli/bin.mjs', 'train-propensity', '--max-training-rows', '0'], { env: { ...process.env, DATABASE_URL: TEST_DATABASE_URL, PREWARM_DB_SCHEMA: db.schema } }, (error) =>
        resolve(error ? Number((error as NodeJS.ErrnoException & { code?: number }).code ?? 1) : 0),
      );
    });
    expect(bad).toBe(2);
  });
});
