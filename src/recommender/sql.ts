import type { Sql } from '../db/pool.ts';

// Every SQL statement of the recommender module, parameterised. Item ids are ordered with
// COLLATE "C" (byte order) so that Postgres breaks ties exactly as JavaScript's `<` on
// strings does, whatever the database's collation.

/** Summed weight per (user, item) before `until`: the trainer's input, one row per pair. */
export function userItemWeightsBefore(until: Date): Sql {
  return {
    text: `SELECT user_id, item_id, sum(weight::float8) AS weight
             FROM interactions
            WHERE at < $1
            GROUP BY user_id, item_id`,
    values: [until],
  };
}

/** The histories of a chunk of users before `at`, in one query (PK (user_id, at, …) serves it). */
export function historiesBefore(userIds: readonly string[], at: Date): Sql {
  return {
    text: `SELECT user_id, item_id, sum(weight::float8) AS weight
             FROM interactions
            WHERE user_id = ANY($1::text[]) AND at < $2
            GROUP BY user_id, item_id`,
    values: [userIds, at],
  };
}

/** Items by distinct users before `at`, with the number of distinct users overall. */
export function popularBefore(at: Date, limit: number): Sql {
  return {
    text: `WITH seen AS (
             SELECT item_id, user_id FROM interactions WHERE at < $1 GROUP BY item_id, user_id
           )
           SELECT item_id, count(*) AS users, (SELECT count(DISTINCT user_id) FROM seen) AS total
             FROM seen
            GROUP BY item_id
            ORDER BY users DESC, item_id COLLATE "C"
            LIMIT $2`,
    values: [at, limit],
  };
}

export function upsertModel(row: {
  version: string;
  kind: string;
  dataUntil: Date;
  params: unknown;
  stats: unknown;
  model: unknown;
}): Sql {
  // A retrain on the same data with the same parameters yields the same version (the version
  // holds a content hash): it becomes the newest again instead of failing on the key.
  return {
    text: `INSERT INTO recommender_models (version, kind, data_until, params, stats, model)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (version) DO UPDATE
             SET trained_at = now(), stats = EXCLUDED.stats`,
    values: [row.version, row.kind, row.dataUntil, JSON.stringify(row.params), JSON.stringify(row.stats), JSON.stringify(row.model)],
  };
}

/** Newest model of a kind, by training time: a cheap poll (index on trained_at). */
export function latestModelVersion(kind: string): Sql {
  return {
    text: `SELECT version FROM recommender_models WHERE kind = $1 ORDER BY trained_at DESC, version DESC LIMIT 1`,
    values: [kind],
  };
}

export function modelByVersion(version: string): Sql {
  return {
    text: `SELECT version, kind, data_until, params, stats, model FROM recommender_models WHERE version = $1`,
    values: [version],
  };
}
