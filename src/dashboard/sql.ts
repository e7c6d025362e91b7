import type { Sql } from '../db/pool.ts';

// Every query of the dashboard and of `prewarm runs`, parameterised. Figures come from the
// documented views (README "For analysts: the views"); `windows`, `batch_runs` and
// `batch_chunks` are read for what no view holds (schedules, run progress, chunk errors).
// Counts are cast to float8 so that pg returns numbers, not bigint strings.

/** A UTC day as `YYYY-MM-DD`. */
export type Day = string;

const RUN_COLUMNS = `
  b.id::float8 AS id, b.window_name, b.scheduled_for, b.started_at, b.planned_at, b.finished_at, b.expires_at,
  b.status, b.policy, b.model_version, b.candidates, b.selected, b.holdout, b.precomputed, b.failed,
  b.chunks_total, b.chunks_done, b.compute_ms, b.error, b.expected_coverage, b.expected_waste,
  w.precomputes::float8 AS sets, w.ended::float8 AS sets_ended, w.served::float8 AS sets_served,
  w.wasted::float8 AS sets_wasted, w.waste_rate, w.wasted_compute_ms,
  c.active_known::float8 AS active_known, c.covered::float8 AS covered, c.coverage`;

export const dashboardSql = {
  windows(): Sql {
    return {
      text: `SELECT name, cron, timezone, horizon_ms::float8 AS horizon_ms, ttl_ms::float8 AS ttl_ms, policy, enabled
               FROM windows ORDER BY name`,
      values: [],
    };
  },

  /** Runs newest first, with their waste (waste_by_run) and coverage (coverage_by_run). */
  runs(window: string | null, limit: number): Sql {
    return {
      text: `SELECT ${RUN_COLUMNS}
               FROM (SELECT * FROM batch_runs WHERE ($1::text IS NULL OR window_name = $1)
                      ORDER BY scheduled_for DESC, id DESC LIMIT $2) b
               LEFT JOIN waste_by_run w ON w.run_id = b.id
               LEFT JOIN coverage_by_run c ON c.run_id = b.id
              ORDER BY b.scheduled_for DESC, b.id DESC`,
      values: [window, limit],
    };
  },

  /** The last `perWindow` runs of every window. */
  lastRunsPerWindow(perWindow: number): Sql {
    return {
      text: `SELECT ${RUN_COLUMNS}
               FROM (SELECT r.* FROM batch_runs r
                      WHERE r.id IN (SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY window_name ORDER BY scheduled_for DESC, id DESC) AS n
                                                       FROM batch_runs) ranked WHERE n <= $1)) b
               LEFT JOIN waste_by_run w ON w.run_id = b.id
               LEFT JOIN coverage_by_run c ON c.run_id = b.id
              ORDER BY b.window_name, b.scheduled_for DESC, b.id DESC`,
      values: [perWindow],
    };
  },

  run(id: number): Sql {
    return {
      text: `SELECT ${RUN_COLUMNS}
               FROM (SELECT * FROM batch_runs WHERE id = $1) b
               LEFT JOIN waste_by_run w ON w.run_id = b.id
               LEFT JOIN coverage_by_run c ON c.run_id = b.id`,
      values: [id],
    };
  },

  /** A run's chunks that failed users or recorded an error, and its chunk totals. */
  chunkFailures(runId: number, limit: number): Sql {
    return {
      text: `SELECT chunk_no, users, failed, error, done_at FROM batch_chunks
              WHERE run_id = $1 AND (failed > 0 OR error IS NOT NULL)
              ORDER BY chunk_no LIMIT $2`,
      values: [runId, limit],
    };
  },

  /**
   * One row per UTC day of [from, to]: waste (waste_by_day), coverage (coverage_by_day), logins
   * by source (login_coverage_by_day), staleness of precomputed serves (staleness_by_day), serves
   * of behind sets and missed interactions (missed_interactions_by_day), compute
   * (compute_cost_by_day) and the users the day's runs scored. `window` restricts waste, coverage
   * and users scored to that window's runs (null: every window); serves and compute belong to no
   * window.
   */
  daily(from: Day, to: Day, window: string | null = null): Sql {
    return {
      text: `WITH days AS (SELECT d::date AS day FROM generate_series($1::date, $2::date, interval '1 day') d),
             w AS (SELECT day, sum(ended)::float8 AS ended, sum(wasted)::float8 AS wasted
                     FROM waste_by_day WHERE day BETWEEN $1::date AND $2::date AND ($3::text IS NULL OR window_name = $3) GROUP BY day),
             c AS (SELECT day, sum(active_known)::float8 AS active_known, sum(covered)::float8 AS covered
                     FROM coverage_by_day WHERE day BETWEEN $1::date AND $2::date AND ($3::text IS NULL OR window_name = $3) GROUP BY day),
             l AS (SELECT day, logins::float8 AS logins, precomputed::float8 AS precomputed, reused::float8 AS reused,
                          on_demand::float8 AS on_demand, fallback::float8 AS fallback
                     FROM login_coverage_by_day WHERE day BETWEEN $1::date AND $2::date),
             s AS (SELECT day, serves::float8 AS serves, staleness_p50_ms::float8 AS p50, staleness_p95_ms::float8 AS p95
                     FROM staleness_by_day WHERE source = 'precomputed' AND day BETWEEN $1::date AND $2::date),
             m AS (SELECT day, sum(serves)::float8 AS counted_serves, sum(behind_serves)::float8 AS behind_serves,
                          max(missed_p95) FILTER (WHERE source = 'precomputed')::float8 AS missed_p95
                     FROM missed_interactions_by_day WHERE day BETWEEN $1::date AND $2::date GROUP BY day),
             k AS (SELECT day, batch_sets::float8 AS batch_sets, batch_compute_ms::float8 AS batch_ms,
                          on_demand_sets::float8 AS on_demand_sets, on_demand_compute_ms::float8 AS on_demand_ms
                     FROM compute_cost_by_day WHERE day BETWEEN $1::date AND $2::date),
             r AS (SELECT (scheduled_for AT TIME ZONE 'UTC')::date AS day, sum(candidates)::float8 AS candidates
                     FROM batch_runs WHERE scheduled_for >= $1::date AT TIME ZONE 'UTC'
                      AND scheduled_for < ($2::date + 1) AT TIME ZONE 'UTC' AND ($3::text IS NULL OR window_name = $3) GROUP BY 1)
             SELECT to_char(days.day, 'YYYY-MM-DD') AS day,
                    w.ended AS sets_ended, w.wasted AS sets_wasted, c.active_known, c.covered,
                    l.logins, l.precomputed, l.reused, l.on_demand, l.fallback,
                    s.serves AS precomputed_serves, s.p50 AS staleness_p50_ms, s.p95 AS staleness_p95_ms,
                    m.counted_serves, m.behind_serves, m.missed_p95,
                    k.batch_sets, k.batch_ms, k.on_demand_sets, k.on_demand_ms, r.candidates
               FROM days
               LEFT JOIN w USING (day) LEFT JOIN c USING (day) LEFT JOIN l USING (day)
               LEFT JOIN s USING (day) LEFT JOIN m USING (day) LEFT JOIN k USING (day) LEFT JOIN r USING (day)
              ORDER BY days.day`,
      values: [from, to, window],
    };
  },

  /** The first UTC day with a serve or a run (of `window` when given); null on an empty database. */
  firstDay(window: string | null): Sql {
    return {
      text: `SELECT to_char(least((SELECT min(at) FROM serves WHERE $1::text IS NULL),
                                  (SELECT min(scheduled_for) FROM batch_runs WHERE $1::text IS NULL OR window_name = $1)) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day`,
      values: [window],
    };
  },

  /** Whether a window of that name exists, or existed and left runs. */
  windowKnown(name: string): Sql {
    return {
      text: `SELECT EXISTS (SELECT 1 FROM windows WHERE name = $1) OR EXISTS (SELECT 1 FROM batch_runs WHERE window_name = $1) AS known`,
      values: [name],
    };
  },

  /** Latency per day and source (latency_by_day). */
  latency(from: Day, to: Day): Sql {
    return {
      text: `SELECT to_char(day, 'YYYY-MM-DD') AS day, source, serves::float8 AS serves,
                    latency_p50_ms::float8 AS p50_ms, latency_p99_ms::float8 AS p99_ms, latency_max_ms::float8 AS max_ms
               FROM latency_by_day WHERE day BETWEEN $1::date AND $2::date ORDER BY day, source`,
      values: [from, to],
    };
  },

  /** The newest propensity model's reliability table (propensity_model_reliability). */
  latestModelReliability(): Sql {
    return {
      text: `SELECT version, trained_at, decile, count::float8 AS count, mean_predicted, observed_rate
               FROM propensity_model_reliability
              WHERE version = (SELECT version FROM propensity_models ORDER BY trained_at DESC, version DESC LIMIT 1)
              ORDER BY decile`,
      values: [],
    };
  },
};
