// Cold start (README "Cold start"): with no model trained yet, a window that asks for a coverage or
// a waste selects by the recency rule that backtests best on the history, in the planner exactly
// as in `evaluate --online`.
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordLogins } from '../src/activity/user-activity.ts';
import { createPlanner } from '../src/planner/planner.ts';
import { parsePolicy } from '../src/planner/policy.ts';
import { backtestRecencyRules, coldStartRule } from '../src/propensity/cold-start.ts';
import { createDefaultScorer } from '../src/propensity/default-scorer.ts';
import { baselinePolicies, bestRecencyRule, ratio, runOfflineProtocol } from '../src/propensity/evaluate.ts';
import { loginLogFrom, type LoginLog } from '../src/propensity/login-log.ts';
import { generateActivity } from '../src/replay/generate.ts';
import { createPlannerHarness, DAY, type PlannerHarness } from './fixtures/precompute-harness.ts';

const START = Date.parse('2024-03-01T00:00:00Z');

/** The offline protocol's figures of recent:1, 3, 7, 28 over the 28 windows before `at`. */
function protocolFigures(log: LoginLog, at: number) {
  const rules = baselinePolicies().filter((b) => b.policy.kind === 'recent');
  const first = Math.floor((log.at[0] as number) / DAY) * DAY;
  const from = Math.max(first + DAY, at - 28 * DAY);
  const run = runOfflineProtocol(log, { windowMs: DAY, testFromMs: from, testToMs: at, needsModel: false }, rules.map((r) => r.policy));
  return run.tallies.map((tally, i) => ({
    k: (rules[i]?.policy as { k: number }).k,
    coverage: ratio(tally.hits, run.activeUserWindows),
    waste: ratio(tally.selected - tally.hits, tally.selected),
  }));
}

describe('cold start: the recency rule that backtests best', () => {
  it('the backtest gives the offline protocol figures of each recent:K rule', () => {
    for (const seed of [3, 5, 9]) {
      const log = loginLogFrom(generateActivity({ seed, users: 60, days: 45, start: new Date(START - 45 * DAY) }).logins);
      for (const days of [3, 20, 45]) {
        const at = START - 45 * DAY + days * DAY;
        const firstLoginMs = new Float64Array(log.userIds.length).fill(Infinity);
        for (let i = 0; i < log.at.length; i++) firstLoginMs[log.user[i] as number] = Math.min(firstLoginMs[log.user[i] as number] as number, log.at[i] as number);
        const figures = backtestRecencyRules({ user: log.user, at: log.at, firstLoginMs }, at, DAY);
        const expected = protocolFigures(log, at);
        for (const [i, f] of figures.entries()) {
          expect(f.k).toBe(expected[i]?.k);
          expect(f.coverage).toBeCloseTo(expected[i]?.coverage as number, 12);
          expect(f.waste).toBeCloseTo(expected[i]?.waste as number, 12);
        }
      }
    }
  });

  it('chooses by the goal: the least waste covering F, the most coverage wasting at most F; recent:28 without history', () => {
    const figures = [
      { k: 1, coverage: 0.5, waste: 0.4 },
      { k: 3, coverage: 0.82, waste: 0.6 },
      { k: 7, coverage: 0.9, waste: 0.7 },
      { k: 28, coverage: 0.97, waste: 0.85 },
    ];
    expect(coldStartRule(parsePolicy('coverage:0.8'), figures)).toEqual({ kind: 'recent', k: 3 });
    expect(coldStartRule(parsePolicy('waste:0.65'), figures)).toEqual({ kind: 'recent', k: 3 });
    expect(coldStartRule(parsePolicy('coverage:0.8'), figures.map((f) => ({ ...f, coverage: 0, waste: 0 })))).toEqual({ kind: 'recent', k: 28 });
  });

  describe('in the planner', () => {
    let h: PlannerHarness;
    const logins = generateActivity({ seed: 13, users: 40, days: 30, start: new Date(START - 30 * DAY) }).logins;
    beforeAll(async () => {
      h = await createPlannerHarness({ start: START });
      await recordLogins(h.pool, logins);
    }, 120_000);
    afterAll(async () => h?.close());

    it('no model yet: a coverage goal selects by the rule evaluate --online chooses, recorded as the run\'s policy and said in the log', async () => {
      const lines: Record<string, unknown>[] = [];
      const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
      const scorer = createDefaultScorer({ pool: h.pool, log });
      const planner = createPlanner({ pool: h.pool, queue: h.queue, scorer, clock: h.clock, log, itemsPerUser: 10 });
      const { window } = await h.windows.set('nightly', { cron: '0 0 * * *', policy: 'coverage:0.8', chunkSize: 100, holdoutRate: 0 });
      const planned = (await planner.planRun(window, new Date(START)))!.run;
      const expected = bestRecencyRule(loginLogFrom(logins), { windowMs: DAY, phaseMs: 0 }, START, parsePolicy('coverage:0.8'));
      expect(expected.kind).toBe('recent');
      expect(planned.policy).toBe(`recent:${(expected as { k: number }).k}`);
      expect(planned.modelVersion).toBe('recency-v1');
      // It selected exactly the users that rule selects: those with a login in the K days before.
      const k = (expected as { k: number }).k;
      const recent = new Set(logins.filter((l) => l.at.getTime() >= START - k * DAY && l.at.getTime() < START).map((l) => l.userId));
      expect(planned.selected).toBe(recent.size);
      const said = lines.find((line) => String(line.msg).startsWith('cold start'));
      expect(said).toMatchObject({ window: 'nightly', runId: planned.id, goal: 'coverage:0.8', rule: `recent:${k}` });
      // A fixed threshold is the operator's explicit choice: it stays as written.
      const { window: thresholdWindow } = await h.windows.set('threshold', { cron: '0 0 * * *', policy: 'threshold:0.2', chunkSize: 100, holdoutRate: 0 });
      const other = (await planner.planRun(thresholdWindow, new Date(START)))!.run;
      expect(other.policy).toBe('threshold:0.2');
    }, 60_000);

    it('the recency scorer given on purpose is no cold start: coverage:0.8 selects by its scores', async () => {
      const { window } = await h.windows.set('deliberate', { cron: '0 0 * * *', policy: 'coverage:0.8', chunkSize: 100, holdoutRate: 0 });
      const planned = (await h.planner.planRun(window, new Date(START)))!.run;
      expect(planned.policy).toBe('coverage:0.8');
    }, 60_000);
  });
});
