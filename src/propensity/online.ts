import { isPrewarmError } from '../errors.ts';
import type { Policy } from '../planner/policy.ts';
// evaluate.ts and train.ts import this module too: only functions are used across the cycle, and
// nothing at this module's top level reads an import.
import { logExtent, ratio, runOfflineProtocol, type OnlineSummary } from './evaluate.ts';
import type { LoginLog } from './login-log.ts';
import type { ModelMetrics, PropensityModel } from './model.ts';
import type { StateGrid } from './state.ts';
import { trainOnLog, type TrainOnLogOptions } from './train.ts';

/**
 * Cold start (README "Cold start"): below these, no model is fitted — a logistic regression on a
 * few dozen rows ends below "precompute everyone" — and the recency rule that backtests best on
 * the history available selects instead. The same minimums guard `train-propensity`.
 */
export const COLD_START = {
  /** Users with a login before the training period's end. */
  minKnownUsers: 50,
  /** (known user, window) training rows: train-propensity refuses fewer too. */
  minTrainingRows: 1_000,
  /** Of those, rows with a login (the positives the model learns from). */
  minPositiveRows: 100,
  /** Windows of history the recency rules are backtested on (the latest ones). */
  backtestWindows: 28,
} as const;

/** The recency rules a cold start chooses from (the baselines of `evaluate`). */
export const COLD_START_RULES = [1, 3, 7, 28] as const;

export interface RuleFigures {
  k: number;
  coverage: number;
  waste: number;
}

/**
 * The rule that meets the goal best on the history: for `coverage:F` (and any policy that is not a
 * waste bound, with F = 0.8) the least waste among the rules covering F, else the most coverage;
 * for `waste:F` the most coverage among the rules wasting at most F, else the least waste.
 */
export function chooseRule(goal: Policy, rules: readonly RuleFigures[]): RuleFigures | undefined {
  if (rules.length === 0) return undefined;
  const byWaste = [...rules].sort((a, b) => a.waste - b.waste || b.coverage - a.coverage);
  const byCoverage = [...rules].sort((a, b) => b.coverage - a.coverage || a.waste - b.waste);
  if (goal.kind === 'waste') return byCoverage.find((r) => r.waste <= goal.max + 1e-12) ?? byWaste[0];
  const target = goal.kind === 'coverage' ? goal.target : 0.8;
  return byWaste.find((r) => r.coverage >= target - 1e-12) ?? byCoverage[0];
}

export type Trained =
  | { kind: 'model'; model: PropensityModel; metrics: ModelMetrics; trainFromMs: number; trainToMs: number }
  | { kind: 'cold'; reason: string };

/**
 * Trains as `train-propensity` would at `atMs` (the windows before it), or says why it is too
 * early: fewer known users, training rows or positives than COLD_START asks, or a history too
 * short for two training windows.
 */
export function trainOrCold(log: LoginLog, atMs: number, knownUsers: number, options: Omit<TrainOnLogOptions, 'trainToMs'>): Trained {
  if (knownUsers < COLD_START.minKnownUsers) return { kind: 'cold', reason: `${knownUsers} known users < ${COLD_START.minKnownUsers}` };
  try {
    const trained = trainOnLog(log, { ...options, trainToMs: atMs });
    return { kind: 'model', ...trained };
  } catch (error) {
    if (isPrewarmError(error, 'PREWARM_ERR_NO_MODEL') || isPrewarmError(error, 'PREWARM_ERR_BAD_INPUT')) return { kind: 'cold', reason: (error as Error).message };
    throw error;
  }
}

export function noteApplied(summary: OnlineSummary, policy: Policy): void {
  const value = policy.kind === 'coverage' ? policy.target : policy.kind === 'waste' ? policy.max : undefined;
  if (value === undefined) return;
  const seen = summary.appliedTarget;
  summary.appliedTarget = seen ? { first: seen.first, last: value, min: Math.min(seen.min, value), max: Math.max(seen.max, value) } : { first: value, last: value, min: value, max: value };
}

/**
 * Cold start: the recency rule that meets the policy's goal best on the latest windows of history
 * before `atMs` (at most COLD_START.backtestWindows; `recent:28` when there is none).
 */
export function bestRecencyRule(log: LoginLog, grid: StateGrid, atMs: number, goal: Policy): Policy {
  const fromMs = Math.max(logExtent(log, grid).fromMs + grid.windowMs, atMs - COLD_START.backtestWindows * grid.windowMs);
  const widest: Policy = { kind: 'recent', k: COLD_START_RULES[COLD_START_RULES.length - 1] as number };
  if (fromMs >= atMs) return widest;
  const rules: Policy[] = COLD_START_RULES.map((k) => ({ kind: 'recent', k }));
  const run = runOfflineProtocol(log, { windowMs: grid.windowMs, testFromMs: fromMs, testToMs: atMs, needsModel: false }, rules);
  const figures = run.tallies.map((tally, i) => ({ k: COLD_START_RULES[i] as number, coverage: ratio(tally.hits, run.activeUserWindows), waste: ratio(tally.selected - tally.hits, tally.selected) }));
  const best = chooseRule(goal, figures);
  return best ? { kind: 'recent', k: best.k } : widest;
}
