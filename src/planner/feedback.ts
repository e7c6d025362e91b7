import type { Pool } from '../db/pool.ts';
import { RECENCY_SCORER_VERSION } from '../propensity/recency-scorer.ts';
import { isHeld, parsePolicy, type Policy } from './policy.ts';
import { addHistogram, addScores, emptyHistogram, HISTOGRAM, lowerEdge, poolOnScale, type ScaleMaps, type ScoreHistogram } from './score-histogram.ts';

// The histogram and the scale maps live in their own module (score-histogram.ts); their names are
// still read from here.
export { addHistogram, addScores, binOf, emptyHistogram, HISTOGRAM, poolOnScale, remapHistogram, scaleMap, type ScaleMaps, type ScoreHistogram } from './score-histogram.ts';

/**
 * Feedback-held targets (docs/design.md, "policy"; README "Policies").
 *
 * `coverage:F` and `waste:F` select from calibrated probabilities, so what a run delivers is only
 * as good as the calibration: on a log whose model is over- or under-confident the same F buys
 * too much or too little. The logins are the labels and arrive by themselves, so every finished
 * run says both what its scores were worth and how far it missed the goal. Two parts:
 *
 * 1. **The threshold from outcomes.** The target is applied as ONE score threshold: the score at
 *    which the recorded users of the window's last `poolRuns` finished runs — their scores and
 *    whether they logged in during the run — reach it (the logins of the users at or above it over
 *    all their logins for coverage; the share of them who did not log in for waste). This is the
 *    model's own threshold curve on recent history, applied forward: it needs no calibration and
 *    no feedback loop, because logins do not depend on what was precomputed. One threshold serves
 *    busy and quiet windows alike, as one global threshold over all windows does (a share of each
 *    window's expected logins would buy the same coverage with more waste). When the pool holds no
 *    login (`basis: 'expected'`, or a dead month) the threshold is the one at which the pooled
 *    scores' Σp reaches the target.
 * 2. **A slow, bounded integral on the level.** Applied forward, the recent curve still misses by
 *    a level (the model is retrained, the population drifts): the controller keeps an applied
 *    target beside the goal and moves it after each finished run
 *
 *      applied' = clamp(applied + clamp(gain · w · (goal − measured), ±maxStep), goal ± maxOffset)
 *
 *    with w = n / (n + evidenceHalf) (n = active known users for coverage, precomputes for waste),
 *    so a run that measured a handful of users moves it little. The gain is small: a day's coverage
 *    swings with a calendar (a course's deadlines) by itself, and the curve already follows the
 *    level; the integral only removes what remains, so its bound is tight too (±0.05: at ±0.1 it
 *    followed oulad-2013's calendar to 1.4 points of waste above the model's own curve, at ±0.05
 *    0.8; README "Measured results"). Anti-wind-up: the target does not rise after a
 *    run that already selected at least `antiWindupShare` of its candidates (taking more users
 *    cannot help a run that takes almost everyone; a dead fortnight would otherwise wind the target
 *    up to its bound and precompute for everyone until it wound down).
 *
 * The run records both (`threshold:0.0961,coverage:0.8412`), which makes the controller's state
 * the run history itself: nothing else to store, and a re-plan or another replica computes the
 * same policy. Without earlier runs the target is applied as a per-window share (`coverage:0.8`).
 *
 * No oscillation: as long as gain × (slope of measured against applied) ≤ 1 each step closes at
 * most the whole remaining error, so a stationary log approaches its fixed point from one side.
 */
export interface FeedbackSettings {
  gain: number;
  /** Evidence (users) at which a run's error counts half. */
  evidenceHalf: number;
  /** Largest change of the applied target from one run to the next. */
  maxStep: number;
  /** Largest distance of the applied target from the goal. */
  maxOffset: number;
  /** Finished runs of the window whose scores (and logins) are pooled to turn the target into a threshold (4 weeks of daily runs). */
  poolRuns: number;
  /**
   * What the pooled threshold reaches the target on: the pooled runs' logins (`outcomes`, the
   * default) or their scores' Σp (`expected`, the calibration taken at its word).
   */
  basis: 'outcomes' | 'expected';
  /** A run that selected at least this share of its candidates does not raise the target. */
  antiWindupShare: number;
  /**
   * On `outcomes`, how far the threshold may move from where the scores' Σp would put it: between
   * the Σp thresholds of the target ± this band (Infinity: unbounded).
   */
  expectedBand: number;
  /**
   * Put the pooled runs' scores on the scale of the model that scores the next run before the
   * threshold is read from them (`scaleMap`): each earlier model's scores are mapped to the
   * current model's by matching quantiles on the same users (the next run's candidates, scored by
   * both). Off: the pooled scores are used as recorded.
   */
  rescale: boolean;
  /**
   * Where each earlier model's map is estimated: on the users of the days its pooled runs were
   * scored (`pooled-days`: both models score those days' users as they were then) or on the next
   * run's users (`run-start`, the rule of commit 047e6b4).
   */
  rescaleOn: 'pooled-days' | 'run-start';
}

export const DEFAULT_FEEDBACK: FeedbackSettings = { gain: 0.1, evidenceHalf: 150, maxStep: 0.02, maxOffset: 0.05, poolRuns: 28, basis: 'outcomes', antiWindupShare: 0.9, expectedBand: Number.POSITIVE_INFINITY, rescale: true, rescaleOn: 'run-start' };

/** The controller as first shipped: the target held on Σp with a fast integral (kept for comparison in scripts/sim-held-targets.ts). */
export const EXPECTED_FEEDBACK: FeedbackSettings = { gain: 0.5, evidenceHalf: 150, maxStep: 0.05, maxOffset: 0.3, poolRuns: 28, basis: 'expected', antiWindupShare: 1, expectedBand: Number.POSITIVE_INFINITY, rescale: false, rescaleOn: 'run-start' };

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
  /** The share of the run's candidates it selected (anti-wind-up); unknown: no limit. */
  selectedShare?: number;
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
    // Anti-wind-up: a rise (of a coverage target or a waste bound) selects more users, which
    // cannot help a run that already took almost everyone.
    if (step > 0 && last.selectedShare !== undefined && last.selectedShare >= settings.antiWindupShare) step = 0;
  }
  const low = Math.max(0, goal - settings.maxOffset);
  const high = Math.min(1, goal + settings.maxOffset);
  const next = Math.max(low, Math.min(high, last.applied + step));
  return Math.round(next * RESOLUTION) / RESOLUTION;
}

/**
 * The threshold whose selection `p ≥ θ` of the pooled scores reaches coverage x (the highest bins
 * whose logins — `outcomes` — or Σp — `expected` — reach x of all), or keeps waste at most x (the
 * most bins that do): the lower edge of the last bin taken, rounded down to six significant
 * digits. Undefined for an empty histogram, and on `outcomes` for one without a login.
 */
export function thresholdFor(kind: HeldPolicy['kind'], histogram: ScoreHistogram, x: number, basis: FeedbackSettings['basis'] = 'expected'): number | undefined {
  const hitsOf = basis === 'outcomes' ? histogram.logins : histogram.sum;
  let total = 0;
  let users = 0;
  for (let b = 0; b < histogram.count.length; b++) {
    total += hitsOf[b] as number;
    users += histogram.count[b] as number;
  }
  if (users <= 0) return undefined;
  if (basis === 'outcomes' && total <= 0) return undefined;
  const top = histogram.count.length - 1;
  let hits = 0;
  let count = 0;
  let taken = top + 1;
  for (let b = top; b >= 0; b--) {
    if ((histogram.count[b] as number) === 0) continue;
    if (kind === 'coverage') {
      if (x <= 0 || total <= 0) break;
      hits += hitsOf[b] as number;
      taken = b;
      if (hits >= x * total - 1e-9) break;
    } else {
      const nextHits = hits + (hitsOf[b] as number);
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
 * The threshold of `target` on the pool: from its logins (`outcomes`), kept between the Σp
 * thresholds of target ± expectedBand; from its Σp when it holds no login or on `expected`.
 */
function pooledThreshold(kind: HeldPolicy['kind'], pooled: ScoreHistogram, target: number, settings: FeedbackSettings): number | undefined {
  const expected = thresholdFor(kind, pooled, target, 'expected');
  if (settings.basis !== 'outcomes') return expected;
  const outcomes = thresholdFor(kind, pooled, target, 'outcomes');
  if (outcomes === undefined) return expected;
  if (!Number.isFinite(settings.expectedBand)) return outcomes;
  // A higher target (coverage or waste bound) takes more users: a lower threshold.
  const lowest = thresholdFor(kind, pooled, Math.min(1, target + settings.expectedBand), 'expected') ?? 0;
  const highest = thresholdFor(kind, pooled, Math.max(0, target - settings.expectedBand), 'expected') ?? 1;
  return Math.min(highest, Math.max(lowest, outcomes));
}

/** What the last finished run applied and measured (`selectedShare`: of its candidates, for anti-wind-up). */
export interface LastRun {
  policy: Policy;
  measured: number;
  evidence: number;
  selectedShare?: number;
}

/**
 * The policy a run applies: a held policy's target moved by the last finished run's outcome (when
 * that run applied a target of the same kind; an operator who switched from waste to coverage
 * starts again from the goal), applied as a threshold on the pooled scores and logins of the
 * window's earlier finished runs (on their Σp when the pool holds no login, or with `basis:
 * 'expected'`), or as a per-window share when there are none. Any other policy as it is.
 */
export function heldPolicy(policy: Policy, last: LastRun | undefined, pooled: ScoreHistogram | undefined, settings: FeedbackSettings = DEFAULT_FEEDBACK): Policy {
  if (!isHeld(policy)) return policy;
  const applied = last ? appliedTarget(last.policy, policy.kind) : undefined;
  const target = nextTarget(
    goalOf(policy),
    last && applied !== undefined ? { applied, measured: last.measured, evidence: last.evidence, ...(last.selectedShare !== undefined ? { selectedShare: last.selectedShare } : {}) } : undefined,
    settings,
  );
  const threshold = pooled ? pooledThreshold(policy.kind, pooled, target, settings) : undefined;
  if (threshold === undefined) return applying(policy, target);
  return { kind: 'threshold', p: threshold, held: { kind: policy.kind, target } };
}

/** One finished window as the controller observes it. */
export interface WindowOutcome {
  selected: number;
  hits: number;
  activeKnown: number;
  /** Every candidate's score, … */
  scores: ArrayLike<number>;
  /** … whether each logged in during the window (1 or 0, same order; expected outcomes may be probabilities) … */
  loggedIn?: ArrayLike<number>;
  /** … and how many candidates there were (default scores.length). */
  candidates?: number;
  /** The model that scored the window (its key in the ScaleMaps given to `policy`). */
  model?: string;
}

/**
 * The controller as a loop over windows, for the offline walk (`evaluate --online`): `policy()`
 * before a window's selection (with the maps of the pooled windows' models onto the scale of the
 * model scoring this window, when `rescale`), `observe()` once its outcome is known, with the
 * window's scores and logins — what the planner reads back from a finished run's predictions and
 * the logins. `pooledModels()` names the models whose maps `policy` needs.
 */
export function createController(policy: Policy, settings: FeedbackSettings = DEFAULT_FEEDBACK) {
  let last: LastRun | undefined;
  const windows: { model: string; histogram: ScoreHistogram }[] = [];
  let current = heldPolicy(policy, undefined, undefined, settings);
  return {
    policy(maps?: ScaleMaps): Policy {
      if (!isHeld(policy) || windows.length === 0) return current;
      const byModel = new Map<string, ScoreHistogram>();
      for (const { model, histogram } of windows) byModel.set(model, addHistogram(byModel.get(model) ?? emptyHistogram(), histogram));
      current = heldPolicy(policy, last, poolOnScale(byModel, settings.rescale ? maps : undefined), settings);
      return current;
    },
    pooledModels: (): string[] => [...new Set(windows.map((w) => w.model))],
    observe(outcome: WindowOutcome): void {
      if (!isHeld(policy)) return;
      const candidates = outcome.candidates ?? outcome.scores.length;
      const selectedShare = candidates > 0 ? outcome.selected / candidates : 0;
      last =
        policy.kind === 'coverage'
          ? { policy: current, measured: outcome.activeKnown > 0 ? outcome.hits / outcome.activeKnown : NaN, evidence: outcome.activeKnown, selectedShare }
          : { policy: current, measured: outcome.selected > 0 ? 1 - outcome.hits / outcome.selected : NaN, evidence: outcome.selected, selectedShare };
      windows.push({ model: outcome.model ?? '', histogram: addScores(emptyHistogram(), outcome.scores, undefined, outcome.loggedIn) });
      if (windows.length > settings.poolRuns) windows.shift();
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
    text: `SELECT b.policy, b.selected, b.candidates, c.active_known::int AS active_known, c.covered::int AS covered, w.ended::int AS ended, w.wasted::int AS wasted
             FROM (SELECT id, policy, selected, candidates FROM batch_runs
                    WHERE window_name = $1 AND planned_at IS NOT NULL
                      AND scheduled_for + horizon_ms * interval '1 millisecond' <= $2
                    ORDER BY scheduled_for DESC LIMIT 1) b
             JOIN coverage_by_run c ON c.run_id = b.id
             JOIN waste_by_run w ON w.run_id = b.id`,
    values: [window, at],
  }),
  /** The start of each pooled run (as pooledScores picks them) by the model version that scored it. */
  pooledStarts: (window: string, at: Date, runs: number) => ({
    text: `SELECT coalesce(model_version, '') AS model_version, scheduled_for FROM batch_runs
            WHERE window_name = $1 AND planned_at IS NOT NULL
              AND scheduled_for + horizon_ms * interval '1 millisecond' <= $2
              AND model_version IS DISTINCT FROM $4
            ORDER BY scheduled_for DESC LIMIT $3`,
    values: [window, at, runs, RECENCY_SCORER_VERSION],
  }),
  /**
   * The pooled scores of the window's latest runs scored by a model (the recency stand-in's scores
   * are no probabilities) whose horizon is over by `at`, binned as `binOf` bins them, with the
   * recorded users who logged in during their run (its scheduled_for to expires_at, as
   * coverage_by_run counts them), per model version that scored them (to be put on the serving
   * model's scale); predictions keep every selected and holdout user and a weighted sample of the
   * others.
   */
  pooledScores: (window: string, at: Date, runs: number) => ({
    text: `WITH runs AS (SELECT id, scheduled_for, expires_at, model_version FROM batch_runs
                        WHERE window_name = $1 AND planned_at IS NOT NULL
                          AND scheduled_for + horizon_ms * interval '1 millisecond' <= $2
                          AND model_version IS DISTINCT FROM $7
                        ORDER BY scheduled_for DESC LIMIT $3),
                  active AS (SELECT DISTINCT r.id AS run_id, l.user_id
                               FROM runs r JOIN logins l ON l.at >= r.scheduled_for AND l.at < r.expires_at)
           SELECT model_version, width_bucket(ln(q / (1 - q)), $4::float8, $5::float8, $6::int) AS bin, sum(weight)::float8 AS count, sum(weight * p)::float8 AS sum,
                  coalesce(sum(weight) FILTER (WHERE logged_in), 0)::float8 AS logins
             FROM (SELECT coalesce(r.model_version, '') AS model_version, pr.p::float8 AS p, greatest(1e-7, least(1 - 1e-7, pr.p::float8)) AS q, pr.weight::float8 AS weight,
                          a.user_id IS NOT NULL AS logged_in
                     FROM runs r
                     JOIN predictions pr ON pr.run_id = r.id
                     LEFT JOIN active a ON a.run_id = r.id AND a.user_id = pr.user_id) s
            GROUP BY 1, 2`,
    values: [window, at, runs, HISTOGRAM.lo, HISTOGRAM.hi, HISTOGRAM.bins, RECENCY_SCORER_VERSION],
  }),
};

interface LastRunRow {
  policy: string;
  selected: number;
  candidates: number;
  active_known: number;
  covered: number;
  ended: number;
  wasted: number;
}

/**
 * The maps of earlier models' scores onto the scale of the model that scores the run at `at`
 * (`scaleMap`), for the model versions named, estimated on the days their pooled runs started
 * (`days`, per version; without them, at `at`); a version missing from the result is pooled as
 * recorded. The planner builds it from the stored models (src/propensity/scale-map.ts).
 */
export type ScaleMapper = (versions: readonly string[], at: Date, horizonMs: number, days?: ReadonlyMap<string, readonly Date[]>) => Promise<ScaleMaps | undefined>;

/**
 * The planner's hook: the policy the window's run at `at` applies, held from the window's last
 * run whose horizon is over and applied as a threshold on its latest finished runs' scores and
 * logins (read from the views, predictions and logins), each run's scores put on the serving
 * model's scale by `scale` first. Model-free and `,fixed` policies come back unchanged without a
 * query.
 */
export async function resolveHeldPolicy(
  pool: Pool,
  window: { name: string; policy: Policy; horizonMs?: number },
  at: Date,
  settings: FeedbackSettings = DEFAULT_FEEDBACK,
  scale?: ScaleMapper,
): Promise<Policy> {
  if (!isHeld(window.policy)) return window.policy;
  const byModel = new Map<string, ScoreHistogram>();
  let users = 0;
  for (const row of (await pool.query<{ model_version: string; bin: number; count: number; sum: number; logins: number }>(sql.pooledScores(window.name, at, settings.poolRuns))).rows) {
    const histogram = byModel.get(row.model_version) ?? emptyHistogram();
    byModel.set(row.model_version, histogram);
    const b = Math.min(HISTOGRAM.bins + 1, Math.max(0, Number(row.bin)));
    histogram.count[b] = (histogram.count[b] as number) + Number(row.count);
    histogram.sum[b] = (histogram.sum[b] as number) + Number(row.sum);
    histogram.logins[b] = (histogram.logins[b] as number) + Number(row.logins);
    users += Number(row.count);
  }
  let maps: ScaleMaps | undefined;
  if (users > 0 && settings.rescale && scale && window.horizonMs !== undefined) {
    // `pooled-days`: each model's map is estimated on the days its pooled runs started (scaleMapsOnDays).
    let days: Map<string, Date[]> | undefined;
    if (settings.rescaleOn === 'pooled-days') {
      days = new Map();
      for (const row of (await pool.query<{ model_version: string; scheduled_for: Date }>(sql.pooledStarts(window.name, at, settings.poolRuns))).rows) {
        days.set(row.model_version, [...(days.get(row.model_version) ?? []), new Date(row.scheduled_for)]);
      }
    }
    maps = await scale([...byModel.keys()], at, window.horizonMs, days);
  }
  const pooled = users > 0 ? poolOnScale(byModel, maps) : undefined;
  const row = (await pool.query<LastRunRow>(sql.lastFinished(window.name, at))).rows[0];
  if (!row) return heldPolicy(window.policy, undefined, pooled, settings);
  let applied: Policy;
  try {
    applied = parsePolicy(row.policy);
  } catch {
    // A run recorded by an older version with a policy this one no longer reads: start afresh.
    return heldPolicy(window.policy, undefined, pooled, settings);
  }
  const selectedShare = Number(row.candidates) > 0 ? Number(row.selected) / Number(row.candidates) : undefined;
  const last: LastRun =
    window.policy.kind === 'coverage'
      ? { policy: applied, measured: row.active_known > 0 ? row.covered / row.active_known : NaN, evidence: row.active_known }
      : { policy: applied, measured: row.ended > 0 ? row.wasted / row.ended : NaN, evidence: row.ended };
  if (selectedShare !== undefined) last.selectedShare = selectedShare;
  return heldPolicy(window.policy, last, pooled, settings);
}
