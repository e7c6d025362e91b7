-- Up Migration

-- logins, serves, predictions and recommendations become range-partitioned by time, so that
-- retention (PREWARM_RETENTION) drops whole partitions instead of deleting rows, and the daily
-- views over serves read a rollup for closed days. src/maintenance/partitions.ts creates the
-- partitions ahead, drops expired ones and fills the rollup; README "Retention and partitions".
--
-- In place: each existing table is renamed `<table>_legacy` and attached, as it is, as the
-- partition FROM (MINVALUE) TO (the migration's time, or just past its newest row): no row is
-- copied. Indexes that keep their definition are adopted by the new parent's; only the keys that
-- must now include the partition key are built on the legacy table. An empty table is dropped
-- instead. Rows whose key falls in no partition go to `<table>_default`; maintenance moves them.
--
-- Keys (a unique key on a partitioned table must contain the partition key):
--   logins          (user_id, at)                 unchanged, partitioned by at, monthly
--   serves          (id) → (id, at)               ids are random UUIDs; partitioned by at, monthly
--   recommendations (id) → (id, computed_at)      ids are random or derive from (run, user); daily
--                   unique (run_id, user_id) → plain index: the chunk's row lock is what keeps a
--                   run to one set per user (src/precompute/precompute-worker.ts)
--   predictions     (run_id, user_id) → (run_id, user_id, created_at); daily by created_at, a new
--                   column (default now(): the planner's COPY of a run is one transaction, so a
--                   run's scores land in one partition; legacy rows carry this migration's time)
-- serves.recommendation_id no longer has a foreign key: a key into a partitioned table would have
-- to carry computed_at too, and it would forbid dropping an expired recommendations partition.
-- Readers already treat it as optional (LEFT JOIN, EXISTS); a dangling id means the set aged out.

-- Every view over these tables is dropped and created again below, unchanged except the three
-- daily views over serves, which read the rollup for closed days.
DROP VIEW calibration_by_decile;
DROP VIEW latency_by_day;
DROP VIEW staleness_by_day;
DROP VIEW login_coverage_by_day;
DROP VIEW coverage_by_day;
DROP VIEW coverage_by_run;
DROP VIEW compute_cost_by_day;
DROP VIEW waste_by_day;
DROP VIEW waste_by_run;
DROP VIEW recommendation_life;
DROP VIEW recommendation_items;

-- Attaches a legacy table to its new parent, or drops it when empty. Temporary: it leaves with
-- the migration's session.
CREATE FUNCTION pg_temp.prewarm_adopt_legacy(parent text, key text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  legacy text := parent || '_legacy';
  newest timestamptz;
BEGIN
  EXECUTE format('SELECT max(%I) FROM %I', key, legacy) INTO newest;
  IF newest IS NULL THEN
    EXECUTE format('DROP TABLE %I', legacy);
  ELSE
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%L)',
                   -- a whole second: bounds are read back as JavaScript dates (milliseconds)
                   parent, legacy, date_trunc('second', greatest(now(), newest)) + interval '1 second');
  END IF;
  EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', parent || '_default', parent);
END
$$;

-- logins
ALTER TABLE logins RENAME TO logins_legacy;
ALTER TABLE logins_legacy RENAME CONSTRAINT logins_pkey TO logins_legacy_pkey;
ALTER INDEX logins_at_idx RENAME TO logins_legacy_at_idx;
CREATE TABLE logins (
  user_id text NOT NULL,
  at timestamptz NOT NULL,
  PRIMARY KEY (user_id, at)
) PARTITION BY RANGE (at);
CREATE INDEX logins_at_idx ON logins (at);
SELECT pg_temp.prewarm_adopt_legacy('logins', 'at');

-- serves
ALTER TABLE serves RENAME TO serves_legacy;
ALTER TABLE serves_legacy DROP CONSTRAINT serves_recommendation_id_fkey;
ALTER TABLE serves_legacy DROP CONSTRAINT serves_pkey;
ALTER INDEX serves_at_idx RENAME TO serves_legacy_at_idx;
ALTER INDEX serves_recommendation_idx RENAME TO serves_legacy_recommendation_idx;
CREATE TABLE serves (
  id uuid NOT NULL,
  user_id text NOT NULL,
  at timestamptz NOT NULL,
  source text NOT NULL CONSTRAINT serves_source_check CHECK (source IN ('precomputed', 'reused', 'on_demand', 'fallback')),
  recommendation_id uuid,
  staleness_ms bigint,
  latency_ms real NOT NULL,
  reason text,
  PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE INDEX serves_at_idx ON serves (at);
CREATE INDEX serves_recommendation_idx ON serves (recommendation_id) WHERE recommendation_id IS NOT NULL;
SELECT pg_temp.prewarm_adopt_legacy('serves', 'at');

-- recommendations
ALTER TABLE recommendations RENAME TO recommendations_legacy;
ALTER TABLE recommendations_legacy DROP CONSTRAINT recommendations_pkey;
DROP INDEX recommendations_run_user_uidx;
ALTER INDEX recommendations_user_idx RENAME TO recommendations_legacy_user_idx;
ALTER INDEX recommendations_expires_idx RENAME TO recommendations_legacy_expires_idx;
CREATE TABLE recommendations (
  id uuid NOT NULL,
  user_id text NOT NULL,
  source text NOT NULL CONSTRAINT recommendations_source_check CHECK (source IN ('batch', 'on_demand')),
  run_id bigint CONSTRAINT recommendations_run_id_fkey REFERENCES batch_runs (id) ON DELETE SET NULL,
  holdout boolean NOT NULL DEFAULT false,
  computed_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  model_version text NOT NULL,
  compute_ms real NOT NULL,
  first_served_at timestamptz,
  serve_count integer NOT NULL DEFAULT 0,
  item_ids text[] NOT NULL,
  scores real[] NOT NULL,
  CONSTRAINT recommendations_items_aligned CHECK (cardinality(item_ids) = cardinality(scores)),
  PRIMARY KEY (id, computed_at)
) PARTITION BY RANGE (computed_at);
CREATE INDEX recommendations_run_user_idx ON recommendations (run_id, user_id) WHERE run_id IS NOT NULL;
CREATE INDEX recommendations_user_idx ON recommendations (user_id, computed_at DESC);
CREATE INDEX recommendations_expires_idx ON recommendations (expires_at);
-- As migrations/0007: lz4 where the server has it; new partitions inherit it.
DO $$
BEGIN
  ALTER TABLE recommendations
    ALTER COLUMN item_ids SET COMPRESSION lz4,
    ALTER COLUMN scores SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
  RAISE NOTICE 'lz4 is not available on this server: recommendations stay compressed with pglz';
END
$$;
SELECT pg_temp.prewarm_adopt_legacy('recommendations', 'computed_at');

-- predictions
ALTER TABLE predictions RENAME TO predictions_legacy;
ALTER TABLE predictions_legacy DROP CONSTRAINT predictions_pkey;
ALTER TABLE predictions_legacy ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
CREATE TABLE predictions (
  run_id bigint NOT NULL CONSTRAINT predictions_run_id_fkey REFERENCES batch_runs (id) ON DELETE CASCADE,
  user_id text NOT NULL,
  p real NOT NULL,
  selected boolean NOT NULL,
  holdout boolean NOT NULL DEFAULT false,
  chunk_no integer,
  -- When the planner wrote the score (its run's planning): the partition key.
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, user_id, created_at)
) PARTITION BY RANGE (created_at);
SELECT pg_temp.prewarm_adopt_legacy('predictions', 'created_at');

DROP FUNCTION pg_temp.prewarm_adopt_legacy(text, text);

-- Daily rollup of serves per UTC day and source, for days < rollup_progress.rolled_through
-- ('serves_daily'); maintenance fills it for closed days. It outlives the retention of serves.
CREATE TABLE serves_daily (
  day date NOT NULL,
  source text NOT NULL,
  serves bigint NOT NULL,
  staleness_serves bigint NOT NULL,
  staleness_p50_ms double precision,
  staleness_p95_ms double precision,
  staleness_max_ms bigint,
  latency_p50_ms double precision,
  latency_p99_ms double precision,
  latency_max_ms real,
  PRIMARY KEY (day, source)
);
-- How far each rollup is complete: its table holds every day before rolled_through.
CREATE TABLE rollup_progress (
  name text PRIMARY KEY,
  rolled_through date NOT NULL
);

-- The views, as migrations/0002, 0004 and 0006 left them.
CREATE VIEW recommendation_life AS
WITH ordered AS (
  SELECT r.id, r.user_id, r.source, r.run_id, r.holdout, r.computed_at, r.expires_at, r.model_version,
         r.compute_ms, r.first_served_at, r.serve_count,
         lead(r.computed_at) OVER (PARTITION BY r.user_id ORDER BY r.computed_at, r.id) AS next_computed_at
    FROM recommendations r
), life AS (
  SELECT o.*, least(o.expires_at, o.next_computed_at) AS life_ended_at FROM ordered o
)
SELECT l.id, l.user_id, l.source, l.run_id, b.window_name, l.holdout, l.computed_at, l.expires_at,
       l.next_computed_at, l.life_ended_at, l.compute_ms, l.model_version, l.first_served_at, l.serve_count,
       served.served,
       l.life_ended_at <= now() AS ended,
       l.source = 'batch' AND l.life_ended_at <= now() AND NOT served.served AS wasted
  FROM life l
  LEFT JOIN batch_runs b ON b.id = l.run_id
  CROSS JOIN LATERAL (
    SELECT (l.first_served_at IS NOT NULL AND l.first_served_at < l.life_ended_at)
        OR EXISTS (SELECT 1 FROM serves s WHERE s.recommendation_id = l.id AND s.at < l.life_ended_at) AS served
  ) served;

CREATE VIEW waste_by_run AS
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

CREATE VIEW waste_by_day AS
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

CREATE VIEW compute_cost_by_day AS
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

CREATE VIEW coverage_by_run AS
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

CREATE VIEW coverage_by_day AS
SELECT (scheduled_for AT TIME ZONE 'UTC')::date AS day, window_name,
       sum(active_known) AS active_known, sum(covered) AS covered,
       sum(covered)::double precision / nullif(sum(active_known), 0) AS coverage
  FROM coverage_by_run
 GROUP BY 1, 2;

-- The three daily views over serves: closed days from serves_daily, the rest from serves (only
-- its partitions from the rollup's end on are read). Same columns, types and rows as before.
CREATE VIEW login_coverage_by_day AS
WITH per_source AS (
  SELECT d.day, d.source, d.serves FROM serves_daily d
   WHERE d.day < (SELECT coalesce(max(rolled_through), '-infinity') FROM rollup_progress WHERE name = 'serves_daily')
  UNION ALL
  SELECT (at AT TIME ZONE 'UTC')::date, source, count(*)
    FROM serves
   WHERE at >= (SELECT coalesce(max(rolled_through), '-infinity')::timestamp AT TIME ZONE 'UTC' FROM rollup_progress WHERE name = 'serves_daily')
   GROUP BY 1, 2
)
SELECT day,
       sum(serves)::bigint AS logins,
       coalesce(sum(serves) FILTER (WHERE source = 'precomputed'), 0)::bigint AS precomputed,
       coalesce(sum(serves) FILTER (WHERE source = 'reused'), 0)::bigint AS reused,
       coalesce(sum(serves) FILTER (WHERE source = 'on_demand'), 0)::bigint AS on_demand,
       coalesce(sum(serves) FILTER (WHERE source = 'fallback'), 0)::bigint AS fallback,
       (coalesce(sum(serves) FILTER (WHERE source = 'precomputed'), 0)::bigint)::double precision / sum(serves)::bigint AS login_coverage
  FROM per_source
 GROUP BY day;

CREATE VIEW staleness_by_day AS
SELECT d.day, d.source, d.staleness_serves AS serves, d.staleness_p50_ms, d.staleness_p95_ms, d.staleness_max_ms
  FROM serves_daily d
 WHERE d.staleness_serves > 0
   AND d.day < (SELECT coalesce(max(rolled_through), '-infinity') FROM rollup_progress WHERE name = 'serves_daily')
UNION ALL
SELECT (at AT TIME ZONE 'UTC')::date AS day, source, count(*) AS serves,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY staleness_ms) AS staleness_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY staleness_ms) AS staleness_p95_ms,
       max(staleness_ms) AS staleness_max_ms
  FROM serves
 WHERE staleness_ms IS NOT NULL
   AND at >= (SELECT coalesce(max(rolled_through), '-infinity')::timestamp AT TIME ZONE 'UTC' FROM rollup_progress WHERE name = 'serves_daily')
 GROUP BY 1, 2;

CREATE VIEW latency_by_day AS
SELECT d.day, d.source, d.serves, d.latency_p50_ms, d.latency_p99_ms, d.latency_max_ms
  FROM serves_daily d
 WHERE d.day < (SELECT coalesce(max(rolled_through), '-infinity') FROM rollup_progress WHERE name = 'serves_daily')
UNION ALL
SELECT (at AT TIME ZONE 'UTC')::date AS day, source, count(*) AS serves,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS latency_p99_ms,
       max(latency_ms) AS latency_max_ms
  FROM serves
 WHERE at >= (SELECT coalesce(max(rolled_through), '-infinity')::timestamp AT TIME ZONE 'UTC' FROM rollup_progress WHERE name = 'serves_daily')
 GROUP BY 1, 2;

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

CREATE VIEW recommendation_items AS
SELECT r.id AS recommendation_id, r.user_id, r.source, r.run_id, r.computed_at, i.rank, i.item_id, i.score
  FROM recommendations r
 CROSS JOIN LATERAL unnest(r.item_ids, r.scores) WITH ORDINALITY AS i(item_id, score, rank);

-- Down Migration

-- Back to plain tables, rows copied; the rollup goes (the views read serves again).
DROP VIEW calibration_by_decile;
DROP VIEW latency_by_day;
DROP VIEW staleness_by_day;
DROP VIEW login_coverage_by_day;
DROP VIEW coverage_by_day;
DROP VIEW coverage_by_run;
DROP VIEW compute_cost_by_day;
DROP VIEW waste_by_day;
DROP VIEW waste_by_run;
DROP VIEW recommendation_life;
DROP VIEW recommendation_items;
DROP TABLE rollup_progress;
DROP TABLE serves_daily;

CREATE TABLE logins_plain (user_id text NOT NULL, at timestamptz NOT NULL);
INSERT INTO logins_plain SELECT user_id, at FROM logins;
DROP TABLE logins;
ALTER TABLE logins_plain RENAME TO logins;
ALTER TABLE logins ADD CONSTRAINT logins_pkey PRIMARY KEY (user_id, at);
CREATE INDEX logins_at_idx ON logins (at);

CREATE TABLE predictions_plain (
  run_id bigint NOT NULL,
  user_id text NOT NULL,
  p real NOT NULL,
  selected boolean NOT NULL,
  holdout boolean NOT NULL DEFAULT false,
  chunk_no integer
);
INSERT INTO predictions_plain SELECT run_id, user_id, p, selected, holdout, chunk_no FROM predictions;
DROP TABLE predictions;
ALTER TABLE predictions_plain RENAME TO predictions;
ALTER TABLE predictions
  ADD CONSTRAINT predictions_pkey PRIMARY KEY (run_id, user_id),
  ADD CONSTRAINT predictions_run_id_fkey FOREIGN KEY (run_id) REFERENCES batch_runs (id) ON DELETE CASCADE;

CREATE TABLE recommendations_plain (
  id uuid NOT NULL,
  user_id text NOT NULL,
  source text NOT NULL,
  run_id bigint,
  holdout boolean NOT NULL DEFAULT false,
  computed_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  model_version text NOT NULL,
  compute_ms real NOT NULL,
  first_served_at timestamptz,
  serve_count integer NOT NULL DEFAULT 0,
  item_ids text[] NOT NULL,
  scores real[] NOT NULL
);
DO $$
BEGIN
  ALTER TABLE recommendations_plain
    ALTER COLUMN item_ids SET COMPRESSION lz4,
    ALTER COLUMN scores SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
  RAISE NOTICE 'lz4 is not available on this server: recommendations stay compressed with pglz';
END
$$;
INSERT INTO recommendations_plain
SELECT id, user_id, source, run_id, holdout, computed_at, expires_at, model_version, compute_ms, first_served_at, serve_count, item_ids, scores
  FROM recommendations;

CREATE TABLE serves_plain (
  id uuid NOT NULL,
  user_id text NOT NULL,
  at timestamptz NOT NULL,
  source text NOT NULL,
  recommendation_id uuid,
  staleness_ms bigint,
  latency_ms real NOT NULL,
  reason text
);
-- A serve whose set aged out loses the reference, as ON DELETE SET NULL did before.
INSERT INTO serves_plain
SELECT s.id, s.user_id, s.at, s.source,
       CASE WHEN EXISTS (SELECT 1 FROM recommendations r WHERE r.id = s.recommendation_id) THEN s.recommendation_id END,
       s.staleness_ms, s.latency_ms, s.reason
  FROM serves s;
DROP TABLE serves;
DROP TABLE recommendations;
ALTER TABLE recommendations_plain RENAME TO recommendations;
ALTER TABLE recommendations
  ADD CONSTRAINT recommendations_pkey PRIMARY KEY (id),
  ADD CONSTRAINT recommendations_source_check CHECK (source IN ('batch', 'on_demand')),
  ADD CONSTRAINT recommendations_run_id_fkey FOREIGN KEY (run_id) REFERENCES batch_runs (id) ON DELETE SET NULL,
  ADD CONSTRAINT recommendations_items_aligned CHECK (cardinality(item_ids) = cardinality(scores));
CREATE UNIQUE INDEX recommendations_run_user_uidx ON recommendations (run_id, user_id) WHERE run_id IS NOT NULL;
CREATE INDEX recommendations_user_idx ON recommendations (user_id, computed_at DESC);
CREATE INDEX recommendations_expires_idx ON recommendations (expires_at);
ALTER TABLE serves_plain RENAME TO serves;
ALTER TABLE serves
  ADD CONSTRAINT serves_pkey PRIMARY KEY (id),
  ADD CONSTRAINT serves_source_check CHECK (source IN ('precomputed', 'reused', 'on_demand', 'fallback')),
  ADD CONSTRAINT serves_recommendation_id_fkey FOREIGN KEY (recommendation_id) REFERENCES recommendations (id) ON DELETE SET NULL;
CREATE INDEX serves_at_idx ON serves (at);
CREATE INDEX serves_recommendation_idx ON serves (recommendation_id) WHERE recommendation_id IS NOT NULL;

CREATE VIEW recommendation_life AS
WITH ordered AS (
  SELECT r.id, r.user_id, r.source, r.run_id, r.holdout, r.computed_at, r.expires_at, r.model_version,
         r.compute_ms, r.first_served_at, r.serve_count,
         lead(r.computed_at) OVER (PARTITION BY r.user_id ORDER BY r.computed_at, r.id) AS next_computed_at
    FROM recommendations r
), life AS (
  SELECT o.*, least(o.expires_at, o.next_computed_at) AS life_ended_at FROM ordered o
)
SELECT l.id, l.user_id, l.source, l.run_id, b.window_name, l.holdout, l.computed_at, l.expires_at,
       l.next_computed_at, l.life_ended_at, l.compute_ms, l.model_version, l.first_served_at, l.serve_count,
       served.served,
       l.life_ended_at <= now() AS ended,
       l.source = 'batch' AND l.life_ended_at <= now() AND NOT served.served AS wasted
  FROM life l
  LEFT JOIN batch_runs b ON b.id = l.run_id
  CROSS JOIN LATERAL (
    SELECT (l.first_served_at IS NOT NULL AND l.first_served_at < l.life_ended_at)
        OR EXISTS (SELECT 1 FROM serves s WHERE s.recommendation_id = l.id AND s.at < l.life_ended_at) AS served
  ) served;

CREATE VIEW waste_by_run AS
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

CREATE VIEW waste_by_day AS
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

CREATE VIEW compute_cost_by_day AS
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

CREATE VIEW coverage_by_run AS
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

CREATE VIEW coverage_by_day AS
SELECT (scheduled_for AT TIME ZONE 'UTC')::date AS day, window_name,
       sum(active_known) AS active_known, sum(covered) AS covered,
       sum(covered)::double precision / nullif(sum(active_known), 0) AS coverage
  FROM coverage_by_run
 GROUP BY 1, 2;

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

CREATE VIEW recommendation_items AS
SELECT r.id AS recommendation_id, r.user_id, r.source, r.run_id, r.computed_at, i.rank, i.item_id, i.score
  FROM recommendations r
 CROSS JOIN LATERAL unnest(r.item_ids, r.scores) WITH ORDINALITY AS i(item_id, score, rank);

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
