import type { Pool, Queryable, Sql } from '../db/pool.ts';
import type { Candidate } from '../planner/policy.ts';
import { emptyBatch, type PropensityScorer, type ScoredBatch, type StreamingScorer } from '../planner/scorer.ts';
import { copyRows, shardFilter, sqlLiteral } from './copy-rows.ts';

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
    return { text: activityBeforeText('$1'), values: [before.toISOString()] };
  },
  /** One shard of `activityBefore`, as numbers (epoch ms, count) for a binary COPY. */
  copyShard(before: Date, shard: { index: number; count: number }): string {
    const at = `${sqlLiteral(before.toISOString())}::timestamptz`;
    return `SELECT user_id, (extract(epoch FROM first_login_at) * 1000)::float8, (extract(epoch FROM last_login_at) * 1000)::float8, login_count::float8
              FROM (${activityBeforeText(at)}) a WHERE ${shardFilter('user_id', shard)}`;
  },
};

// Only users known before the instant are candidates (known_since, migration 0010; README,
// "Known users"): an id only ever answered unknown_user is recorded, never precomputed for.
function activityBeforeText(before: string): string {
  return `SELECT user_id, first_login_at, last_login_at, login_count
            FROM user_activity
           WHERE last_login_at < ${before} AND known_since < ${before}
          UNION ALL
          SELECT l.user_id, min(l.at), max(l.at), count(*)
            FROM user_activity a
            JOIN logins l ON l.user_id = a.user_id AND l.at < ${before}
           WHERE a.first_login_at < ${before} AND a.last_login_at >= ${before} AND a.known_since < ${before}
           GROUP BY l.user_id`;
}

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

/** The recency rule, shard by shard, by binary COPY (one scan of user_activity per shard). */
export function recencyStreaming(pool: Pool): StreamingScorer {
  return {
    prepare: async () => ({ version: RECENCY_SCORER_VERSION }),
    population: async () => null,
    mergePopulation: () => null,
    async *scoreShard(request) {
      const start = request.windowStart.getTime();
      const { horizonMs, batchSize } = request;
      let batch = emptyBatch(batchSize);
      const full: ScoredBatch[] = [];
      const onRow = (buffer: Buffer, offsets: Int32Array, lengths: Int32Array) => {
        const first = buffer.readDoubleBE(offsets[1] as number);
        const last = buffer.readDoubleBE(offsets[2] as number);
        const count = buffer.readDoubleBE(offsets[3] as number);
        batch.userIds.push(buffer.toString('utf8', offsets[0] as number, (offsets[0] as number) + (lengths[0] as number)));
        batch.p[batch.size] = recencyScore({ firstLoginAt: first, lastLoginAt: last, loginCount: count }, start, horizonMs);
        batch.lastLoginAt[batch.size] = last;
        if (++batch.size === batchSize) {
          full.push(batch);
          batch = emptyBatch(batchSize);
        }
      };
      yield* copyRows(pool, scoringSql.copyShard(request.windowStart, request.shard), 4, onRow, () => full.shift());
      if (batch.size > 0) yield batch;
    },
  };
}

/** A PropensityScorer from login recency and frequency alone (no model). */
export function createRecencyScorer({ pool }: { pool: Queryable }): PropensityScorer {
  return {
    version: RECENCY_SCORER_VERSION,
    // Streams when given a pool (COPY needs a connection of its own).
    ...('connect' in pool ? { streaming: recencyStreaming(pool as Pool) } : {}),
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
