import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../src/planner/policy.ts';
import { evaluateLog, runOfflineProtocol, type EvaluateOptions, type PolicyTally } from '../src/propensity/evaluate.ts';
import { pointAtCoverage, thresholdCurve } from '../src/propensity/metrics.ts';
import { loginLogFrom, type LoginLog } from '../src/propensity/login-log.ts';
import { chooseRule, COLD_START } from '../src/propensity/online.ts';
import { generateActivity } from '../src/replay/generate.ts';

const DAY = 86_400_000;
const START = Date.parse('2024-01-01T00:00:00Z');

function generated(users: number, days: number, seed = 7): LoginLog {
  return loginLogFrom(generateActivity({ seed, users, days, start: new Date(START) }).logins);
}

const byName = (report: ReturnType<typeof evaluateLog>, name: string) => report.policies.find((p) => p.name === name);

describe('evaluate --online: retrained on the clock, targets held, cold start', () => {
  const log = generated(600, 63);
  const period: EvaluateOptions = { windowMs: DAY, testFromMs: START + 35 * DAY };

  it('reports the offline fields, retrains weekly, and holds coverage:0.8 near 80% (closer than open loop)', () => {
    const offline = evaluateLog(log, { ...period, policy: parsePolicy('coverage:0.8') });
    const online = evaluateLog(log, { ...period, policy: parsePolicy('coverage:0.8'), online: { retrainEveryMs: 7 * DAY } });
    const fixed = evaluateLog(log, { ...period, policy: parsePolicy('coverage:0.8,fixed'), online: { retrainEveryMs: 7 * DAY } });
    // Same fields as today, plus `online`.
    expect(Object.keys(online).filter((key) => key !== 'online').sort()).toEqual(Object.keys(offline).sort());
    expect(Object.keys(byName(online, 'model') ?? {}).sort()).toEqual(Object.keys(byName(offline, 'model') ?? {}).sort());
    expect(online.online).toMatchObject({ retrainEvery: '1w', retrains: Math.ceil(online.testWindows / 7), coldStartWindows: 0 });
    // The baselines need no model and hold no target: identical online and offline.
    for (const name of ['all', 'recent-1', 'recent-3', 'recent-7', 'recent-28', 'oracle']) expect(byName(online, name)).toEqual(byName(offline, name));
    const held = byName(online, 'model')?.coverage ?? NaN;
    const open = byName(fixed, 'model')?.coverage ?? NaN;
    expect(Math.abs(held - 0.8)).toBeLessThanOrEqual(0.015);
    expect(Math.abs(held - 0.8)).toBeLessThanOrEqual(Math.abs(open - 0.8) + 0.005);
    // `,fixed` applies the goal unchanged; the held target moved.
    expect(fixed.online?.appliedTarget).toMatchObject({ min: 0.8, max: 0.8 });
    expect(online.online?.appliedTarget?.first).toBe(0.8);
    // Held, the target is applied as one threshold over the windows: its waste is that of the
    // model's own curve (one global threshold over all test pairs) at the coverage it reached.
    expect(online.online?.appliedThreshold).toBeDefined();
    expect(fixed.online?.appliedThreshold).toBeUndefined();
    const run = runOfflineProtocol(log, { ...period, needsModel: true, online: { retrainEveryMs: 7 * DAY } }, [parsePolicy('coverage:0.8')]);
    const tally = run.tallies[0] as PolicyTally;
    const coverage = tally.hits / run.activeUserWindows;
    expect(coverage).toBeCloseTo(held, 12);
    const own = pointAtCoverage(thresholdCurve(run.scores, run.labels), coverage);
    expect(1 - tally.hits / tally.selected).toBeLessThanOrEqual((own?.waste ?? NaN) + 0.01);
  }, 300_000);

  it('a model-free policy selects online exactly as offline', () => {
    const offline = evaluateLog(log, { ...period, policy: parsePolicy('recent:3') });
    const online = evaluateLog(log, { ...period, policy: parsePolicy('recent:3'), online: { retrainEveryMs: DAY } });
    expect(byName(online, 'model')).toEqual(byName(offline, 'model'));
    expect(online.online?.retrains).toBe(0);
  });

  it(`cold start: under ${COLD_START.minKnownUsers} known users no model is fitted; the best recency rule on the history selects`, () => {
    const small = generated(30, 40, 3);
    const report = evaluateLog(small, { windowMs: DAY, testFromMs: START + 20 * DAY, policy: parsePolicy('coverage:0.8'), online: { retrainEveryMs: 7 * DAY } });
    expect(report.online?.retrains).toBe(0);
    expect(report.online?.coldStartWindows).toBe(report.testWindows);
    expect(report.online?.coldStartReason).toMatch(/known users/);
    expect(report.model).toBeUndefined();
    // Every window used one of the rules; with a single rule the model row is that rule's row.
    const rules = report.online?.coldStartRules ?? [];
    expect(rules.length).toBeGreaterThan(0);
    for (const rule of rules) expect(rule).toMatch(/^recent:(1|3|7|28)$/);
    if (rules.length === 1) {
      const model = byName(report, 'model');
      const rule = byName(report, `recent-${(rules[0] as string).split(':')[1]}`);
      expect({ ...model, name: '', policy: '' }).toEqual({ ...rule, name: '', policy: '' });
    }
  });

  it('switches from the rule to the model once the history is enough', () => {
    const young = generated(400, 50, 5);
    const report = evaluateLog(young, { windowMs: DAY, testFromMs: START + 2 * DAY, policy: parsePolicy('coverage:0.8'), online: { retrainEveryMs: 7 * DAY } });
    expect(report.online?.coldStartWindows).toBeGreaterThan(0);
    expect(report.online?.coldStartWindows).toBeLessThan(report.testWindows);
    expect(report.online?.modelFrom).toBeDefined();
    expect(report.online?.retrains).toBeGreaterThan(0);
    expect(report.model?.metrics.fitRows).toBeGreaterThan(0);
    // The model's ranking metrics cover the windows it scored.
    expect(byName(report, 'model')?.averagePrecision).toBeGreaterThan(0);
  }, 120_000);

  it('chooseRule: least waste among the rules reaching the coverage goal, most coverage under a waste bound', () => {
    const rules = [
      { k: 1, coverage: 0.5, waste: 0.3 },
      { k: 3, coverage: 0.82, waste: 0.5 },
      { k: 7, coverage: 0.9, waste: 0.6 },
      { k: 28, coverage: 0.99, waste: 0.8 },
    ];
    expect(chooseRule(parsePolicy('coverage:0.8'), rules)?.k).toBe(3);
    expect(chooseRule(parsePolicy('coverage:0.995'), rules)?.k).toBe(28);
    expect(chooseRule(parsePolicy('waste:0.55'), rules)?.k).toBe(3);
    expect(chooseRule(parsePolicy('waste:0.1'), rules)?.k).toBe(1);
    expect(chooseRule(parsePolicy('budget:10'), rules)?.k).toBe(3);
    expect(chooseRule(parsePolicy('coverage:0.8'), [])).toBeUndefined();
  });
});
