-- Up Migration

-- Rolled-up tables for the waste, compute-cost and coverage views (issue 11 item 4), as 0008 did
-- for the serve views: at 1M users and 30 days those views computed every set's life (a window
-- over all of `recommendations`) or every run's logins on each query, for tens of seconds, and
-- lost their history when retention dropped raw partitions. Maintenance
-- (src/maintenance/rollups.ts) fills the tables once a day or a run is final; the views read them
-- and compute only the rest from the raw tables. Same columns, types and rows as before.
--
-- When a figure is final:
--   waste_daily   a UTC day of life ends, once the day is over (lives that ended that day cannot
--                 change, and their serves are flushed after the grace);
--   cost_daily    a UTC day of computation, once every set computed that day has expired (its
--                 waste is judged) — tracked as the first day holding a set not yet expired;
--   waste_runs    a finished run whose sets have all expired;
--   coverage_runs a finished run whose window is over;
--   calibration_snapshot  calibration_by_decile pools every run whose window has ended into one
--                 set of deciles, so no part of it is final: maintenance stores the whole result
--                 with the list of runs it covers, and the view returns it while that list is
--                 still the list of ended runs (until the next window ends), else computes it.
--
-- Sums of compute_ms now accumulate in double precision (still returned as real): a real
-- accumulator rounds at every step, so a sum depended on the order rows were read in, and no
-- rollup could reproduce it. They differ from the old sums in the 6th–7th significant digit.

CREATE TABLE waste_daily (
  day date NOT NULL,
  window_name text,
  ended bigint NOT NULL,
  wasted bigint NOT NULL,
  wasted_compute_ms real NOT NULL,
  holdout_ended bigint NOT NULL,
  holdout_wasted bigint NOT NULL
);
-- A batch set of a deleted run has no window: NULL is a window of its own here.
CREATE UNIQUE INDEX waste_daily_day_window_uidx ON waste_daily (day, window_name) NULLS NOT DISTINCT;

CREATE TABLE cost_daily (
  day date PRIMARY KEY,
  batch_sets bigint NOT NULL,
  batch_compute_ms real NOT NULL,
  batch_wasted_compute_ms real NOT NULL,
  holdout_compute_ms real NOT NULL,
  on_demand_sets bigint NOT NULL,
  on_demand_compute_ms real NOT NULL,
  total_compute_ms real NOT NULL
);

CREATE TABLE waste_runs (
  run_id bigint PRIMARY KEY REFERENCES batch_runs (id) ON DELETE CASCADE,
  precomputes bigint NOT NULL,
  ended bigint NOT NULL,
  served bigint NOT NULL,
  wasted bigint NOT NULL,
  compute_ms real NOT NULL,
  wasted_compute_ms real NOT NULL,
  holdout_precomputes bigint NOT NULL,
  holdout_ended bigint NOT NULL,
  holdout_wasted bigint NOT NULL
);

CREATE TABLE coverage_runs (
  run_id bigint PRIMARY KEY REFERENCES batch_runs (id) ON DELETE CASCADE,
  active_known bigint NOT NULL,
  covered bigint NOT NULL,
  holdout_hits bigint NOT NULL
);

-- Where each day rollup's raw part starts (rollup_progress, 0008): the start of its first day not
-- rolled up, or -infinity before the first pass.
-- Both functions resolve names in the schema they were created in, as a view does, whatever the
-- caller's search_path.
CREATE FUNCTION rollup_start(rollup text) RETURNS timestamptz LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
  SELECT coalesce(max(rolled_through), '-infinity')::timestamp AT TIME ZONE 'UTC' FROM rollup_progress WHERE name = rollup
$$;

-- The life of every set whose life ended at or after `since` (recommendation_life's columns, ended
-- and wasted judged at now(); `served` of batch sets only, false for the others: no view asks),
-- computed over a suffix of `recommendations` only: from the earliest set that had not expired
-- at `since`. Each user's sets from that instant on are all there, so each one's next set (the
-- lead) is the same as over the whole table. With `only_runs`, the sets of those runs only (their
-- serves looked up only).
CREATE FUNCTION recommendation_life_since(since timestamptz, only_runs bigint[] DEFAULT NULL)
RETURNS TABLE (id uuid, user_id text, source text, run_id bigint, window_name text, holdout boolean,
               computed_at timestamptz, expires_at timestamptz, life_ended_at timestamptz, compute_ms real,
               served boolean, ended boolean, wasted boolean)
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $fn$
BEGIN
  -- A one-shot plan for the given instant: a generic plan of this query prunes no partition
  -- (at 1M users, 60 s instead of 5 on a loaded machine).
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

CREATE TABLE calibration_snapshot (
  -- The runs whose window had ended (expires_at <= now()) when it was computed, by id.
  runs bigint[] NOT NULL,
  computed_at timestamptz NOT NULL DEFAULT now(),
  decile integer NOT NULL,
  predictions bigint NOT NULL,
  mean_predicted double precision,
  actual_rate numeric
);

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

-- Down Migration
CREATE OR REPLACE VIEW calibration_by_decile AS
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
SELECT decile, round(sum(weight))::bigint AS predictions, sum(p * weight) / sum(weight) AS mean_predicted,
       (sum(CASE WHEN logged_in THEN weight ELSE 0 END) / sum(weight))::numeric AS actual_rate
  FROM deciles
 GROUP BY decile;
DROP TABLE calibration_snapshot;

CREATE OR REPLACE VIEW coverage_by_run AS
WITH active AS (
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

CREATE OR REPLACE VIEW waste_by_run AS
SELECT b.id AS run_id, b.window_name, b.scheduled_for, b.status, b.selected, b.precomputed AS precomputed_counted,
       count(l.id) FILTER (WHERE NOT l.holdout) AS precomputes,
       count(l.id) FILTER (WHERE NOT l.holdout AND l.ended) AS ended,
       count(l.id) FILTER (WHERE NOT l.holdout AND l.served) AS served,
       count(l.id) FILTER (WHERE NOT l.holdout AND l.wasted) AS wasted,
       (count(l.id) FILTER (WHERE NOT l.holdout AND l.wasted))::double precision
         / nullif(count(l.id) FILTER (WHERE NOT l.holdout AND l.ended), 0) AS waste_rate,
       coalesce(sum(l.compute_ms) FILTER (WHERE NOT l.holdout), 0) AS compute_ms,
       coalesce(sum(l.compute_ms) FILTER (WHERE NOT l.holdout AND l.wasted), 0) AS wasted_compute_ms,
       count(l.id) FILTER (WHERE l.holdout) AS holdout_precomputes,
       count(l.id) FILTER (WHERE l.holdout AND l.ended) AS holdout_ended,
       count(l.id) FILTER (WHERE l.holdout AND l.wasted) AS holdout_wasted,
       (count(l.id) FILTER (WHERE l.holdout AND l.wasted))::double precision
         / nullif(count(l.id) FILTER (WHERE l.holdout AND l.ended), 0) AS holdout_waste_rate
  FROM batch_runs b
  LEFT JOIN recommendation_life l ON l.run_id = b.id AND l.source = 'batch'
 GROUP BY b.id;

CREATE OR REPLACE VIEW compute_cost_by_day AS
SELECT (l.computed_at AT TIME ZONE 'UTC')::date AS day,
       count(*) FILTER (WHERE l.source = 'batch') AS batch_sets,
       coalesce(sum(l.compute_ms) FILTER (WHERE l.source = 'batch'), 0) AS batch_compute_ms,
       coalesce(sum(l.compute_ms) FILTER (WHERE l.source = 'batch' AND l.wasted), 0) AS batch_wasted_compute_ms,
       coalesce(sum(l.compute_ms) FILTER (WHERE l.source = 'batch' AND l.holdout), 0) AS holdout_compute_ms,
       count(*) FILTER (WHERE l.source = 'on_demand') AS on_demand_sets,
       coalesce(sum(l.compute_ms) FILTER (WHERE l.source = 'on_demand'), 0) AS on_demand_compute_ms,
       coalesce(sum(l.compute_ms), 0) AS total_compute_ms
  FROM recommendation_life l
 GROUP BY 1;

CREATE OR REPLACE VIEW waste_by_day AS
SELECT (l.life_ended_at AT TIME ZONE 'UTC')::date AS day, l.window_name,
       count(*) FILTER (WHERE NOT l.holdout) AS ended,
       count(*) FILTER (WHERE NOT l.holdout AND l.wasted) AS wasted,
       (count(*) FILTER (WHERE NOT l.holdout AND l.wasted))::double precision / nullif(count(*) FILTER (WHERE NOT l.holdout), 0) AS waste_rate,
       coalesce(sum(l.compute_ms) FILTER (WHERE NOT l.holdout AND l.wasted), 0) AS wasted_compute_ms,
       count(*) FILTER (WHERE l.holdout) AS holdout_ended,
       count(*) FILTER (WHERE l.holdout AND l.wasted) AS holdout_wasted
  FROM recommendation_life l
 WHERE l.source = 'batch' AND l.ended
 GROUP BY 1, 2;

DROP FUNCTION recommendation_life_since(timestamptz, bigint[]);
DROP FUNCTION rollup_start(text);
DROP TABLE coverage_runs;
DROP TABLE waste_runs;
DROP TABLE cost_daily;
DROP TABLE waste_daily;
DELETE FROM rollup_progress WHERE name IN ('waste_daily', 'cost_daily');
