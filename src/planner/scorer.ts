import type { Candidate } from './policy.ts';

/**
 * Gives every known user a probability of logging in during a window. The planner depends only
 * on this interface: a recency rule stands in until a trained propensity model is available.
 */
export interface PropensityScorer {
  /** Stored with each batch run (`batch_runs.model_version`). */
  readonly version: string;
  /**
   * Scores every known user (first login before `windowStart`) for the window
   * [windowStart, windowStart + horizonMs), using only logins before `windowStart`.
   */
  scoreKnownUsers(windowStart: Date, horizonMs: number): Promise<Candidate[]>;
}
