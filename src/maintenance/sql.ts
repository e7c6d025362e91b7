import { quoteIdent } from '../db/migrate.ts';
import type { Sql } from '../db/pool.ts';

/**
 * All SQL of partition maintenance. Values are parameters; the only names spliced into text are
 * the four partitioned tables, their key columns and partition names built from a table and a
 * date, always through quoteIdent / quoteTimestamp (DDL takes no parameters).
 */

/** A partition bound: the instant as an ISO literal, nothing else can reach the text. */
export function quoteTimestamp(at: Date): string {
  return `'${at.toISOString()}'`;
}

export const maintenanceSql = {
  // One lock per schema: deployments (and test files) sharing a database do not skip each
  // other's passes, which take minutes on a large history.
  tryLock: `SELECT pg_try_advisory_lock(hashtextextended(current_schema() || ':' || $1::text, 0)) AS ok`,
  unlock: `SELECT pg_advisory_unlock(hashtextextended(current_schema() || ':' || $1::text, 0))`,
  lockTimeout: (ms: number) => `SET LOCAL lock_timeout = ${Math.max(1, Math.floor(ms))}`,
  /** The partitions of a table in the session's schema: name and bounds (NULL from: MINVALUE). */
  partitions(table: string): Sql {
    return {
      text: `SELECT c.relname AS name,
                    b.bound = 'DEFAULT' AS is_default,
                    CASE WHEN m.v[1] = 'MINVALUE' THEN NULL ELSE trim(both '''' FROM m.v[1])::timestamptz END AS from_at,
                    CASE WHEN m.v[2] = 'MAXVALUE' THEN NULL ELSE trim(both '''' FROM m.v[2])::timestamptz END AS to_at
               FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS bound) b
               LEFT JOIN LATERAL (SELECT regexp_match(b.bound, '^FOR VALUES FROM \\((.*)\\) TO \\((.*)\\)$') AS v) m ON true
              WHERE i.inhparent = to_regclass($1)
              ORDER BY from_at NULLS FIRST`,
      values: [table],
    };
  },
  /** Rows of the default partition per period (UTC), to be moved into partitions of their own. */
  defaultRows(table: string, key: string, period: 'day' | 'month'): Sql {
    return {
      text: `SELECT date_trunc($1, ${quoteIdent(key)} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS cell, count(*)::int AS n
               FROM ${quoteIdent(`${table}_default`)} GROUP BY 1 ORDER BY 1`,
      values: [period],
    };
  },
  createMoving: (table: string) => `CREATE TEMP TABLE prewarm_moving (LIKE ${quoteIdent(table)}) ON COMMIT DROP`,
  takeFromDefault(table: string, key: string, from: Date, to: Date): Sql {
    return {
      text: `WITH moved AS (DELETE FROM ${quoteIdent(`${table}_default`)} WHERE ${quoteIdent(key)} >= $1 AND ${quoteIdent(key)} < $2 RETURNING *)
             INSERT INTO prewarm_moving SELECT * FROM moved`,
      values: [from.toISOString(), to.toISOString()],
    };
  },
  createPartition: (table: string, partition: string, from: Date, to: Date) =>
    `CREATE TABLE ${quoteIdent(partition)} PARTITION OF ${quoteIdent(table)} FOR VALUES FROM (${quoteTimestamp(from)}) TO (${quoteTimestamp(to)})`,
  putBack: (table: string) => `INSERT INTO ${quoteIdent(table)} SELECT * FROM prewarm_moving`,
  dropPartition: (partition: string) => `DROP TABLE ${quoteIdent(partition)}`,
  /**
   * Why an expired recommendations partition must stay: a set in it is still fresh (it may be
   * served), or belongs to a run that is not finished.
   */
  recommendationsNeeded(partition: string, now: Date): Sql {
    return {
      text: `SELECT EXISTS (SELECT 1 FROM ${quoteIdent(partition)} WHERE expires_at > $1) AS fresh,
                    EXISTS (SELECT 1 FROM batch_runs b
                             WHERE b.status IN ('planning', 'running')
                               AND EXISTS (SELECT 1 FROM ${quoteIdent(partition)} r WHERE r.run_id = b.id)) AS unfinished`,
      values: [now.toISOString()],
    };
  },
  /**
   * Why an expired predictions partition must stay: it holds the plan of a run that is not
   * finished (lost chunks are rebuilt from it) or whose window has not ended (calibration).
   */
  predictionsNeeded(partition: string, now: Date): Sql {
    return {
      text: `SELECT false AS fresh,
                    EXISTS (SELECT 1 FROM batch_runs b
                             WHERE (b.status IN ('planning', 'running') OR b.expires_at > $1)
                               AND EXISTS (SELECT 1 FROM ${quoteIdent(partition)} p WHERE p.run_id = b.id)) AS unfinished`,
      values: [now.toISOString()],
    };
  },
  servesRolledThrough: `SELECT rolled_through::text AS day FROM rollup_progress WHERE name = 'serves_daily'`,
  firstServeDay: `SELECT ((min(at) AT TIME ZONE 'UTC')::date)::text AS day FROM serves`,
  /** The closed days [from, to) of serves into serves_daily; a day rolled again is overwritten. */
  rollupServes(from: string, to: string): Sql {
    return {
      text: `INSERT INTO serves_daily (day, source, serves, staleness_serves, staleness_p50_ms, staleness_p95_ms, staleness_max_ms,
                                       latency_p50_ms, latency_p99_ms, latency_max_ms)
             SELECT (at AT TIME ZONE 'UTC')::date, source, count(*), count(staleness_ms),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY staleness_ms),
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY staleness_ms),
                    max(staleness_ms),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms),
                    max(latency_ms)
               FROM serves
              WHERE at >= $1::date::timestamp AT TIME ZONE 'UTC' AND at < $2::date::timestamp AT TIME ZONE 'UTC'
              GROUP BY 1, 2
             ON CONFLICT (day, source) DO UPDATE SET
               serves = EXCLUDED.serves, staleness_serves = EXCLUDED.staleness_serves,
               staleness_p50_ms = EXCLUDED.staleness_p50_ms, staleness_p95_ms = EXCLUDED.staleness_p95_ms,
               staleness_max_ms = EXCLUDED.staleness_max_ms, latency_p50_ms = EXCLUDED.latency_p50_ms,
               latency_p99_ms = EXCLUDED.latency_p99_ms, latency_max_ms = EXCLUDED.latency_max_ms`,
      values: [from, to],
    };
  },
  setServesRolledThrough(day: string): Sql {
    return {
      text: `INSERT INTO rollup_progress (name, rolled_through) VALUES ('serves_daily', $1)
             ON CONFLICT (name) DO UPDATE SET rolled_through = greatest(rollup_progress.rolled_through, EXCLUDED.rolled_through)`,
      values: [day],
    };
  },
};

/** A UTC day (YYYY-MM-DD, a parameter) as the instant it starts. */
const dayStart = (param: string) => `(${param}::date::timestamp AT TIME ZONE 'UTC')`;

/**
 * The rollups of migrations/0011 (src/maintenance/rollups.ts). Each fill computes exactly what
 * the view's raw part computes for the same days or runs; a day range filled again is replaced.
 */
export const rollupSql = {
  dbNow: `SELECT now() AS now, to_regclass('waste_runs') IS NOT NULL AS migrated,
                 to_regprocedure('coverage_of_runs(bigint[])') IS NOT NULL AS coverage_function`,
  rolledThrough: (name: string): Sql => ({ text: 'SELECT rolled_through::text AS day FROM rollup_progress WHERE name = $1', values: [name] }),
  setRolledThrough(name: string, day: string): Sql {
    return {
      text: `INSERT INTO rollup_progress (name, rolled_through) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET rolled_through = greatest(rollup_progress.rolled_through, EXCLUDED.rolled_through)`,
      values: [name, day],
    };
  },
  /**
   * Where the serve counts are taken from: the earliest set whose life had not ended by $1 (no
   * later than $1). The sets computed since are counted again; those before are settled.
   */
  serveCountsFrom(settledBefore: Date): Sql {
    return {
      text: 'SELECT least($1::timestamptz, min(computed_at)) AS from_at FROM recommendations WHERE expires_at >= $1',
      values: [settledBefore.toISOString()],
    };
  },
  /**
   * Each set computed at or after $1 gets its serve count and first serve from `serves` (all its
   * serves are at or after it). Only rows that change are written.
   */
  fillServeCounts(from: Date | 'everything'): Sql {
    return {
      text: `UPDATE recommendations r SET first_served_at = c.first_at, serve_count = c.n
               FROM (SELECT s.recommendation_id AS id, min(s.at) AS first_at, count(*)::int AS n
                       FROM serves s
                      WHERE s.at >= $1 AND s.recommendation_id IS NOT NULL
                      GROUP BY s.recommendation_id) c
              WHERE r.computed_at >= $1 AND r.id = c.id
                AND (r.first_served_at IS DISTINCT FROM c.first_at OR r.serve_count IS DISTINCT FROM c.n)`,
      values: [from === 'everything' ? '-infinity' : from.toISOString()],
    };
  },
  /** The first day a set was computed (no life ends before it). A scan: only before the first fill. */
  firstSetDay: `SELECT ((min(computed_at) AT TIME ZONE 'UTC')::date)::text AS day FROM recommendations`,
  /** The first day holding a set not expired by $1: cost_daily may not roll it up yet. */
  firstOpenCostDay(cutoff: Date): Sql {
    return { text: `SELECT ((min(computed_at) AT TIME ZONE 'UTC')::date)::text AS day FROM recommendations WHERE expires_at > $1`, values: [cutoff.toISOString()] };
  },
  clearWasteDaily: (from: string, to: string): Sql => ({ text: 'DELETE FROM waste_daily WHERE day >= $1 AND day < $2', values: [from, to] }),
  fillWasteDaily(from: string, to: string): Sql {
    return {
      text: `INSERT INTO waste_daily (day, window_name, ended, wasted, wasted_compute_ms, holdout_ended, holdout_wasted)
             SELECT (l.life_ended_at AT TIME ZONE 'UTC')::date, l.window_name,
                    count(*) FILTER (WHERE NOT l.holdout),
                    count(*) FILTER (WHERE NOT l.holdout AND l.wasted),
                    coalesce(sum(l.compute_ms::float8) FILTER (WHERE NOT l.holdout AND l.wasted), 0)::real,
                    count(*) FILTER (WHERE l.holdout),
                    count(*) FILTER (WHERE l.holdout AND l.wasted)
               FROM recommendation_life_since(${dayStart('$1')}) l
              WHERE l.source = 'batch' AND l.ended AND l.life_ended_at < ${dayStart('$2')}
              GROUP BY 1, 2`,
      values: [from, to],
    };
  },
  clearCostDaily: (from: string, to: string): Sql => ({ text: 'DELETE FROM cost_daily WHERE day >= $1 AND day < $2', values: [from, to] }),
  fillCostDaily(from: string, to: string): Sql {
    return {
      text: `INSERT INTO cost_daily (day, batch_sets, batch_compute_ms, batch_wasted_compute_ms, holdout_compute_ms, on_demand_sets,
                                     on_demand_compute_ms, total_compute_ms)
             SELECT (l.computed_at AT TIME ZONE 'UTC')::date,
                    count(*) FILTER (WHERE l.source = 'batch'),
                    coalesce(sum(l.compute_ms::float8) FILTER (WHERE l.source = 'batch'), 0)::real,
                    coalesce(sum(l.compute_ms::float8) FILTER (WHERE l.source = 'batch' AND l.wasted), 0)::real,
                    coalesce(sum(l.compute_ms::float8) FILTER (WHERE l.source = 'batch' AND l.holdout), 0)::real,
                    count(*) FILTER (WHERE l.source = 'on_demand'),
                    coalesce(sum(l.compute_ms::float8) FILTER (WHERE l.source = 'on_demand'), 0)::real,
                    coalesce(sum(l.compute_ms::float8), 0)::real
               FROM recommendation_life_since(${dayStart('$1')}) l
              WHERE l.computed_at >= ${dayStart('$1')} AND l.computed_at < ${dayStart('$2')}
              GROUP BY 1`,
      values: [from, to],
    };
  },
  /**
   * Runs whose waste is final by $1 (finished, every set expired) and not rolled up yet, the
   * oldest $2 of them.
   */
  finalWasteRuns(cutoff: Date, limit: number): Sql {
    return {
      text: `SELECT b.id::int AS id, b.scheduled_for FROM batch_runs b
              WHERE b.status IN ('completed', 'failed') AND b.expires_at <= $1
                AND NOT EXISTS (SELECT 1 FROM waste_runs w WHERE w.run_id = b.id)
                AND NOT EXISTS (SELECT 1 FROM recommendations r WHERE r.run_id = b.id AND r.expires_at > $1)
              ORDER BY b.scheduled_for, b.id LIMIT $2`,
      values: [cutoff.toISOString(), limit],
    };
  },
  fillWasteRuns(runIds: number[]): Sql {
    return {
      text: `WITH runs AS (SELECT b.id, least(b.scheduled_for, b.started_at) AS start FROM batch_runs b WHERE b.id = ANY($1::bigint[])),
             life AS (
               SELECT l.* FROM recommendation_life_since((SELECT min(start) FROM runs), $1::bigint[]) l
                WHERE l.source = 'batch'
             )
             INSERT INTO waste_runs (run_id, precomputes, ended, served, wasted, compute_ms, wasted_compute_ms,
                                     holdout_precomputes, holdout_ended, holdout_wasted)
             SELECT r.id,
                    count(l.id) FILTER (WHERE NOT l.holdout),
                    count(l.id) FILTER (WHERE NOT l.holdout AND l.ended),
                    count(l.id) FILTER (WHERE NOT l.holdout AND l.served),
                    count(l.id) FILTER (WHERE NOT l.holdout AND l.wasted),
                    coalesce(sum(l.compute_ms::float8) FILTER (WHERE NOT l.holdout), 0)::real,
                    coalesce(sum(l.compute_ms::float8) FILTER (WHERE NOT l.holdout AND l.wasted), 0)::real,
                    count(l.id) FILTER (WHERE l.holdout),
                    count(l.id) FILTER (WHERE l.holdout AND l.ended),
                    count(l.id) FILTER (WHERE l.holdout AND l.wasted)
               FROM runs r LEFT JOIN life l ON l.run_id = r.id
              GROUP BY r.id
             ON CONFLICT (run_id) DO NOTHING`,
      values: [runIds],
    };
  },
  /** Runs whose coverage is final by $1 (finished, window over) and not rolled up yet, the oldest $2. */
  finalCoverageRuns(cutoff: Date, limit: number): Sql {
    return {
      text: `SELECT b.id::int AS id, b.scheduled_for FROM batch_runs b
              WHERE b.status IN ('completed', 'failed') AND b.expires_at <= $1
                AND NOT EXISTS (SELECT 1 FROM coverage_runs c WHERE c.run_id = b.id)
              ORDER BY b.scheduled_for, b.id LIMIT $2`,
      values: [cutoff.toISOString(), limit],
    };
  },
  /** coverage_by_run's raw computation (its raw part in migrations/0011) for the given runs. */
  /**
   * The runs' coverage as coverage_by_run's raw part computes it (its function, migrations/0014
   * and 0018): the rollup and the view cannot disagree.
   */
  fillCoverageRuns(runIds: number[]): Sql {
    return {
      text: `INSERT INTO coverage_runs (run_id, active_known, covered, holdout_hits)
             SELECT run_id, active_known, covered, holdout_hits FROM coverage_of_runs($1::bigint[])
             ON CONFLICT (run_id) DO NOTHING`,
      values: [runIds],
    };
  },
  /** The same for a schema before migration 0014 (no function yet): the tests of older migrations. */
  fillCoverageRunsBefore0014(runIds: number[]): Sql {
    return {
      text: `WITH runs AS (SELECT b.* FROM batch_runs b WHERE b.id = ANY($1::bigint[])),
             active AS (
               SELECT b.id AS run_id, l.user_id, min(l.at) AS first_at
                 FROM runs b
                 CROSS JOIN LATERAL (SELECT user_id, at FROM logins WHERE at >= b.scheduled_for AND at < b.expires_at) l
                 JOIN user_activity ua ON ua.user_id = l.user_id AND ua.first_login_at < b.scheduled_for
                GROUP BY b.id, l.user_id
             ), judged AS (
               SELECT DISTINCT ON (a.run_id, a.user_id) a.run_id, a.user_id, r.holdout
                 FROM active a
                 LEFT JOIN (SELECT r.run_id, r.user_id, r.computed_at, r.holdout FROM recommendations r
                             WHERE r.run_id = ANY($1::bigint[])) r
                   ON r.run_id = a.run_id AND r.user_id = a.user_id AND r.computed_at <= a.first_at
                ORDER BY a.run_id, a.user_id, r.holdout
             )
             INSERT INTO coverage_runs (run_id, active_known, covered, holdout_hits)
             SELECT b.id, count(j.user_id), count(j.user_id) FILTER (WHERE j.holdout = false), count(j.user_id) FILTER (WHERE j.holdout)
               FROM runs b LEFT JOIN judged j ON j.run_id = b.id
              GROUP BY b.id
             ON CONFLICT (run_id) DO NOTHING`,
      values: [runIds],
    };
  },
  /**
   * Whether calibration_snapshot no longer covers exactly the runs whose window has ended, and
   * whether the newest of those ended over `graceMs` ago (its late logins are in).
   */
  calibrationState(graceMs: number): Sql {
    return {
      text: `WITH ended AS (SELECT coalesce(array_agg(id ORDER BY id), '{}') AS runs, max(expires_at) AS newest FROM batch_runs WHERE expires_at <= now())
             SELECT NOT EXISTS (SELECT 1 FROM calibration_snapshot s, ended WHERE s.runs = ended.runs)
                    -- none ended and none stored: the view's raw part is empty
                    AND (cardinality((SELECT runs FROM ended)) > 0 OR EXISTS (SELECT 1 FROM calibration_snapshot)) AS stale,
                    coalesce((SELECT newest FROM ended) <= now() - $1 * interval '1 millisecond', true) AS settled,
                    cardinality((SELECT runs FROM ended))::int AS runs`,
      values: [graceMs],
    };
  },
  clearCalibration: 'DELETE FROM calibration_snapshot',
  /** With the snapshot cleared, the view computes from the raw tables: store what it returns. */
  fillCalibration: `INSERT INTO calibration_snapshot (runs, decile, predictions, mean_predicted, actual_rate)
                    SELECT (SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM batch_runs WHERE expires_at <= now()),
                           decile, predictions, mean_predicted, actual_rate
                      FROM calibration_by_decile`,
  /**
   * The earliest instant the raw parts of the waste, cost and coverage views still read:
   * partitions of logins, serves and recommendations ending after it are kept whatever the
   * retention. NULL: no bound.
   */
  rawHorizon: `SELECT extract(epoch FROM least(
                 (SELECT rollup_start('waste_daily')),
                 (SELECT rollup_start('cost_daily')),
                 (SELECT min(computed_at) FROM recommendations WHERE expires_at >= (SELECT rollup_start('waste_daily'))),
                 (SELECT min(least(b.scheduled_for, b.started_at)) FROM batch_runs b
                   WHERE NOT EXISTS (SELECT 1 FROM waste_runs w WHERE w.run_id = b.id)
                      OR NOT EXISTS (SELECT 1 FROM coverage_runs c WHERE c.run_id = b.id))
               ))::float8 * 1000 AS horizon_ms`,
};
