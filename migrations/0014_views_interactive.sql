-- Up Migration

-- The analysts' views interactive at 1M users (issue 13 item 6). After 0011 the views read
-- rollups for what is final, yet at 1M users and 30 days the waste views took 30–50 s,
-- coverage_by_run 5–10 s and calibration_by_decile 6.6 s while reading a 10-row snapshot.
-- EXPLAIN showed why: the plan of a view's raw part is estimated at millions of cost units, so
-- Postgres JIT-compiles it (inlined and optimised, 200–1 600 functions) on every query, for
-- seconds to tens of seconds, whether the raw part then has one open run to compute or nothing.
--
-- So the raw parts move into functions: a view's plan sees a function scan of a few rows and
-- compiles nothing, and a raw part that is skipped (the calibration while its snapshot holds) is
-- never planned. The functions that compute little (the open runs' coverage, the lives not
-- rolled up yet) run with JIT off (compiling costs more than the rows it would speed up) and
-- without parallel workers (for 100 000-row steps, waiting for workers to start cost seconds on
-- a loaded 2-core machine and saves little on a quiet one).
-- Same columns, types and rows as before.

-- The lives of the sets computed at or after `scan_from` whose life ended at or after `since`
-- (recommendation_life_since's rows, 0011), for a caller that knows every set it asks about and
-- each one's next set are computed at or after `scan_from`; with `batch_only`, the batch sets
-- only, over the sets of the users who have one (a batch set's next set may be of any source).
-- Against 0011's query, measured at 1M users (≈ 260 000 sets since yesterday, 115 000 of them
-- batch sets of 112 000 users, 106 000 unserved so far; load 11): JIT off (it compiled ≈ 1 600
-- functions, 56 s summed over the workers, in a 46 s query); the sort for each user's next set
-- in memory (it spilled 18 MB at the default work_mem) and over 124 000 sets instead of 260 000
-- for the waste views;
-- and serves looked up in one pass over the serves since `scan_from`, grouped by set, instead of
-- an index probe of every serves partition per batch set (106 000 × 2 probes). A serve cannot
-- precede the set it served, so serves before `scan_from` never name a set in scope.
CREATE FUNCTION recommendation_life_scan(scan_from timestamptz, since timestamptz, only_runs bigint[] DEFAULT NULL,
                                         batch_only boolean DEFAULT false)
RETURNS TABLE (id uuid, user_id text, source text, run_id bigint, window_name text, holdout boolean,
               computed_at timestamptz, expires_at timestamptz, life_ended_at timestamptz, compute_ms real,
               served boolean, ended boolean, wasted boolean)
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT SET jit = off SET work_mem = '64MB' SET max_parallel_workers_per_gather = 0 AS $fn$
BEGIN
  -- A one-shot plan for these instants (a generic plan prunes no partition), with the batch
  -- users' filter only when asked (an OR with a flag would plan both).
  RETURN QUERY EXECUTE $q$
  WITH ordered AS (
    SELECT r.id, r.user_id, r.source, r.run_id, r.holdout, r.computed_at, r.expires_at, r.compute_ms, r.first_served_at,
           lead(r.computed_at) OVER (PARTITION BY r.user_id ORDER BY r.computed_at, r.id) AS next_computed_at
      FROM recommendations r
     WHERE r.computed_at >= $1$q$
  || CASE WHEN batch_only THEN $q$
       AND r.user_id IN (SELECT b.user_id FROM recommendations b
                          WHERE b.computed_at >= $1 AND b.source = 'batch' AND ($3 IS NULL OR b.run_id = ANY ($3)))$q$ ELSE '' END
  || $q$
  ), life AS (
    SELECT o.*, least(o.expires_at, o.next_computed_at) AS life_ended_at FROM ordered o
     WHERE least(o.expires_at, o.next_computed_at) >= $2 AND ($3 IS NULL OR o.run_id = ANY ($3))$q$
  || CASE WHEN batch_only THEN $q$ AND o.source = 'batch'$q$ ELSE '' END
  || $q$
  ), serve AS (
    SELECT s.recommendation_id, min(s.at) AS first_at FROM serves s
     WHERE s.at >= $1 AND s.recommendation_id IS NOT NULL
     GROUP BY s.recommendation_id
  )
  SELECT l.id, l.user_id, l.source, l.run_id, b.window_name, l.holdout, l.computed_at, l.expires_at, l.life_ended_at,
         l.compute_ms, served.served, l.life_ended_at <= now(),
         l.source = 'batch' AND l.life_ended_at <= now() AND NOT served.served
    FROM life l
    LEFT JOIN batch_runs b ON b.id = l.run_id
    LEFT JOIN serve s ON s.recommendation_id = l.id AND l.source = 'batch'
    CROSS JOIN LATERAL (
      SELECT CASE WHEN l.source <> 'batch' THEN false
                  ELSE coalesce(l.first_served_at < l.life_ended_at, false) OR coalesce(s.first_at < l.life_ended_at, false) END AS served
    ) served
  $q$ USING scan_from, since, only_runs;
END
$fn$;

-- Where a scan for the lives ended at or after `since` starts: from the earliest set that had not
-- expired then (each user's sets from that instant on are all there, so each one's next set is
-- the same as over the whole table); for given runs, from their earliest set (their sets' next
-- sets come after them), not a day earlier for daily runs.
-- A one-shot plan for the given instant or runs (a generic plan of `run_id = ANY ($1)` read every
-- partition of recommendations, 4M sets at 1M users, for one run's 58 000 sets), without JIT
-- and parallel workers (compiled and waited for, for seconds under load, to read two days of sets).
CREATE FUNCTION recommendation_life_scan_from(since timestamptz, only_runs bigint[] DEFAULT NULL)
RETURNS timestamptz LANGUAGE plpgsql STABLE SET search_path FROM CURRENT SET jit = off SET max_parallel_workers_per_gather = 0 AS $fn$
DECLARE
  scan_from timestamptz;
BEGIN
  IF only_runs IS NULL THEN
    EXECUTE 'SELECT least($1, min(e.computed_at)) FROM recommendations e WHERE e.expires_at >= $1' INTO scan_from USING since;
  ELSE
    EXECUTE 'SELECT least($1, min(e.computed_at)) FROM recommendations e WHERE e.run_id = ANY ($2)' INTO scan_from USING since, only_runs;
  END IF;
  RETURN scan_from;
END
$fn$;

-- Same contract as in 0011, through the scan above.
CREATE OR REPLACE FUNCTION recommendation_life_since(since timestamptz, only_runs bigint[] DEFAULT NULL)
RETURNS TABLE (id uuid, user_id text, source text, run_id bigint, window_name text, holdout boolean,
               computed_at timestamptz, expires_at timestamptz, life_ended_at timestamptz, compute_ms real,
               served boolean, ended boolean, wasted boolean)
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
  SELECT * FROM recommendation_life_scan(recommendation_life_scan_from(since, only_runs), since, only_runs)
$$;

CREATE OR REPLACE VIEW waste_by_day AS
SELECT d.day, d.window_name, d.ended, d.wasted, d.wasted::double precision / nullif(d.ended, 0) AS waste_rate,
       d.wasted_compute_ms, d.holdout_ended, d.holdout_wasted
  FROM waste_daily d
 WHERE d.day < (SELECT coalesce(max(rolled_through), '-infinity') FROM rollup_progress WHERE name = 'waste_daily')
UNION ALL
SELECT (l.life_ended_at AT TIME ZONE 'UTC')::date AS day, l.window_name,
       count(*) FILTER (WHERE NOT l.holdout) AS ended,
       count(*) FILTER (WHERE NOT l.holdout AND l.wasted) AS wasted,
       (count(*) FILTER (WHERE NOT l.holdout AND l.wasted))::double precision / nullif(count(*) FILTER (WHERE NOT l.holdout), 0) AS waste_rate,
       coalesce(sum(l.compute_ms::float8) FILTER (WHERE NOT l.holdout AND l.wasted), 0)::real AS wasted_compute_ms,
       count(*) FILTER (WHERE l.holdout) AS holdout_ended,
       count(*) FILTER (WHERE l.holdout AND l.wasted) AS holdout_wasted
  FROM recommendation_life_scan(recommendation_life_scan_from((SELECT rollup_start('waste_daily'))), (SELECT rollup_start('waste_daily')), NULL, true) l
 WHERE l.source = 'batch' AND l.ended
 GROUP BY 1, 2;

-- Runs not rolled up: their batch sets' lives, scanned from the earliest such run's start (a run's
-- sets are computed after its row is claimed).
CREATE OR REPLACE VIEW waste_by_run AS
WITH open_runs AS (
  SELECT min(least(o.scheduled_for, o.started_at)) AS since, array_agg(o.id) AS ids
    FROM batch_runs o WHERE NOT EXISTS (SELECT 1 FROM waste_runs w WHERE w.run_id = o.id)
), open_run_lives AS (
  SELECT l.* FROM open_runs r,
         LATERAL recommendation_life_scan(recommendation_life_scan_from(r.since, r.ids), r.since, r.ids, true) l
)
SELECT b.id AS run_id, b.window_name, b.scheduled_for, b.status, b.selected, b.precomputed AS precomputed_counted,
       w.precomputes, w.ended, w.served, w.wasted, w.wasted::double precision / nullif(w.ended, 0) AS waste_rate,
       w.compute_ms, w.wasted_compute_ms, w.holdout_precomputes, w.holdout_ended, w.holdout_wasted,
       w.holdout_wasted::double precision / nullif(w.holdout_ended, 0) AS holdout_waste_rate
  FROM batch_runs b
  JOIN waste_runs w ON w.run_id = b.id
UNION ALL
SELECT b.id AS run_id, b.window_name, b.scheduled_for, b.status, b.selected, b.precomputed AS precomputed_counted,
       count(l.id) FILTER (WHERE NOT l.holdout) AS precomputes,
       count(l.id) FILTER (WHERE NOT l.holdout AND l.ended) AS ended,
       count(l.id) FILTER (WHERE NOT l.holdout AND l.served) AS served,
       count(l.id) FILTER (WHERE NOT l.holdout AND l.wasted) AS wasted,
       (count(l.id) FILTER (WHERE NOT l.holdout AND l.wasted))::double precision
         / nullif(count(l.id) FILTER (WHERE NOT l.holdout AND l.ended), 0) AS waste_rate,
       coalesce(sum(l.compute_ms::float8) FILTER (WHERE NOT l.holdout), 0)::real AS compute_ms,
       coalesce(sum(l.compute_ms::float8) FILTER (WHERE NOT l.holdout AND l.wasted), 0)::real AS wasted_compute_ms,
       count(l.id) FILTER (WHERE l.holdout) AS holdout_precomputes,
       count(l.id) FILTER (WHERE l.holdout AND l.ended) AS holdout_ended,
       count(l.id) FILTER (WHERE l.holdout AND l.wasted) AS holdout_wasted,
       (count(l.id) FILTER (WHERE l.holdout AND l.wasted))::double precision
         / nullif(count(l.id) FILTER (WHERE l.holdout AND l.ended), 0) AS holdout_waste_rate
  FROM batch_runs b
  LEFT JOIN open_run_lives l ON l.run_id = b.id AND l.source = 'batch'
 WHERE NOT EXISTS (SELECT 1 FROM waste_runs w WHERE w.run_id = b.id)
 GROUP BY b.id;

-- compute_cost_by_day's raw part: the sets computed since its rollup's end, by day. Their lives
-- need no set computed before it (0011 scanned from the earliest set alive then, a day earlier),
-- and only the batch sets' lives matter (whether they were wasted): the on-demand sets are read
-- as they are, not sorted with the others.
CREATE FUNCTION compute_cost_since(since timestamptz)
RETURNS TABLE (day date, batch_sets bigint, batch_compute_ms real, batch_wasted_compute_ms real, holdout_compute_ms real,
               on_demand_sets bigint, on_demand_compute_ms real, total_compute_ms real)
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT SET jit = off SET max_parallel_workers_per_gather = 0 AS $fn$
BEGIN
  RETURN QUERY EXECUTE $q$
  WITH sets AS (
    SELECT l.computed_at, l.source, l.holdout, l.compute_ms, l.wasted FROM recommendation_life_scan($1, $1, NULL, true) l
    UNION ALL
    -- Their life ends at or after $1 (as the scan's rows do) unless they expired before it.
    SELECT r.computed_at, r.source, r.holdout, r.compute_ms, false FROM recommendations r
     WHERE r.computed_at >= $1 AND r.source <> 'batch' AND r.expires_at >= $1
  )
  SELECT (l.computed_at AT TIME ZONE 'UTC')::date,
         count(*) FILTER (WHERE l.source = 'batch'),
         coalesce(sum(l.compute_ms::float8) FILTER (WHERE l.source = 'batch'), 0)::real,
         coalesce(sum(l.compute_ms::float8) FILTER (WHERE l.source = 'batch' AND l.wasted), 0)::real,
         coalesce(sum(l.compute_ms::float8) FILTER (WHERE l.source = 'batch' AND l.holdout), 0)::real,
         count(*) FILTER (WHERE l.source = 'on_demand'),
         coalesce(sum(l.compute_ms::float8) FILTER (WHERE l.source = 'on_demand'), 0)::real,
         coalesce(sum(l.compute_ms::float8), 0)::real
    FROM sets l
   GROUP BY 1
  $q$ USING since;
END
$fn$;

CREATE OR REPLACE VIEW compute_cost_by_day AS
SELECT d.day, d.batch_sets, d.batch_compute_ms, d.batch_wasted_compute_ms, d.holdout_compute_ms, d.on_demand_sets,
       d.on_demand_compute_ms, d.total_compute_ms
  FROM cost_daily d
 WHERE d.day < (SELECT coalesce(max(rolled_through), '-infinity') FROM rollup_progress WHERE name = 'cost_daily')
UNION ALL
SELECT c.day, c.batch_sets, c.batch_compute_ms, c.batch_wasted_compute_ms, c.holdout_compute_ms, c.on_demand_sets,
       c.on_demand_compute_ms, c.total_compute_ms
  FROM compute_cost_since((SELECT rollup_start('cost_daily'))) c;

-- coverage_by_run's computation for the given runs, one row each (0 when nobody logged in): the
-- view's raw part (the open runs), without JIT or parallel workers and with its sorts in memory.
-- A one-shot plan for the given runs: a generic one (a SQL function's) expected millions of sets
-- for them and read every partition of recommendations (4M sets, 3 s under load) instead of its index.
CREATE FUNCTION coverage_of_runs(run_ids bigint[])
RETURNS TABLE (run_id bigint, active_known bigint, covered bigint, holdout_hits bigint)
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT SET jit = off SET work_mem = '64MB' SET max_parallel_workers_per_gather = 0 AS $fn$
BEGIN
  RETURN QUERY EXECUTE $q$
  WITH runs AS (
    SELECT b.id, b.scheduled_for, b.expires_at FROM batch_runs b WHERE b.id = ANY ($1)
  ), active AS (
    SELECT b.id AS run_id, l.user_id, min(l.at) AS first_at
      FROM runs b
      CROSS JOIN LATERAL (SELECT user_id, at FROM logins WHERE at >= b.scheduled_for AND at < b.expires_at) l
      JOIN user_activity ua ON ua.user_id = l.user_id AND ua.first_login_at < b.scheduled_for
     GROUP BY b.id, l.user_id
  ), judged AS (
    -- The runs' sets in one pass (an index range per partition), not a probe of every partition
    -- per active user; a policy set counts over a holdout one, as a run has one set per user.
    SELECT DISTINCT ON (a.run_id, a.user_id) a.run_id, a.user_id, r.holdout
      FROM active a
      LEFT JOIN (SELECT r.run_id, r.user_id, r.computed_at, r.holdout FROM recommendations r
                  WHERE r.run_id = ANY ($1)) r
        ON r.run_id = a.run_id AND r.user_id = a.user_id AND r.computed_at <= a.first_at
     ORDER BY a.run_id, a.user_id, r.holdout
  )
  SELECT b.id, count(j.user_id), count(j.user_id) FILTER (WHERE j.holdout = false), count(j.user_id) FILTER (WHERE j.holdout)
    FROM runs b
    LEFT JOIN judged j ON j.run_id = b.id
   GROUP BY b.id
  $q$ USING run_ids;
END
$fn$;

CREATE OR REPLACE VIEW coverage_by_run AS
SELECT b.id AS run_id, b.window_name, b.scheduled_for, b.expires_at, c.active_known, c.covered,
       c.covered::double precision / nullif(c.active_known, 0) AS coverage, c.holdout_hits
  FROM batch_runs b
  JOIN coverage_runs c ON c.run_id = b.id
UNION ALL
SELECT b.id AS run_id, b.window_name, b.scheduled_for, b.expires_at, c.active_known, c.covered,
       c.covered::double precision / nullif(c.active_known, 0) AS coverage, c.holdout_hits
  FROM coverage_of_runs((SELECT coalesce(array_agg(o.id), '{}') FROM batch_runs o
                          WHERE NOT EXISTS (SELECT 1 FROM coverage_runs r WHERE r.run_id = o.id))) c
  JOIN batch_runs b ON b.id = c.run_id;

-- calibration_by_decile computed from the raw tables (every prediction of an ended run): run
-- only when the snapshot does not cover the ended runs. Large enough to be worth its JIT.
CREATE FUNCTION calibration_from_predictions()
RETURNS TABLE (decile integer, predictions bigint, mean_predicted double precision, actual_rate numeric)
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
  WITH scored AS (
    SELECT p.p, p.weight::float8 AS weight,
           sum(p.weight::float8) OVER (ORDER BY p.p, p.run_id, p.user_id ROWS UNBOUNDED PRECEDING) - p.weight::float8 AS before,
           sum(p.weight::float8) OVER () AS total,
           EXISTS (SELECT 1 FROM logins l WHERE l.user_id = p.user_id AND l.at >= b.scheduled_for AND l.at < b.expires_at) AS logged_in
      FROM predictions p
      JOIN batch_runs b ON b.id = p.run_id
     WHERE b.expires_at <= now()
  ), deciles AS (
    SELECT least(10, floor(10 * before / total)::int + 1) AS decile, p, weight, logged_in FROM scored
  )
  SELECT decile, round(sum(weight))::bigint, sum(p * weight) / sum(weight),
         (sum(CASE WHEN logged_in THEN weight ELSE 0 END) / sum(weight))::numeric
    FROM deciles
   GROUP BY decile
$$;

CREATE OR REPLACE VIEW calibration_by_decile AS
WITH snapshot AS (
  SELECT s.decile, s.predictions, s.mean_predicted, s.actual_rate FROM calibration_snapshot s
   WHERE s.runs = (SELECT coalesce(array_agg(b.id ORDER BY b.id), '{}') FROM batch_runs b WHERE b.expires_at <= now())
)
SELECT decile, predictions, mean_predicted, actual_rate FROM snapshot
UNION ALL
SELECT c.decile, c.predictions, c.mean_predicted, c.actual_rate FROM calibration_from_predictions() c
 WHERE NOT EXISTS (SELECT 1 FROM snapshot);

-- Down Migration
CREATE OR REPLACE VIEW calibration_by_decile AS
WITH snapshot AS (
  SELECT s.decile, s.predictions, s.mean_predicted, s.actual_rate FROM calibration_snapshot s
   WHERE s.runs = (SELECT coalesce(array_agg(b.id ORDER BY b.id), '{}') FROM batch_runs b WHERE b.expires_at <= now())
), scored AS (
  SELECT p.p, p.weight::float8 AS weight,
         sum(p.weight::float8) OVER (ORDER BY p.p, p.run_id, p.user_id ROWS UNBOUNDED PRECEDING) - p.weight::float8 AS before,
         sum(p.weight::float8) OVER () AS total,
         EXISTS (SELECT 1 FROM logins l WHERE l.user_id = p.user_id AND l.at >= b.scheduled_for AND l.at < b.expires_at) AS logged_in
    FROM predictions p
    JOIN batch_runs b ON b.id = p.run_id
   WHERE b.expires_at <= now()
     AND NOT EXISTS (SELECT 1 FROM snapshot)
), deciles AS (
  SELECT least(10, floor(10 * before / total)::int + 1) AS decile, p, weight, logged_in FROM scored
)
SELECT decile, predictions, mean_predicted, actual_rate FROM snapshot
UNION ALL
SELECT decile, round(sum(weight))::bigint AS predictions, sum(p * weight) / sum(weight) AS mean_predicted,
       (sum(CASE WHEN logged_in THEN weight ELSE 0 END) / sum(weight))::numeric AS actual_rate
  FROM deciles
 GROUP BY decile;
DROP FUNCTION calibration_from_predictions();

CREATE OR REPLACE VIEW coverage_by_run AS
WITH open_runs AS (
  SELECT b.* FROM batch_runs b WHERE NOT EXISTS (SELECT 1 FROM coverage_runs c WHERE c.run_id = b.id)
), active AS (
  SELECT b.id AS run_id, l.user_id, min(l.at) AS first_at
    FROM open_runs b
    CROSS JOIN LATERAL (SELECT user_id, at FROM logins WHERE at >= b.scheduled_for AND at < b.expires_at) l
    JOIN user_activity ua ON ua.user_id = l.user_id AND ua.first_login_at < b.scheduled_for
   GROUP BY b.id, l.user_id
), judged AS (
  -- The open runs' sets in one pass (an index range per partition), not a probe of every
  -- partition per active user; a policy set counts over a holdout one, as a run has one set per user.
  SELECT DISTINCT ON (a.run_id, a.user_id) a.run_id, a.user_id, r.holdout
    FROM active a
    LEFT JOIN (SELECT r.run_id, r.user_id, r.computed_at, r.holdout FROM recommendations r
                WHERE r.run_id IN (SELECT id FROM open_runs)) r
      ON r.run_id = a.run_id AND r.user_id = a.user_id AND r.computed_at <= a.first_at
   ORDER BY a.run_id, a.user_id, r.holdout
)
SELECT b.id AS run_id, b.window_name, b.scheduled_for, b.expires_at, c.active_known, c.covered,
       c.covered::double precision / nullif(c.active_known, 0) AS coverage, c.holdout_hits
  FROM batch_runs b
  JOIN coverage_runs c ON c.run_id = b.id
UNION ALL
SELECT b.id AS run_id, b.window_name, b.scheduled_for, b.expires_at,
       count(j.user_id) AS active_known,
       count(j.user_id) FILTER (WHERE j.holdout = false) AS covered,
       (count(j.user_id) FILTER (WHERE j.holdout = false))::double precision / nullif(count(j.user_id), 0) AS coverage,
       count(j.user_id) FILTER (WHERE j.holdout) AS holdout_hits
  FROM open_runs b
  LEFT JOIN judged j ON j.run_id = b.id
 GROUP BY b.id, b.window_name, b.scheduled_for, b.expires_at;
DROP FUNCTION coverage_of_runs(bigint[]);

CREATE OR REPLACE VIEW compute_cost_by_day AS
SELECT d.day, d.batch_sets, d.batch_compute_ms, d.batch_wasted_compute_ms, d.holdout_compute_ms, d.on_demand_sets,
       d.on_demand_compute_ms, d.total_compute_ms
  FROM cost_daily d
 WHERE d.day < (SELECT coalesce(max(rolled_through), '-infinity') FROM rollup_progress WHERE name = 'cost_daily')
UNION ALL
SELECT (l.computed_at AT TIME ZONE 'UTC')::date AS day,
       count(*) FILTER (WHERE l.source = 'batch') AS batch_sets,
       coalesce(sum(l.compute_ms::float8) FILTER (WHERE l.source = 'batch'), 0)::real AS batch_compute_ms,
       coalesce(sum(l.compute_ms::float8) FILTER (WHERE l.source = 'batch' AND l.wasted), 0)::real AS batch_wasted_compute_ms,
       coalesce(sum(l.compute_ms::float8) FILTER (WHERE l.source = 'batch' AND l.holdout), 0)::real AS holdout_compute_ms,
       count(*) FILTER (WHERE l.source = 'on_demand') AS on_demand_sets,
       coalesce(sum(l.compute_ms::float8) FILTER (WHERE l.source = 'on_demand'), 0)::real AS on_demand_compute_ms,
       coalesce(sum(l.compute_ms::float8), 0)::real AS total_compute_ms
  FROM recommendation_life_since((SELECT rollup_start('cost_daily'))) l
 WHERE l.computed_at >= (SELECT rollup_start('cost_daily'))
 GROUP BY 1;
DROP FUNCTION compute_cost_since(timestamptz);

CREATE OR REPLACE VIEW waste_by_day AS
SELECT d.day, d.window_name, d.ended, d.wasted, d.wasted::double precision / nullif(d.ended, 0) AS waste_rate,
       d.wasted_compute_ms, d.holdout_ended, d.holdout_wasted
  FROM waste_daily d
 WHERE d.day < (SELECT coalesce(max(rolled_through), '-infinity') FROM rollup_progress WHERE name = 'waste_daily')
UNION ALL
SELECT (l.life_ended_at AT TIME ZONE 'UTC')::date AS day, l.window_name,
       count(*) FILTER (WHERE NOT l.holdout) AS ended,
       count(*) FILTER (WHERE NOT l.holdout AND l.wasted) AS wasted,
       (count(*) FILTER (WHERE NOT l.holdout AND l.wasted))::double precision / nullif(count(*) FILTER (WHERE NOT l.holdout), 0) AS waste_rate,
       coalesce(sum(l.compute_ms::float8) FILTER (WHERE NOT l.holdout AND l.wasted), 0)::real AS wasted_compute_ms,
       count(*) FILTER (WHERE l.holdout) AS holdout_ended,
       count(*) FILTER (WHERE l.holdout AND l.wasted) AS holdout_wasted
  FROM recommendation_life_since((SELECT rollup_start('waste_daily'))) l
 WHERE l.source = 'batch' AND l.ended
 GROUP BY 1, 2;

-- Runs not rolled up: their sets' lives from the earliest such run's start on (a run's sets are
-- computed after its row is claimed).
CREATE OR REPLACE VIEW waste_by_run AS
SELECT b.id AS run_id, b.window_name, b.scheduled_for, b.status, b.selected, b.precomputed AS precomputed_counted,
       w.precomputes, w.ended, w.served, w.wasted, w.wasted::double precision / nullif(w.ended, 0) AS waste_rate,
       w.compute_ms, w.wasted_compute_ms, w.holdout_precomputes, w.holdout_ended, w.holdout_wasted,
       w.holdout_wasted::double precision / nullif(w.holdout_ended, 0) AS holdout_waste_rate
  FROM batch_runs b
  JOIN waste_runs w ON w.run_id = b.id
UNION ALL
SELECT b.id AS run_id, b.window_name, b.scheduled_for, b.status, b.selected, b.precomputed AS precomputed_counted,
       count(l.id) FILTER (WHERE NOT l.holdout) AS precomputes,
       count(l.id) FILTER (WHERE NOT l.holdout AND l.ended) AS ended,
       count(l.id) FILTER (WHERE NOT l.holdout AND l.served) AS served,
       count(l.id) FILTER (WHERE NOT l.holdout AND l.wasted) AS wasted,
       (count(l.id) FILTER (WHERE NOT l.holdout AND l.wasted))::double precision
         / nullif(count(l.id) FILTER (WHERE NOT l.holdout AND l.ended), 0) AS waste_rate,
       coalesce(sum(l.compute_ms::float8) FILTER (WHERE NOT l.holdout), 0)::real AS compute_ms,
       coalesce(sum(l.compute_ms::float8) FILTER (WHERE NOT l.holdout AND l.wasted), 0)::real AS wasted_compute_ms,
       count(l.id) FILTER (WHERE l.holdout) AS holdout_precomputes,
       count(l.id) FILTER (WHERE l.holdout AND l.ended) AS holdout_ended,
       count(l.id) FILTER (WHERE l.holdout AND l.wasted) AS holdout_wasted,
       (count(l.id) FILTER (WHERE l.holdout AND l.wasted))::double precision
         / nullif(count(l.id) FILTER (WHERE l.holdout AND l.ended), 0) AS holdout_waste_rate
  FROM batch_runs b
  LEFT JOIN recommendation_life_since(
              (SELECT min(least(o.scheduled_for, o.started_at)) FROM batch_runs o WHERE NOT EXISTS (SELECT 1 FROM waste_runs w WHERE w.run_id = o.id)),
              (SELECT array_agg(o.id) FROM batch_runs o WHERE NOT EXISTS (SELECT 1 FROM waste_runs w WHERE w.run_id = o.id))
            ) l ON l.run_id = b.id AND l.source = 'batch'
 WHERE NOT EXISTS (SELECT 1 FROM waste_runs w WHERE w.run_id = b.id)
 GROUP BY b.id;

CREATE OR REPLACE FUNCTION recommendation_life_since(since timestamptz, only_runs bigint[] DEFAULT NULL)
RETURNS TABLE (id uuid, user_id text, source text, run_id bigint, window_name text, holdout boolean,
               computed_at timestamptz, expires_at timestamptz, life_ended_at timestamptz, compute_ms real,
               served boolean, ended boolean, wasted boolean)
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $fn$
BEGIN
  RETURN QUERY EXECUTE $q$
  WITH ordered AS (
    SELECT r.id, r.user_id, r.source, r.run_id, r.holdout, r.computed_at, r.expires_at, r.compute_ms, r.first_served_at,
           lead(r.computed_at) OVER (PARTITION BY r.user_id ORDER BY r.computed_at, r.id) AS next_computed_at
      FROM recommendations r
     WHERE r.computed_at >= least($1, (SELECT min(e.computed_at) FROM recommendations e WHERE e.expires_at >= $1))
  ), life AS (
    SELECT o.*, least(o.expires_at, o.next_computed_at) AS life_ended_at FROM ordered o
     WHERE least(o.expires_at, o.next_computed_at) >= $1 AND ($2 IS NULL OR o.run_id = ANY ($2))
  )
  SELECT l.id, l.user_id, l.source, l.run_id, b.window_name, l.holdout, l.computed_at, l.expires_at, l.life_ended_at,
         l.compute_ms, served.served, l.life_ended_at <= now(),
         l.source = 'batch' AND l.life_ended_at <= now() AND NOT served.served
    FROM life l
    LEFT JOIN batch_runs b ON b.id = l.run_id
    CROSS JOIN LATERAL (
      SELECT CASE WHEN l.source <> 'batch' THEN false
                  ELSE (l.first_served_at IS NOT NULL AND l.first_served_at < l.life_ended_at)
                    OR EXISTS (SELECT 1 FROM serves s WHERE s.recommendation_id = l.id AND s.at < l.life_ended_at) END AS served
    ) served
  $q$ USING since, only_runs;
END
$fn$;
DROP FUNCTION recommendation_life_scan(timestamptz, timestamptz, bigint[], boolean);
DROP FUNCTION recommendation_life_scan_from(timestamptz, bigint[]);
