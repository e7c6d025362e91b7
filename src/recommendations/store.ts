import type { Queryable, Sql } from '../db/pool.ts';
import type { ScoredItem } from '../recommender/types.ts';
import type { RecommendationSet } from './set.ts';

// All SQL of the recommendations table lives here.
const sql = {
  insertMany(sets: readonly RecommendationSet[]): Sql {
    return {
      text: `INSERT INTO recommendations
               (id, user_id, source, run_id, holdout, computed_at, expires_at, items, model_version, compute_ms)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::boolean[],
                                  $6::timestamptz[], $7::timestamptz[], $8::jsonb[], $9::text[], $10::real[])
             ON CONFLICT DO NOTHING
             RETURNING id`,
      values: [
        sets.map((s) => s.id),
        sets.map((s) => s.userId),
        sets.map((s) => s.source),
        sets.map((s) => s.runId),
        sets.map((s) => s.holdout),
        sets.map((s) => s.computedAt.toISOString()),
        sets.map((s) => s.expiresAt.toISOString()),
        sets.map((s) => JSON.stringify(s.items)),
        sets.map((s) => s.modelVersion),
        sets.map((s) => s.computeMs),
      ],
    };
  },
  findFresh(userId: string, at: Date): Sql {
    // Newest fresh set wins: a batch set computed after an on-demand one replaces it.
    return {
      text: `SELECT id, user_id, source, run_id, holdout, computed_at, expires_at, items, model_version, compute_ms
               FROM recommendations
              WHERE user_id = $1 AND computed_at <= $2 AND expires_at > $2
              ORDER BY computed_at DESC
              LIMIT 1`,
      values: [userId, at.toISOString()],
    };
  },
};

interface SetRow {
  id: string;
  user_id: string;
  source: 'batch' | 'on_demand';
  run_id: number | null;
  holdout: boolean;
  computed_at: Date;
  expires_at: Date;
  items: ScoredItem[];
  model_version: string;
  compute_ms: number;
}

function toSet(row: SetRow): RecommendationSet {
  return {
    id: row.id,
    userId: row.user_id,
    source: row.source,
    runId: row.run_id,
    holdout: row.holdout,
    computedAt: row.computed_at,
    expiresAt: row.expires_at,
    items: row.items,
    modelVersion: row.model_version,
    computeMs: row.compute_ms,
  };
}

export interface RecommendationStore {
  /** Writes sets in one statement; ids already present are skipped. Returns the ids inserted. */
  insertMany(db: Queryable, sets: readonly RecommendationSet[]): Promise<Set<string>>;
  /** The newest set for the user that is fresh at `at`, if any. */
  findFresh(userId: string, at: Date): Promise<RecommendationSet | undefined>;
}

export function createRecommendationStore({ pool }: { pool: Queryable }): RecommendationStore {
  return {
    async insertMany(db, sets) {
      if (sets.length === 0) return new Set();
      const result = await db.query<{ id: string }>(sql.insertMany(sets));
      return new Set(result.rows.map((row) => row.id));
    },
    async findFresh(userId, at) {
      const result = await pool.query<SetRow>(sql.findFresh(userId, at));
      return result.rows[0] ? toSet(result.rows[0]) : undefined;
    },
  };
}
