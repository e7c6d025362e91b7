import type { Queryable, Sql } from '../db/pool.ts';
import type { Candidate } from '../planner/policy.ts';
import type { PropensityScorer } from '../planner/scorer.ts';

export const RECENCY_SCORER_VERSION = 'recency-v1';

export interface ActivityRow {
  user_id: string;
  first_login_at: Date;
  last_login_at: Date;
  login_count: number;
}

export const scoringSql = {
  /**
   * Activity of every known user (first login before `before`) as it stood at `before`.
   * user_activity is current, so users with logins at or after `before` (a replay, or a run
   * planned late) are re-aggregated from `logins`; everyone else is one scan of user_activity.
   */
  activityBefore(before: Date): Sql {
    return {
      text: `SELECT user_id, first_login_at, last_login_at, login_count
               FROM user_activity
              WHERE last_login_at < $1
             UNION ALL
             SELECT l.user_id, min(l.at), max(l.at), count(*)
               FROM user_activity a
               JOIN logins l ON l.user_id = a.user_id AND l.at < $1
              WHERE a.first_login_at < $1 AND a.last_login_at >= $1
              GROUP BY l.user_id`,
      values: [before.toISOString()],
    };
  },
};

/**
 * The score of one user: the chance of at least one login in a horizon at the user's long-run
 * rate, damped by how long ago the last login was, measured in horizons.
 *
 *   rate      = logins / max(horizon, windowStart − first login)    (logins per horizon × horizon)
 *   frequency = 1 − exp(−rate · horizon)
 *   recency   = 1 / (1 + max(0, gap / horizon − 1))                 (1 while the gap ≤ one horizon)
 *   p         = frequency · recency
 *
 * Not calibrated: a stand-in that ranks sensibly (recent, frequent users first) until the trained
 * propensity model replaces it behind the same interface.
 */
export function recencyScore(activity: { firstLoginAt: number; lastLoginAt: number; loginCount: number }, windowStart: number, horizonMs: number): number {
  const tenure = Math.max(horizonMs, windowStart - activity.firstLoginAt);
  const perHorizon = (activity.loginCount * horizonMs) / tenure;
  const frequency = 1 - Math.exp(-perHorizon);
  const gapHorizons = Math.max(0, windowStart - activity.lastLoginAt) / horizonMs;
  const recency = 1 / (1 + Math.max(0, gapHorizons - 1));
  return Math.min(1, Math.max(0, frequency * recency));
}

/** A PropensityScorer from login recency and frequency alone (no model). */
export function createRecencyScorer({ pool }: { pool: Queryable }): PropensityScorer {
  return {
    version: RECENCY_SCORER_VERSION,
    async scoreKnownUsers(windowStart, horizonMs) {
      const start = windowStart.getTime();
      const result = await pool.query<ActivityRow>(scoringSql.activityBefore(windowStart));
      const candidates: Candidate[] = new Array(result.rows.length);
      for (let i = 0; i < result.rows.length; i++) {
        const row = result.rows[i] as ActivityRow;
        const lastLoginAt = row.last_login_at.getTime();
        candidates[i] = {
          userId: row.user_id,
          p: recencyScore({ firstLoginAt: row.first_login_at.getTime(), lastLoginAt, loginCount: row.login_count }, start, horizonMs),
          lastLoginAt,
        };
      }
      return candidates;
    },
  };
}
