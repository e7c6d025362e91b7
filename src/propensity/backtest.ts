import { formatDuration } from '../duration.ts';
import { PrewarmError } from '../errors.ts';
import type { Policy } from '../planner/policy.ts';
import { baselinePolicies, knownUsersAt, oracleResult, policyResult, ratio, runOfflineProtocol, type EvaluateOptions, type PolicyResult, type PolicyTally } from './evaluate.ts';
import { logExtent } from './periods.ts';
import type { LoginLog } from './login-log.ts';
import type { ModelMetrics } from './model.ts';

/** The policy parameter a backtest sweeps. */
export type SweepKind = 'threshold' | 'budget' | 'coverage';
export const SWEEP_KINDS: readonly SweepKind[] = ['threshold', 'budget', 'coverage'];

/**
 * An operator's goal, written `coverage>=0.8` (cover at least 80% of the known users' logins
 * with the least waste), `waste<=0.5` (the most coverage while wasting at most half the
 * precomputes) or `budget<=100000` (the most coverage with at most 100 000 precomputes in any
 * one window).
 */
export type Goal = { kind: 'coverage'; min: number } | { kind: 'waste'; max: number } | { kind: 'budget'; max: number };
export const GOAL_SYNTAX = 'coverage>=F | waste<=F | budget<=N';

export function parseGoal(text: string): Goal {
  const match = /^\s*(coverage|waste|budget)\s*(>=|<=)\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*$/i.exec(text);
  const fail = (why: string): never => {
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--goal "${text}" ${why}; expected ${GOAL_SYNTAX} (e.g. coverage>=0.8)`);
  };
  if (!match) return fail('is not a goal');
  const [, nameText, op, valueText] = match as unknown as [string, string, string, string];
  const name = nameText.toLowerCase();
  const value = Number(valueText);
  if (!Number.isFinite(value)) return fail('has a non-numeric value');
  if (name === 'coverage') {
    if (op !== '>=') fail('must use >= for coverage');
    if (value < 0 || value > 1) fail('needs a fraction between 0 and 1');
    return { kind: 'coverage', min: value };
  }
  if (op !== '<=') fail(`must use <= for ${name}`);
  if (name === 'waste') {
    if (value < 0 || value > 1) fail('needs a fraction between 0 and 1');
    return { kind: 'waste', max: value };
  }
  if (!Number.isInteger(value) || value < 1) fail('needs a whole number of users ≥ 1');
  return { kind: 'budget', max: value };
}

export function formatGoal(goal: Goal): string {
  return goal.kind === 'coverage' ? `coverage>=${goal.min}` : goal.kind === 'waste' ? `waste<=${goal.max}` : `budget<=${goal.max}`;
}

export interface BacktestOptions extends Omit<EvaluateOptions, 'policy'> {
  sweep: SweepKind;
  goal: Goal;
  /** Settings to try. Default: a grid suited to the sweep (`defaultSweepValues`). */
  values?: number[];
}

/** One setting of the swept parameter and what its policy did over the test period. */
export interface SweepPoint extends PolicyResult {
  setting: number;
  /** Largest number of users selected in any one window. */
  maxSelected: number;
  /** Mean number of users selected per window. */
  meanSelected: number;
  meetsGoal: boolean;
}

export interface BacktestReport {
  window: string;
  testFrom: string;
  testTo: string;
  testWindows: number;
  knownUserWindows: number;
  activeUserWindows: number;
  sweep: SweepKind;
  goal: string;
  /** The trade-off curve, in sweep order. */
  points: SweepPoint[];
  /** The setting that meets the goal best; absent when none meets it. */
  recommended?: SweepPoint;
  /** Why the recommendation is what it is (or why there is none). */
  explanation: string;
  /** The baselines, for reference on the chart. */
  baselines: PolicyResult[];
  model?: { trainFrom: string; trainTo: string; metrics: ModelMetrics };
}

/** Default settings: fine where policies usually operate, coarse elsewhere. */
export function defaultSweepValues(sweep: SweepKind, maxKnownUsers: number, goal?: Goal): number[] {
  const values = new Set<number>();
  if (sweep === 'threshold') {
    for (const p of [0.001, 0.002, 0.003, 0.005, 0.0075]) values.add(p);
    for (let k = 1; k <= 99; k++) values.add(k / 100);
  } else if (sweep === 'coverage') {
    for (let k = 5; k <= 99; k++) values.add(k / 100);
    for (const c of [0.995, 0.999, 1]) values.add(c);
  } else {
    const top = Math.max(1, maxKnownUsers);
    const steps = 60;
    for (let i = 0; i <= steps; i++) values.add(Math.max(1, Math.round(top * Math.pow(1000, i / steps - 1))));
    if (goal?.kind === 'budget') values.add(goal.max);
  }
  return [...values].sort((a, b) => a - b);
}

export function sweepPolicy(sweep: SweepKind, setting: number): Policy {
  switch (sweep) {
    case 'threshold':
      return { kind: 'threshold', p: setting };
    case 'coverage':
      return { kind: 'coverage', target: setting };
    case 'budget':
      return { kind: 'budget', n: setting };
  }
}

/**
 * Chooses the point that meets the goal best: for `coverage>=F` the least waste among the
 * settings that cover F (ties: less volume); for `waste<=F` and `budget<=N` the most coverage
 * among those within the limit (ties: less waste).
 */
export function recommend(points: readonly SweepPoint[], goal: Goal): { recommended?: SweepPoint; explanation: string } {
  const meeting = points.filter((point) => point.meetsGoal);
  if (meeting.length === 0) {
    const closest =
      goal.kind === 'coverage' ? [...points].sort((a, b) => b.coverage - a.coverage)[0] : [...points].sort((a, b) => a.waste - b.waste || a.maxSelected - b.maxSelected)[0];
    const what = closest ? ` (closest: setting ${closest.setting}, coverage ${pct(closest.coverage)}, waste ${pct(closest.waste)}, at most ${closest.maxSelected} users a window)` : '';
    return { explanation: `no setting meets ${formatGoal(goal)}${what}` };
  }
  const best = [...meeting].sort((a, b) =>
    goal.kind === 'coverage' ? a.waste - b.waste || a.volume - b.volume : b.coverage - a.coverage || a.waste - b.waste,
  )[0] as SweepPoint;
  const why =
    goal.kind === 'coverage'
      ? `least waste among the ${meeting.length} settings covering at least ${pct(goal.min)}`
      : goal.kind === 'waste'
        ? `most coverage among the ${meeting.length} settings wasting at most ${pct(goal.max)}`
        : `most coverage among the ${meeting.length} settings selecting at most ${goal.max} users in every window`;
  return {
    recommended: best,
    explanation: `${best.policy ?? best.setting}: ${why} — coverage ${pct(best.coverage)}, waste ${pct(best.waste)}, up to ${best.maxSelected} users a window`,
  };
}

function pct(value: number): string {
  return `${(100 * value).toFixed(1)}%`;
}

function meets(goal: Goal, point: Omit<SweepPoint, 'meetsGoal'>): boolean {
  if (goal.kind === 'coverage') return point.coverage >= goal.min - 1e-12;
  if (goal.kind === 'waste') return point.precomputes > 0 && point.waste <= goal.max + 1e-12;
  return point.maxSelected <= goal.max;
}

/**
 * Sweeps one policy parameter over a past period with the offline protocol (one walk of the log:
 * every setting selects from the same scores, window by window) and recommends the setting that
 * meets the goal.
 */
export function backtestLog(log: LoginLog, options: BacktestOptions): BacktestReport {
  const grid = { windowMs: options.windowMs, phaseMs: 0 };
  const maxKnown = knownUsersAt(log, options.testToMs ?? logExtent(log, grid).toMs);
  const values = options.values ?? defaultSweepValues(options.sweep, maxKnown, options.goal);
  if (values.length === 0) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', '--values: no setting to sweep');
  const swept = values.map((value) => sweepPolicy(options.sweep, value));
  const baselines = baselinePolicies();
  const run = runOfflineProtocol(log, { ...options, needsModel: true }, [...swept, ...baselines.map((b) => b.policy)]);
  const points: SweepPoint[] = values.map((setting, i) => {
    const tally = run.tallies[i] as PolicyTally;
    const row = policyResult(options.sweep, swept[i] as Policy, tally, run);
    const point = { ...row, setting, maxSelected: tally.maxSelected, meanSelected: ratio(tally.selected, run.testWindows) };
    return { ...point, meetsGoal: meets(options.goal, point) };
  });
  const { recommended, explanation } = recommend(points, options.goal);
  const baselineRows = baselines.map((b, i) => policyResult(b.name, b.policy, run.tallies[values.length + i] as PolicyTally, run));
  baselineRows.push(oracleResult(run));
  return {
    window: formatDuration(options.windowMs),
    testFrom: new Date(run.testFromMs).toISOString(),
    testTo: new Date(run.testToMs).toISOString(),
    testWindows: run.testWindows,
    knownUserWindows: run.knownUserWindows,
    activeUserWindows: run.activeUserWindows,
    sweep: options.sweep,
    goal: formatGoal(options.goal),
    points,
    ...(recommended ? { recommended } : {}),
    explanation,
    baselines: baselineRows,
    ...(run.model && run.metrics && run.training
      ? { model: { trainFrom: new Date(run.training.fromMs).toISOString(), trainTo: new Date(run.training.toMs).toISOString(), metrics: run.metrics } }
      : {}),
  };
}
