import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../src/policy.ts';
import { evaluateLog } from '../src/propensity/evaluate.ts';
import { loginLogFrom } from '../src/propensity/login-log.ts';
import { prepareModelScorer, retrainModelScorer } from '../src/replay/propensity.ts';
import { replayPolicy, type ReplayData, type ReplayOptions } from '../src/replay/replay.ts';
import { loadReplayData } from '../src/replay/run.ts';
import pg from 'pg';
import { quoteIdent } from '../src/db/migrate.ts';
import { silentLog, TEST_DATABASE_URL, TEST_REDIS_URL } from './helpers.ts';

// A slice of a real log nobody on this project wrote (../shared/data/README.md).
const DATA = '../shared/data/uci-messages';
const FROM = new Date('2004-05-20T00:00:00Z');
const TO = new Date('2004-06-03T00:00:00Z');

async function slice(): Promise<ReplayData> {
  const data = await loadReplayData(`${DATA}/logins.csv.gz`, `${DATA}/interactions.csv.gz`);
  const before = (event: { at: Date }) => event.at.getTime() < TO.getTime();
  return { logins: data.logins.filter(before), interactions: data.interactions.filter(before) };
}

/** The replay of the slice: the recommender trained once, the propensity model once (as evaluate). */
const SLICE_REPLAY: ReplayOptions = {
  databaseUrl: TEST_DATABASE_URL,
  redisUrl: TEST_REDIS_URL,
  log: silentLog,
  from: FROM,
  to: TO,
  window: '1d',
  prepareScorer: prepareModelScorer,
  retrainEveryMs: 14 * 86_400_000,
};

async function agreement(data: ReplayData, spec: string) {
  const policy = parsePolicy(spec);
  const offline = evaluateLog(loginLogFrom(data.logins), { windowMs: 86_400_000, testFromMs: FROM.getTime(), testToMs: TO.getTime(), policy });
  const evaluated = offline.policies.find((p) => p.name === 'model');
  const replayed = await replayPolicy(data, 'model', policy, SLICE_REPLAY);
  return { evaluated, replayed, offline };
}

describe.skipIf(!existsSync(`${DATA}/logins.csv.gz`))('replay agrees with the offline evaluation (uci-messages, two weeks)', () => {
  it('a model-free policy selects exactly the same users: identical waste and coverage', async () => {
    const { evaluated, replayed, offline } = await agreement(await slice(), 'recent:3');
    expect(replayed.report.knownActiveUserWindows).toBe(offline.activeUserWindows);
    expect(replayed.report.precomputes).toBe(evaluated?.precomputes);
    expect(replayed.report.wasted).toBe(evaluated?.wasted);
    expect(replayed.report.waste).toBeCloseTo(evaluated?.waste ?? NaN, 10);
    expect(replayed.report.coverage).toBeCloseTo(evaluated?.coverage ?? NaN, 10);
  }, 300_000);

  it('the propensity model policy agrees within one percentage point', async () => {
    const { evaluated, replayed } = await agreement(await slice(), 'coverage:0.8');
    expect(Math.abs((replayed.report.waste ?? NaN) - (evaluated?.waste ?? NaN))).toBeLessThanOrEqual(0.01);
    expect(Math.abs((replayed.report.coverage ?? NaN) - (evaluated?.coverage ?? NaN))).toBeLessThanOrEqual(0.01);
  }, 300_000);

  it('retrains the propensity model on the virtual clock when asked, and plans with the new model', async () => {
    const retrainedAt: string[] = [];
    const run = await replayPolicy(await slice(), 'model', parsePolicy('coverage:0.8'), {
      ...SLICE_REPLAY,
      retrainScorer: {
        every: 7 * 86_400_000,
        retrain: async (args) => {
          retrainedAt.push(args.at.toISOString());
          await retrainModelScorer(args);
        },
      },
      keepSchemas: true,
    });
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    try {
      // Trained before FROM, then once a week on what the replay recorded before that instant.
      expect(retrainedAt).toEqual(['2004-05-27T00:00:00.000Z']);
      const runs = await client.query<{ model_version: string; from_day: Date }>(
        `SELECT model_version, min(scheduled_for) AS from_day FROM ${quoteIdent(run.schema)}.batch_runs GROUP BY model_version ORDER BY from_day`,
      );
      expect(runs.rows.map((row) => row.from_day.toISOString())).toEqual([FROM.toISOString(), '2004-05-27T00:00:00.000Z']);
    } finally {
      await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(run.schema)} CASCADE`);
      await client.end();
    }
  }, 300_000);
});
