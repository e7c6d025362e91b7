import type { Pool } from '../db/pool.ts';
import { RECENCY_SCORER_VERSION } from '../propensity/recency-scorer.ts';
import { isHeld, parsePolicy, type Policy } from './policy.ts';

/**
 * Feedback-held targets (docs/design.md, "policy"; README "Policies").
 *
 * `coverage:F` and `waste:F` select from calibrated probabilities, so what a run delivers is only
 * as good as the calibration: on a log whose model is over- or under-confident the same F buys
 * too much or too little. The logins are the labels and arrive by themselves, so every run whose
 * horizon is over says how far the target it applied missed the goal. The controller keeps an
 * applied target next to the operator's goal and moves it by a bounded integral step:
 *
 *   applied' = clamp(applied + clamp(gain · w · (goal − measured), ±maxStep), goal ± maxOffset)
 *
 * with w = n / (n + evidenceHalf) (n = active known users for coverage, precomputes for waste), so
 * a run that measured a handful of users moves the target little.
 *
 * The applied target is then applied as ONE score threshold: the score at which the pooled scores
 * of the window's last `poolRuns` runs reach it (their expected coverage, or expected waste). So
 * the same threshold serves busy and quiet windows alike — a busy window, with more users above
 * it, gets more precomputes and a quiet one fewer — as one global threshold over all windows
 * does; applying the target as a share of each window's expected logins would buy the same
 * coverage with more waste. The run records both (`threshold:0.0961,coverage:0.8412`), which makes
 * the controller's state the run history itself: nothing else to store, and a re-plan or another
 * replica computes the same policy. Without earlier runs the target is applied as a per-window
 * share (`coverage:0.8`).
 *
 * No oscillation: as long as gain × (slope of measured against applied) ≤ 1 each step closes at
 * most the whole remaining error, so a stationary log approaches its fixed point from one side.
 * With a calibrated model that slope is 1; gain 0.5 leaves room for a model twice as steep.
 */
export interface FeedbackSettings {
  gain: number;
  /** Evidence (users) at which a run's error counts half. */
  evidenceHalf: number;
  /** Largest change of the applied target from one run to the next. */
  maxStep: number;
  /** Largest distance of the applied target from the goal. */
  maxOffset: number;
  /** Runs of the window whose scores are pooled to turn the target into a threshold (4 weeks of daily runs). */
  poolRuns: number;
}

export const DEFAULT_FEEDBACK: FeedbackSettings = { gain: 0.5, evidenceHalf: 150, maxStep: 0.05, maxOffset: 0.3, poolRuns: 28 };

/** Applied targets are recorded with four decimals, so that a plan and its re-plan agree. */
const RESOLUTION = 1e4;

/** What one run whose horizon is over measured, and the target it applied. */
export interface RunOutcome {
  /** The coverage target or waste bound the run selected with. */
  applied: number;
  /** Coverage (hits / active known users) or waste (wasted / precomputes) it achieved. */
  measured: number;
  /** Active known users (coverage) or precomputes that ended (waste) behind `measured`. */
  evidence: number;
}

export type HeldPolicy = Extract<Policy, { kind: 'coverage' | 'waste' }>;

/** The operator's goal of a held policy. */
export function goalOf(policy: HeldPolicy): number {
  return policy.kind === 'coverage' ? policy.target : policy.max;
}

/** The policy as applied with `value` instead of its goal. */
export function applying(policy: HeldPolicy, value: number): HeldPolicy {
  return policy.kind === 'coverage' ? { kind: 'coverage', target: value } : { kind: 'waste', max: value };
}

/** The target the next run applies, from the goal and the latest run whose horizon is over. */
export function nextTarget(goal: number, last: RunOutcome | undefined, settings: FeedbackSettings = DEFAULT_FEEDBACK): number {
  if (!last || !Number.isFinite(last.applied)) return goal;
  let step = 0;
  if (last.evidence > 0 && Number.isFinite(last.measured)) {
    const weight = last.evidence / (last.evidence + settings.evidenceHalf);
    step = Math.max(-settings.maxStep, Math.min(settings.maxStep, settings.gain * weight * (goal - last.measured)));
  }
  const low = Math.max(0, goal - settings.maxOffset);
  const high = Math.min(1, goal + settings.maxOffset);
  const next = Math.max(low, Math.min(high, last.applied + step));
  return Math.round(next * RESOLUTION) / RESOLUTION;
}

/**
 * Pooled scores, binned by log-odds (3 200 bins of 0.01 over ±16, and one below and one above):
 * per bin the users and their Σp. The planner builds it from its runs' predictions (weighted)
 * and `evaluate --online` from its windows' scores, with the same bins.
 */
export interface ScoreHistogram {
  count: Float64Array;
  sum: Float64Array;
}

export const HISTOGRAM = { lo: -16, hi: 16, bins: 3200 } as const;

export function emptyHistogram(): ScoreHistogram {
  return { count: new Float64Array(HISTOGRAM.bins + 2), sum: new Float64Array(HISTOGRAM.bins + 2) };
}

/** The bin of p: 0 below lo, bins + 1 at or above hi, as Postgres' width_bucket numbers them. */
export function binOf(p: number): number {
  const q = Math.min(1 - 1e-7, Math.max(1e-7, p));
  const logit = Math.log(q / (1 - q));
  const b = Math.floor(((logit - HISTOGRAM.lo) / (HISTOGRAM.hi - HISTOGRAM.lo)) * HISTOGRAM.bins) + 1;
  return b < 0 ? 0 : b > HISTOGRAM.bins + 1 ? HISTOGRAM.bins + 1 : b;
}

/** Adds scores (each standing for `weight` users, 1 when absent) to a histogram. */
export function addScores(histogram: ScoreHistogram, p: ArrayLike<number>, weight?: ArrayLike<number>): ScoreHistogram {
  for (let i = 0; i < p.length; i++) {
    const w = weight ? (weight[i] as number) : 1;
    const b = binOf(p[i] as number);
    histogram.count[b] = (histogram.count[b] as number) + w;
    histogram.sum[b] = (histogram.sum[b] as number) + w * (p[i] as number);
  }
  return histogram;
}

/** The lowest score of bin b (0 for the bin below the range). */
function lowerEdge(b: number): number {
  if (b <= 0) return 0;
  const logit = HISTOGRAM.lo + ((b - 1) * (HISTOGRAM.hi - HISTOGRAM.lo)) / HISTOGRAM.bins;
  return 1 / (1 + Math.exp(-logit));
}

/**
 * The threshold whose selection `p ≥ θ` of the pooled scores reaches expected coverage x (the
 * highest bins whose Σp reaches x of all), or keeps expected waste at most x (the most bins that
 * do): the lower edge of the last bin taken, rounded down to six significant digits. Undefined for an
 * empty histogram.
 */
export function thresholdFor(kind: HeldPolicy['kind'], histogram: ScoreHistogram, x: number): number | undefined {
  let total = 0;
  let users = 0;
  for (let b = 0; b < histogram.count.length; b++) {
    total += histogram.sum[b] as number;
    users += histogram.count[b] as number;
  }
  if (users <= 0) return undefined;
  const top = histogram.count.length - 1;
  let hits = 0;
  let count = 0;
  let taken = top + 1;
  for (let b = top; b >= 0; b--) {
    if ((histogram.count[b] as number) === 0) continue;
    if (kind === 'coverage') {
      if (x <= 0 || total <= 0) break;
      hits += histogram.sum[b] as number;
      taken = b;
      if (hits >= x * total - 1e-9) break;
    } else {
      const nextHits = hits + (histogram.sum[b] as number);
      const nextCount = count + (histogram.count[b] as number);
      if (1 - nextHits / nextCount > x + 1e-12) break;
      hits = nextHits;
      count = nextCount;
      taken = b;
    }
  }
  const threshold = taken > top ? lowerEdge(top + 1) : lowerEdge(taken);
  // Rounded down, so that the recorded threshold still takes every user of the bin.
  if (threshold <= 0) return 0;
  const scale = 10 ** (5 - Math.floor(Math.log10(threshold)));
  return Math.floor(threshold * scale) / scale;
}

/** The target a run's recorded policy applied for a held goal of `kind`, if it applied one. */
export function appliedTarget(policy: Policy, kind: HeldPolicy['kind']): number | undefined {
  if (policy.kind === 'threshold') return policy.held?.kind === kind ? policy.held.target : undefined;
  if (policy.kind !== kind || policy.fixed) return undefined;
  return policy.kind === 'coverage' ? policy.target : policy.kind === 'waste' ? policy.max : undefined;
}

/**
 * The policy a run applies: a held policy's target moved by the last finished run's outcome (when
 * that run applied a target of the same kind; an operator who switched from waste to coverage
 * starts again from the goal), applied as a threshold on the pooled scores of the window's
 * earlier runs, or as a per-window share when there are none. Any other policy as it is.
 */
export function heldPolicy(
  policy: Policy,
  last: { policy: Policy; measured: number; evidence: number } | undefined,
  pooled: ScoreHistogram | undefined,
  settings: FeedbackSettings = DEFAULT_FEEDBACK,
): Policy {
  if (!isHeld(policy)) return policy;
  const applied = last ? appliedTarget(last.policy, policy.kind) : undefined;
  const target = nextTarget(goalOf(policy), last && applied !== undefined ? { applied, measured: last.measured, evidence: last.evidence } : undefined, settings);
  const threshold = pooled ? thresholdFor(policy.kind, pooled, target) : undefined;
  if (threshold === undefined) return applying(policy, target);
  return { kind: 'threshold', p: threshold, held: { kind: policy.kind, target } };
}

/**
 * The controller as a loop over windows, for the offline walk (`evaluate --online`): `policy()`
 * before a window's selection, `observe()` once its outcome is known, with the window's scores.
 */
export function createController(policy: Policy, settings: FeedbackSettings = DEFAULT_FEEDBACK) {
  let last: { policy: Policy; measured: number; evidence: number } | undefined;
  const windows: ScoreHistogram[] = [];
  let current = heldPolicy(policy, undefined, undefined, settings);
  return {
    policy: (): Policy => current,
    observe(outcome: { selected: number; hits: number; activeKnown: number; scores: ArrayLike<number> }): void {
      if (!isHeld(policy)) return;
      last =
        policy.kind === 'coverage'
          ? { policy: current, measured: outcome.activeKnown > 0 ? outcome.hits / outcome.activeKnown : NaN, evidence: outcome.activeKnown }
          : { policy: current, measured: outcome.selected > 0 ? 1 - outcome.hits / outcome.selected : NaN, evidence: outcome.selected };
      windows.push(addScores(emptyHistogram(), outcome.scores));
      if (windows.length > settings.poolRuns) windows.shift();
      const pooled = emptyHistogram();
      for (const window of windows) {
        for (let b = 0; b < pooled.count.length; b++) {
          pooled.count[b] = (pooled.count[b] as number) + (window.count[b] as number);
          pooled.sum[b] = (pooled.sum[b] as number) + (window.sum[b] as number);
        }
      }
      current = heldPolicy(policy, last, pooled, settings);
    },
  };
}

const sql = {
  /**
   * The window's latest run whose horizon is over (its logins are all in), with what it applied and
   * measured: coverage from coverage_by_run (every active known user, holdout users being the
   * measured misses), waste from waste_by_run over the sets whose life ended.
   */
  lastFinished: (window: string, at: Date) => ({
    text: `SELECT b.policy, c.active_known::int AS active_known, c.covered::int AS covered, w.ended::int AS ended, w.wasted::int AS wasted
             FROM (SELECT id, policy FROM batch_runs
                    WHERE window_name = $1 AND planned_at IS NOT NULL
                      AND scheduled_for + horizon_ms * interval '1 millisecond' <= $2
                    ORDER BY scheduled_for DESC LIMIT 1) b
             JOIN coverage_by_run c ON c.run_id = b.id
             JOIN waste_by_run w ON w.run_id = b.id`,
    values: [window, at],
  }),
  /**
   * The pooled scores of the window's latest runs planned before `at` by a model (the recency
   * stand-in's scores are no probabilities), binned as `binOf` bins them; predictions keep every
   * selected and holdout user and a weighted sample of the others.
   */
  pooledScores: (window: string, at: Date, runs: number) => ({
    text: `SELECT width_bucket(ln(q / (1 - q)), $4::float8, $5::float8, $6::int) AS bin, sum(weight)::float8 AS count, sum(weight * p)::float8 AS sum
             FROM (SELECT pr.p::float8 AS p, greatest(1e-7, least(1 - 1e-7, pr.p::float8)) AS q, pr.weight::float8 AS weight
                     FROM predictions pr
                    WHERE pr.run_id IN (SELECT id FROM batch_runs
                                         WHERE window_name = $1 AND planned_at IS NOT NULL AND scheduled_for < $2
                                           AND model_version IS DISTINCT FROM $7
                                         ORDER BY scheduled_for DESC LIMIT $3)) s
            GROUP BY 1`,
    values: [window, at, runs, HISTOGRAM.lo, HISTOGRAM.hi, HISTOGRAM.bins, RECENCY_SCORER_VERSION],
  }),
};

interface LastRunRow {
  policy: string;
  active_known: number;
  covered: number;
  ended: number;
  wasted: number;
}

/**
 * The planner's hook: the policy the window's run at `at` applies, held from the window's last
 * run whose horizon is over and applied as a threshold on its latest runs' scores (read from the
 * views and predictions). Model-free and `,fixed` policies come back unchanged without a query.
 */
export async function resolveHeldPolicy(pool: Pool, window: { name: string; policy: Policy }, at: Date, settings: FeedbackSettings = DEFAULT_FEEDBACK): Promise<Policy> {
  if (!isHeld(window.policy)) return window.policy;
  const histogram = emptyHistogram();
  let users = 0;
  for (const row of (await pool.query<{ bin: number; count: number; sum: number }>(sql.pooledScores(window.name, at, settings.poolRuns))).rows) {
    const b = Math.min(HISTOGRAM.bins + 1, Math.max(0, Number(row.bin)));
    histogram.count[b] = (histogram.count[b] as number) + Number(row.count);
    histogram.sum[b] = (histogram.sum[b] as number) + Number(row.sum);
    users += Number(row.count);
  }
  const pooled = users > 0 ? histogram : undefined;
  const row = (await pool.query<LastRunRow>(sql.lastFinished(window.name, at))).rows[0];
  if (!row) return heldPolicy(window.policy, undefined, pooled, settings);
  let applied: Policy;
  try {
    applied = parsePolicy(row.policy);
  } catch {
    // A run recorded by an older version with a policy this one no longer reads: start afresh.
    return heldPolicy(window.policy, undefined, pooled, settings);
  }
  const last =
    window.policy.kind === 'coverage'
      ? { policy: applied, measured: row.active_known > 0 ? row.covered / row.active_known : NaN, evidence: row.active_known }
      : { policy: applied, measured: row.ended > 0 ? row.wasted / row.ended : NaN, evidence: row.ended };
  return heldPolicy(window.policy, last, pooled, settings);
}
