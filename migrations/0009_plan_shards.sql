-- Up Migration

-- Sharded planning (src/planner/shard-plan.ts): one row per (run, phase step, shard). A phase's
-- result is recorded once; a `select` claims its row inside the transaction that writes the
-- shard's predictions and chunks, so a duplicated or retried shard job writes nothing twice.
CREATE TABLE plan_shards (
  run_id bigint NOT NULL REFERENCES batch_runs (id) ON DELETE CASCADE,
  step text NOT NULL,
  shard integer NOT NULL CHECK (shard >= 0),
  started_at timestamptz,
  done_at timestamptz,
  result jsonb,
  PRIMARY KEY (run_id, step, shard)
);

-- How a run was planned: its shard count, the share of unselected, non-holdout users whose
-- prediction was kept, and how many predictions rows it wrote.
ALTER TABLE batch_runs
  ADD COLUMN shards integer NOT NULL DEFAULT 1,
  ADD COLUMN prediction_sample_rate double precision NOT NULL DEFAULT 1,
  ADD COLUMN predictions_written bigint;

-- predictions keeps every selected and holdout user and a sample of the others; `weight` is the
-- inverse of the probability a row was kept (1 for selected and holdout users), so weighted sums
-- over predictions estimate sums over every scored user.
ALTER TABLE predictions ADD COLUMN weight real NOT NULL DEFAULT 1;

-- Calibration by decile of the (weighted) scored population: a row weighing w stands for w users.
DROP VIEW calibration_by_decile;
CREATE VIEW calibration_by_decile AS
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

-- Down Migration
DROP VIEW calibration_by_decile;
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
ALTER TABLE predictions DROP COLUMN weight;
ALTER TABLE batch_runs DROP COLUMN shards, DROP COLUMN prediction_sample_rate, DROP COLUMN predictions_written;
DROP TABLE plan_shards;
