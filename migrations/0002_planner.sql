-- Up Migration

-- Planning state of a run. A claim (the batch_runs row) carries a lease: a scheduler replica that
-- dies while planning leaves it to expire, and the next tick of any replica takes the run over.
ALTER TABLE batch_runs
  ADD COLUMN horizon_ms bigint,
  ADD COLUMN planned_at timestamptz,
  ADD COLUMN lease_until timestamptz,
  ADD COLUMN plan_attempts integer NOT NULL DEFAULT 0,
  ADD COLUMN expected_coverage real,
  ADD COLUMN expected_waste real,
  -- Milliseconds the recommender spent on the run's chunks, failures excluded.
  ADD COLUMN compute_ms double precision NOT NULL DEFAULT 0,
  ADD COLUMN error text;
CREATE INDEX batch_runs_open_idx ON batch_runs (status) WHERE status IN ('planning', 'running');

-- The chunk a precomputed user was enqueued in (NULL: neither selected nor holdout), so that a
-- lost job can be rebuilt exactly as planned.
ALTER TABLE predictions ADD COLUMN chunk_no integer;

-- One row per enqueued chunk. A chunk is folded into its run's counters exactly once, when its
-- done_at goes from NULL to a time: retried and duplicated jobs find it done and count nothing.
CREATE TABLE batch_chunks (
  run_id bigint NOT NULL REFERENCES batch_runs (id) ON DELETE CASCADE,
  chunk_no integer NOT NULL CHECK (chunk_no >= 0),
  users integer NOT NULL CHECK (users > 0),
  done_at timestamptz,
  precomputed integer NOT NULL DEFAULT 0,
  failed integer NOT NULL DEFAULT 0,
  compute_ms double precision NOT NULL DEFAULT 0,
  error text,
  PRIMARY KEY (run_id, chunk_no)
);

-- The life of every recommendation set. A set's life ends when it expires or when a newer set is
-- computed for the same user (it is replaced), whichever comes first. It was served if a serve
-- used it before its life ended. `ended` and `wasted` are judged at the database's now(); report
-- queries that run on a virtual clock (src/accounting/waste.ts) compare life_ended_at to their
-- own instant instead.
CREATE VIEW recommendation_life AS
WITH ordered AS (
  SELECT r.*, lead(r.computed_at) OVER (PARTITION BY r.user_id ORDER BY r.computed_at, r.id) AS next_computed_at
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

-- Waste per batch run. Policy sets and holdout sets apart: holdout sets are precomputed at
-- random among the unselected to keep the model's misses measurable, not by the policy.
-- waste_rate = wasted / ended (sets whose life has ended), NULL until one has.
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

-- Waste per UTC day on which the sets' lives ended, and per window: a day's rate is final once
-- the day is over.
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

-- Milliseconds spent computing sets per UTC day of computation, batch and on demand apart,
-- wasted batch compute (so far) included in batch and shown on its own.
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

-- Down Migration
DROP VIEW compute_cost_by_day;
DROP VIEW waste_by_day;
DROP VIEW waste_by_run;
DROP VIEW recommendation_life;
DROP TABLE batch_chunks;
ALTER TABLE predictions DROP COLUMN chunk_no;
DROP INDEX batch_runs_open_idx;
ALTER TABLE batch_runs
  DROP COLUMN horizon_ms,
  DROP COLUMN planned_at,
  DROP COLUMN lease_until,
  DROP COLUMN plan_attempts,
  DROP COLUMN expected_coverage,
  DROP COLUMN expected_waste,
  DROP COLUMN compute_ms,
  DROP COLUMN error;
