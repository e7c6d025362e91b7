import { describe, expect, it } from 'vitest';
import { isPrewarmError } from '../src/errors.ts';
import { backtestLog, parseGoal, recommend, type SweepPoint } from '../src/propensity/backtest.ts';
import { renderTradeoffSvg } from '../src/charts/index.ts';
import { evaluateLog } from '../src/propensity/evaluate.ts';
import { readLoginLog } from '../src/propensity/login-log.ts';

const FIXTURE = 'test/fixtures/propensity-logins.csv';
const TEST_FROM = Date.UTC(2024, 1, 15);
const DAY = 86_400_000;

function point(setting: number, coverage: number, waste: number, maxSelected: number, meetsGoal: boolean): SweepPoint {
  return { name: 'threshold', policy: `threshold:${setting}`, setting, coverage, waste, volume: coverage, maxSelected, meanSelected: maxSelected, precomputes: 10, hits: 5, wasted: 5, meetsGoal };
}

describe('backtest goals', () => {
  it('parses the three goal forms and names the flag when it cannot', () => {
    expect(parseGoal('coverage>=0.8')).toEqual({ kind: 'coverage', min: 0.8 });
    expect(parseGoal(' waste <= 0.5 ')).toEqual({ kind: 'waste', max: 0.5 });
    expect(parseGoal('budget<=100000')).toEqual({ kind: 'budget', max: 100_000 });
    for (const bad of ['coverage<=0.8', 'waste<=2', 'budget<=1.5', 'speed>=3', '']) {
      let thrown: unknown;
      try {
        parseGoal(bad);
      } catch (error) {
        thrown = error;
      }
      expect(isPrewarmError(thrown, 'PREWARM_ERR_BAD_INPUT')).toBe(true);
      expect((thrown as Error).message).toMatch(/^--goal/);
    }
  });

  it('coverage>=F: least waste among the settings that cover F', () => {
    const points = [point(0.1, 0.95, 0.7, 90, true), point(0.2, 0.85, 0.55, 60, true), point(0.3, 0.81, 0.56, 50, true), point(0.4, 0.7, 0.4, 30, false)];
    expect(recommend(points, { kind: 'coverage', min: 0.8 }).recommended?.setting).toBe(0.2);
  });

  it('waste<=F and budget<=N: most coverage within the limit', () => {
    const points = [point(0.1, 0.95, 0.7, 90, false), point(0.2, 0.85, 0.5, 60, true), point(0.3, 0.8, 0.45, 50, true)];
    expect(recommend(points, { kind: 'waste', max: 0.5 }).recommended?.setting).toBe(0.2);
    expect(recommend(points, { kind: 'budget', max: 60 }).recommended?.setting).toBe(0.2);
  });

  it('says so when no setting meets the goal', () => {
    const { recommended, explanation } = recommend([point(0.5, 0.4, 0.3, 10, false)], { kind: 'coverage', min: 0.9 });
    expect(recommended).toBeUndefined();
    expect(explanation).toMatch(/no setting meets coverage>=0.9/);
  });
});

describe('backtest on a small log', () => {
  it('every swept setting measures what evaluate measures for that policy', async () => {
    const { log } = await readLoginLog(FIXTURE);
    const report = backtestLog(log, { windowMs: DAY, testFromMs: TEST_FROM, sweep: 'threshold', goal: { kind: 'coverage', min: 0.8 }, values: [0.1, 0.3, 0.5] });
    expect(report.points.map((p) => p.setting)).toEqual([0.1, 0.3, 0.5]);
    for (const p of report.points) {
      const evaluated = evaluateLog(log, { windowMs: DAY, testFromMs: TEST_FROM, policy: { kind: 'threshold', p: p.setting } });
      const model = evaluated.policies[0];
      expect(p.precomputes).toBe(model?.precomputes);
      expect(p.hits).toBe(model?.hits);
      expect(p.coverage).toBe(model?.coverage);
    }
    // Lower thresholds select more: coverage can only grow.
    expect(report.points[0]!.coverage).toBeGreaterThanOrEqual(report.points[2]!.coverage);
    const meeting = report.points.filter((p) => p.coverage >= 0.8);
    if (meeting.length > 0) expect(report.recommended?.waste).toBe(Math.min(...meeting.map((p) => p.waste)));
    expect(report.baselines.map((b) => b.name)).toEqual(['all', 'recent-1', 'recent-3', 'recent-7', 'recent-28', 'oracle']);
  });

  it('budget<=N picks the largest budget within N (coverage grows with the budget)', async () => {
    const { log } = await readLoginLog(FIXTURE);
    const report = backtestLog(log, { windowMs: DAY, testFromMs: TEST_FROM, sweep: 'budget', goal: { kind: 'budget', max: 7 }, values: [1, 2, 5, 10, 20] });
    const coverages = report.points.map((p) => p.coverage);
    expect([...coverages].sort((a, b) => a - b)).toEqual(coverages);
    expect(report.points.map((p) => p.maxSelected)).toEqual([1, 2, 5, 10, 20]);
    expect(report.recommended?.setting).toBe(5);
    expect(report.recommended?.policy).toBe('budget:5');
  });
});

describe('trade-off chart', () => {
  it('draws the curve, the references and the chosen point as SVG', () => {
    const svg = renderTradeoffSvg({
      title: 'Backtest <threshold> & goal',
      curve: [
        { x: 0.9, y: 0.6 },
        { x: 0.5, y: 0.3 },
      ],
      curveLabel: 'model',
      chosen: { x: 0.9, y: 0.6, label: 'threshold:0.2' },
      references: [{ x: 0.53, y: 0.47, label: 'recent-1' }],
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('Backtest &lt;threshold&gt; &amp; goal');
    expect(svg).toContain('threshold:0.2');
    expect(svg).toContain('recent-1');
    // Drawn sorted by coverage: the path starts at the 50% point.
    expect(svg).toMatch(/<path d="M(\d+(\.\d)?),(\d+(\.\d)?) L/);
    const start = /<path d="M([\d.]+),/.exec(svg)?.[1];
    expect(Number(start)).toBeCloseTo(64 + 0.5 * (760 - 64 - 24), 0);
  });
});
