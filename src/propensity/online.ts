import { isPrewarmError } from '../errors.ts';
import type { Policy } from '../planner/policy.ts';
import type { FeedbackSettings } from '../planner/feedback.ts';
import { scaleMap, scaleMapsOnDays, type ScaleMaps, type ScoredDay } from '../planner/score-histogram.ts';
import type { OnlineSummary } from './evaluate.ts';
import type { LoginLog } from './login-log.ts';
import { FEATURE_COUNT } from './features.ts';
import { modelProbabilities, type ModelMetrics, type PropensityModel } from './model.ts';
import { COLD_START, trainOnLog, type TrainOnLogOptions } from './train.ts';

export { COLD_START, COLD_START_RULES } from './train.ts';

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

/** Notes the held target (coverage or waste) and the threshold the model policy applied in a window. */
export function noteApplied(summary: OnlineSummary, policy: Policy): void {
  const widen = (seen: Range | undefined, value: number): Range =>
    seen ? { first: seen.first, last: value, min: Math.min(seen.min, value), max: Math.max(seen.max, value) } : { first: value, last: value, min: value, max: value };
  const value = policy.kind === 'coverage' ? policy.target : policy.kind === 'waste' ? policy.max : policy.kind === 'threshold' ? policy.held?.target : undefined;
  if (value !== undefined) summary.appliedTarget = widen(summary.appliedTarget, value);
  if (policy.kind === 'threshold' && policy.held) summary.appliedThreshold = widen(summary.appliedThreshold, policy.p);
}

type Range = { first: number; last: number; min: number; max: number };

/**
 * The maps of the held targets' pooled scores onto the serving model's scale for the offline walk
 * (`evaluate --online`), as the planner computes them (`rescaleOn`): on the pooled days — the
 * windows the controllers pool (the latest `span` a model selected) are kept with their users'
 * feature rows and scores, and the serving model scores each pooled day's users once, as they were
 * that day (`scaleMapsOnDays`) — or on the next window's users, which every model still pooled
 * scores too (`run-start`).
 */
export class HeldScaleMaps {
  readonly #days: { model: string; n: number; rows: Float64Array; scores: Float64Array; rescored?: { model: string; scores: Float64Array } }[] = [];
  readonly #models = new Map<string, PropensityModel>();

  constructor(
    readonly span: number,
    readonly on: FeedbackSettings['rescaleOn'],
  ) {}

  /** A model trained (its key: the retraining's ordinal). */
  trained(key: string, model: PropensityModel): void {
    this.#models.set(key, model);
  }

  /** A window the controllers observed: the key of the model that scored it, its feature rows and scores (by user). */
  observed(model: string, rows: Float64Array, scores: Float64Array, n: number): void {
    this.#days.push(this.on === 'pooled-days' ? { model, n, rows: rows.slice(0, n * FEATURE_COUNT), scores: scores.slice(0, n) } : { model, n, rows: new Float64Array(0), scores: new Float64Array(0) });
    if (this.#days.length > this.span) this.#days.shift();
    const pooled = new Set(this.#days.map((d) => d.model));
    for (const key of this.#models.keys()) if (key !== model && !pooled.has(key)) this.#models.delete(key);
  }

  /** The maps of the pooled earlier models onto `servingKey`'s model; `rows` and `serving` score the next window's users (`run-start`). */
  maps(servingKey: string, rows: Float64Array, knownCount: number, serving: Float64Array): ScaleMaps {
    const servingModel = this.#models.get(servingKey);
    if (!servingModel) return new Map();
    if (this.on === 'run-start') {
      const maps = new Map<string, Int32Array>();
      const earlier = new Float64Array(knownCount);
      for (const key of new Set(this.#days.map((d) => d.model))) {
        const model = this.#models.get(key);
        if (key === servingKey || !model) continue;
        const map = scaleMap(modelProbabilities(model, rows, knownCount, earlier), serving);
        if (map) maps.set(key, map);
      }
      return maps;
    }
    const days: ScoredDay[] = [];
    for (const day of this.#days) {
      if (day.model === servingKey) continue;
      if (day.rescored?.model !== servingKey) day.rescored = { model: servingKey, scores: modelProbabilities(servingModel, day.rows, day.n) };
      days.push({ model: day.model, from: day.scores, to: day.rescored.scores });
    }
    return scaleMapsOnDays(days);
  }
}
