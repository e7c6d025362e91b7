import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { appliedTarget } from '../src/planner/feedback.ts';
import { parsePolicy } from '../src/planner/policy.ts';
import { evaluateLog } from '../src/propensity/evaluate.ts';
import { loginLogFrom } from '../src/propensity/login-log.ts';
import { writeActivityCsv } from '../src/replay/csv-write.ts';
import { streamActivity } from '../src/replay/generate.ts';
import { retrainModelScorer } from '../src/replay/propensity.ts';
import { replayPolicy, type ReplayData } from '../src/replay/replay.ts';
import { loadReplayData } from '../src/replay/run.ts';
import pg from 'pg';
import { quoteIdent } from '../src/db/migrate.ts';
import { createReplayTestBed, TEST_DATABASE_URL } from './helpers.ts';

/**
 * The proof that the replay's accounting in Postgres is right: the whole system on a virtual
 * clock must measure the waste and coverage that `prewarm evaluate` computes offline for the same
 * policy over the same log (docs/design.md, "Offline evaluation protocol").
 *
 * It always runs on a log the project's generator makes (what `prewarm generate` writes), and
 * also on a slice of the public uci-messages log when that is present: a log nobody on this
 * project wrote. Point PREWARM_TEST_PUBLIC_DATA at the directory holding `uci-messages/`
 * (default ../shared/data beside the checkout; when it is missing, only that variant is left out).
 */
const PUBLIC_DATA = process.env.PREWARM_TEST_PUBLIC_DATA ?? '../shared/data';
const DAY_MS = 86_400_000;

interface LogSource {
  name: string;
  /** The replayed period [from, to): two weeks of daily windows, the history before `from`. */
  from: Date;
  to: Date;
  /** Undefined when the log is not available here. */
  load?: () => Promise<ReplayData>;
}

/** Everything before `to`, as the replay and evaluate both see it. */
function before(data: ReplayData, to: Date): ReplayData {
  const keep = (event: { at: Date }) => event.at.getTime() < to.getTime();
  return { logins: data.logins.filter(keep), interactions: data.interactions.filter(keep) };
}

// Generated: 35 days of history (what the propensity model trains on), then the two replayed weeks.
const GENERATED_START = new Date('2024-01-01T00:00:00Z');
const GENERATED_HISTORY_DAYS = 35;
const GENERATED_DAYS = GENERATED_HISTORY_DAYS + 14;
let generatedDir: string | undefined;

/** Loads once; the tests of a log share it (nothing mutates it). */
function once(load: () => Promise<ReplayData>): () => Promise<ReplayData> {
  let loaded: Promise<ReplayData> | undefined;
  return () => (loaded ??= load());
}

/** Writes the log as `prewarm generate --gzip` does, then reads it back as `prewarm replay` does. */
const generatedLog = once(async () => {
  generatedDir = mkdtempSync(join(tmpdir(), 'prewarm-agreement-'));
  const loginsPath = join(generatedDir, 'logins.csv.gz');
  const interactionsPath = join(generatedDir, 'interactions.csv.gz');
  const activity = streamActivity({ seed: 42, users: 1000, days: GENERATED_DAYS, start: GENERATED_START });
  await writeActivityCsv({ loginsPath, interactionsPath, batches: activity.days });
  return loadReplayData(loginsPath, interactionsPath);
});
afterAll(() => {
  if (generatedDir !== undefined) rmSync(generatedDir, { recursive: true, force: true });
});

const UCI = join(PUBLIC_DATA, 'uci-messages');
const SOURCES: LogSource[] = [
  {
    name: 'generated log (seed 42, 1 000 users)',
    from: new Date(GENERATED_START.getTime() + GENERATED_HISTORY_DAYS * DAY_MS),
    to: new Date(GENERATED_START.getTime() + GENERATED_DAYS * DAY_MS),
    load: generatedLog,
  },
  {
    name: 'uci-messages, public log',
    from: new Date('2004-05-20T00:00:00Z'),
    to: new Date('2004-06-03T00:00:00Z'),
    load: existsSync(join(UCI, 'logins.csv.gz')) ? once(() => loadReplayData(join(UCI, 'logins.csv.gz'), join(UCI, 'interactions.csv.gz'))) : undefined,
  },
];

// A log that is not here defines no tests (a clone without the public logs runs 0 skipped).
for (const source of SOURCES.filter((candidate) => candidate.load !== undefined)) {
  const { from, to } = source;
  const slice = async () => before(await (source.load as () => Promise<ReplayData>)(), to);

  /** The replay of the slice: the recommender trained once, the propensity model once (as evaluate). */
  const bed = createReplayTestBed({ from, to, retrainEveryMs: 14 * DAY_MS });

  async function agreement(data: ReplayData, spec: string) {
    const policy = parsePolicy(spec);
    const offline = evaluateLog(loginLogFrom(data.logins), { windowMs: DAY_MS, testFromMs: from.getTime(), testToMs: to.getTime(), policy });
    const evaluated = offline.policies.find((p) => p.name === 'model');
    const replayed = await replayPolicy(data, 'model', policy, bed.options());
    return { evaluated, replayed, offline };
  }

  describe(`replay agrees with the offline evaluation (${source.name}, two weeks)`, () => {
    afterAll(() => bed.drop());

    it('a model-free policy selects exactly the same users: identical waste and coverage', async () => {
      const { evaluated, replayed, offline } = await agreement(await slice(), 'recent:3');
      // Something to agree on: known users logged in and sets were both used and wasted.
      expect(offline.activeUserWindows).toBeGreaterThan(100);
      expect(evaluated?.wasted).toBeGreaterThan(0);
      expect(evaluated?.hits).toBeGreaterThan(0);
      expect(replayed.report.knownActiveUserWindows).toBe(offline.activeUserWindows);
      expect(replayed.report.precomputes).toBe(evaluated?.precomputes);
      expect(replayed.report.wasted).toBe(evaluated?.wasted);
      expect(replayed.report.waste).toBeCloseTo(evaluated?.waste ?? NaN, 10);
      expect(replayed.report.coverage).toBeCloseTo(evaluated?.coverage ?? NaN, 10);
    }, 300_000);

    it('the propensity model policy (open loop, trained once) agrees within one percentage point', async () => {
      const { evaluated, replayed } = await agreement(await slice(), 'coverage:0.8,fixed');
      expect(evaluated?.precomputes).toBeGreaterThan(0);
      expect(Math.abs((replayed.report.waste ?? NaN) - (evaluated?.waste ?? NaN))).toBeLessThanOrEqual(0.01);
      expect(Math.abs((replayed.report.coverage ?? NaN) - (evaluated?.coverage ?? NaN))).toBeLessThanOrEqual(0.01);
    }, 300_000);

    it('online: weekly retraining and the held coverage:0.8 agree with evaluate --online within one percentage point', async () => {
      const data = await slice();
      const policy = parsePolicy('coverage:0.8');
      const offline = evaluateLog(loginLogFrom(data.logins), { windowMs: DAY_MS, testFromMs: from.getTime(), testToMs: to.getTime(), policy, online: { retrainEveryMs: 7 * DAY_MS } });
      const evaluated = offline.policies.find((p) => p.name === 'model');
      const replayed = await bed.replay(data, policy, { retrainScorer: { every: 7 * DAY_MS, retrain: retrainModelScorer } });
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      try {
        expect(offline.online).toMatchObject({ retrains: 2, coldStartWindows: 0 });
        expect(evaluated?.precomputes).toBeGreaterThan(0);
        expect(Math.abs((replayed.report.waste ?? NaN) - (evaluated?.waste ?? NaN))).toBeLessThanOrEqual(0.01);
        expect(Math.abs((replayed.report.coverage ?? NaN) - (evaluated?.coverage ?? NaN))).toBeLessThanOrEqual(0.01);
        // The planner held the target as evaluate did: the first run applies the goal, the later
        // ones what the controller made of the runs before (recorded as each run's policy).
        const runs = await client.query<{ policy: string }>(`SELECT policy FROM ${quoteIdent(replayed.schema)}.batch_runs ORDER BY scheduled_for`);
        // Recorded as the goal (`coverage:0.8`) first, then as the threshold applied and its target (`threshold:0.0961,coverage:0.8412`).
        expect(runs.rows[0]?.policy).toBe('coverage:0.8');
        for (const row of runs.rows.slice(1)) expect(row.policy).toMatch(/^threshold:[0-9.e-]+,coverage:[0-9.]+$/);
        const targets = runs.rows.map((row) => appliedTarget(parsePolicy(row.policy), 'coverage') as number);
        expect(targets[0]).toBe(0.8);
        expect(targets.length).toBe(offline.testWindows);
        expect(Math.abs((targets.at(-1) as number) - (offline.online?.appliedTarget?.last ?? NaN))).toBeLessThanOrEqual(0.02);
        expect(Math.abs(Math.min(...targets) - (offline.online?.appliedTarget?.min ?? NaN))).toBeLessThanOrEqual(0.02);
        expect(Math.abs(Math.max(...targets) - (offline.online?.appliedTarget?.max ?? NaN))).toBeLessThanOrEqual(0.02);
      } finally {
        await client.end();
      }
    }, 300_000);

    it('retrains the propensity model on the virtual clock when asked, and plans with the new model', async () => {
      const retrainedAt: string[] = [];
      const weekLater = new Date(from.getTime() + 7 * DAY_MS).toISOString();
      const run = await bed.replay(await slice(), parsePolicy('coverage:0.8'), {
        retrainScorer: {
          every: 7 * DAY_MS,
          retrain: async (args) => {
            retrainedAt.push(args.at.toISOString());
            await retrainModelScorer(args);
          },
        },
      });
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      try {
        // Trained before `from`, then once a week on what the replay recorded before that instant.
        expect(retrainedAt).toEqual([weekLater]);
        const runs = await client.query<{ model_version: string; from_day: Date }>(
          `SELECT model_version, min(scheduled_for) AS from_day FROM ${quoteIdent(run.schema)}.batch_runs GROUP BY model_version ORDER BY from_day`,
        );
        expect(runs.rows.map((row) => row.from_day.toISOString())).toEqual([from.toISOString(), weekLater]);
      } finally {
        await client.end();
      }
    }, 300_000);
  });
}
