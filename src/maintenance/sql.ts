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
  tryLock: 'SELECT pg_try_advisory_lock($1) AS ok',
  unlock: 'SELECT pg_advisory_unlock($1)',
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
