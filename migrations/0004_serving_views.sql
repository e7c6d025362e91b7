-- Up Migration

-- Coverage of each batch run (DESIGN.md "coverage"): of the known users (first login before the
-- run's window started) who log in during the window, the share that had a fresh policy set
-- from the run when they first logged in. Holdout sets do not count as covered; they are
-- reported apart.
CREATE VIEW coverage_by_run AS
WITH active AS (
  -- Per run, the logins inside its window (an index range scan each), by known users only.
  SELECT b.id AS run_id, l.user_id, min(l.at) AS first_at
    FROM batch_runs b
    CROSS JOIN LATERAL (SELECT user_id, at FROM logins WHERE at >= b.scheduled_for AND at < b.expires_at) l
    JOIN user_activity ua ON ua.user_id = l.user_id AND ua.first_login_at < b.scheduled_for
   GROUP BY b.id, l.user_id
), judged AS (
  SELECT a.run_id, a.user_id, r.holdout
    FROM active a
    LEFT JOIN LATERAL (
      SELECT r.holdout FROM recommendations r
       WHERE r.run_id = a.run_id AND r.user_id = a.user_id AND r.computed_at <= a.first_at
       LIMIT 1
    ) r ON true
)
SELECT b.id AS run_id, b.window_name, b.scheduled_for, b.expires_at,
       count(j.user_id) AS active_known,
       count(j.user_id) FILTER (WHERE j.holdout = false) AS covered,
       (count(j.user_id) FILTER (WHERE j.holdout = false))::double precision / nullif(count(j.user_id), 0) AS coverage,
       count(j.user_id) FILTER (WHERE j.holdout) AS holdout_hits
  FROM batch_runs b
  LEFT JOIN judged j ON j.run_id = b.id
 GROUP BY b.id;

CREATE VIEW coverage_by_day AS
SELECT (scheduled_for AT TIME ZONE 'UTC')::date AS day, window_name,
       sum(active_known) AS active_known, sum(covered) AS covered,
       sum(covered)::double precision / nullif(sum(active_known), 0) AS coverage
  FROM coverage_by_run
 GROUP BY 1, 2;

-- Share of all logins (new users included) answered from a precomputed set.
CREATE VIEW login_coverage_by_day AS
SELECT (at AT TIME ZONE 'UTC')::date AS day,
       count(*) AS logins,
       count(*) FILTER (WHERE source = 'precomputed') AS precomputed,
       count(*) FILTER (WHERE source = 'reused') AS reused,
       count(*) FILTER (WHERE source = 'on_demand') AS on_demand,
       count(*) FILTER (WHERE source = 'fallback') AS fallback,
       (count(*) FILTER (WHERE source = 'precomputed'))::double precision / count(*) AS login_coverage
  FROM serves
 GROUP BY 1;

-- Age of what was served, per UTC day and source (fallback answers have no age).
CREATE VIEW staleness_by_day AS
SELECT (at AT TIME ZONE 'UTC')::date AS day, source, count(*) AS serves,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY staleness_ms) AS staleness_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY staleness_ms) AS staleness_p95_ms,
       max(staleness_ms) AS staleness_max_ms
  FROM serves
 WHERE staleness_ms IS NOT NULL
 GROUP BY 1, 2;

CREATE VIEW latency_by_day AS
SELECT (at AT TIME ZONE 'UTC')::date AS day, source, count(*) AS serves,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS latency_p99_ms,
       max(latency_ms) AS latency_max_ms
  FROM serves
 GROUP BY 1, 2;

-- Calibration of the propensities the planner used: predicted vs actual login rate by decile.
CREATE VIEW calibration_by_decile AS
WITH scored AS (
  SELECT p.run_id, p.user_id, p.p, ntile(10) OVER (ORDER BY p.p) AS decile,
         EXISTS (SELECT 1 FROM logins l WHERE l.user_id = p.user_id AND l.at >= b.scheduled_for AND l.at < b.expires_at) AS logged_in
    FROM predictions p
    JOIN batch_runs b ON b.id = p.run_id
   WHERE b.expires_at <= now()
)
SELECT decile, count(*) AS predictions, avg(p) AS mean_predicted,
       avg(CASE WHEN logged_in THEN 1 ELSE 0 END) AS actual_rate
  FROM scored
 GROUP BY decile;

-- Down Migration
DROP VIEW calibration_by_decile;
DROP VIEW latency_by_day;
DROP VIEW staleness_by_day;
DROP VIEW login_coverage_by_day;
DROP VIEW coverage_by_day;
DROP VIEW coverage_by_run;
