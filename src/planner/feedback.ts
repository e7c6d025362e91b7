import type { Pool } from '../db/pool.ts';
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
 * a run that measured a handful of users moves the target little. The applied target is recorded
 * as the run's policy (`coverage:0.8412`), which makes the controller's state the run history
 * itself: nothing else to store, and a re-plan or another replica computes the same target.
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
}

export const DEFAULT_FEEDBACK: FeedbackSettings = { gain: 0.5, evidenceHalf: 150, maxStep: 0.05, maxOffset: 0.3 };

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
 * The policy a run applies: a held policy's target moved by the last finished run's outcome; any
 * other policy (and `,fixed`) as it is. `last` counts only when that run applied the same kind of
 * policy (an operator who switched from waste to coverage starts again from the goal).
 */
export function heldPolicy(policy: Policy, last: { policy: Policy; measured: number; evidence: number } | undefined, settings?: FeedbackSettings): Policy {
  if (!isHeld(policy)) return policy;
  const outcome =
    last && last.policy.kind === policy.kind ? { applied: goalOf(last.policy as HeldPolicy), measured: last.measured, evidence: last.evidence } : undefined;
  return applying(policy, nextTarget(goalOf(policy), outcome, settings));
}

/**
 * The controller as a loop over windows, for the offline walk (`evaluate --online`): `policy()`
 * before a window's selection, `observe()` once its outcome is known.
 */
export function createController(policy: Policy, settings?: FeedbackSettings) {
  let last: { policy: Policy; measured: number; evidence: number } | undefined;
  let current = heldPolicy(policy, undefined, settings);
  return {
    policy: (): Policy => current,
    observe(outcome: { selected: number; hits: number; activeKnown: number }): void {
      if (!isHeld(policy)) return;
      last =
        policy.kind === 'coverage'
          ? { policy: current, measured: outcome.activeKnown > 0 ? outcome.hits / outcome.activeKnown : NaN, evidence: outcome.activeKnown }
          : { policy: current, measured: outcome.selected > 0 ? 1 - outcome.hits / outcome.selected : NaN, evidence: outcome.selected };
      current = heldPolicy(policy, last, settings);
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
 * run whose horizon is over (read from the views). Model-free and `,fixed` policies come back
 * unchanged without a query.
 */
export async function resolveHeldPolicy(pool: Pool, window: { name: string; policy: Policy }, at: Date, settings?: FeedbackSettings): Promise<Policy> {
  if (!isHeld(window.policy)) return window.policy;
  const row = (await pool.query<LastRunRow>(sql.lastFinished(window.name, at))).rows[0];
  if (!row) return heldPolicy(window.policy, undefined, settings);
  let applied: Policy;
  try {
    applied = parsePolicy(row.policy);
  } catch {
    // A run recorded by an older version with a policy this one no longer reads: start afresh.
    return heldPolicy(window.policy, undefined, settings);
  }
  const last =
    window.policy.kind === 'coverage'
      ? { policy: applied, measured: row.active_known > 0 ? row.covered / row.active_known : NaN, evidence: row.active_known }
      : { policy: applied, measured: row.ended > 0 ? row.wasted / row.ended : NaN, evidence: row.ended };
  return heldPolicy(window.policy, last, settings);
}
