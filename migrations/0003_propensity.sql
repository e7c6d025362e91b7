-- Up Migration

-- Trained login-propensity models; the planner scores with the newest (by trained_at).
CREATE TABLE propensity_models (
  version text PRIMARY KEY,
  kind text NOT NULL,
  trained_at timestamptz NOT NULL DEFAULT now(),
  -- Training period: feature rows at each window start in [train_from, train_to).
  train_from timestamptz NOT NULL,
  train_to timestamptz NOT NULL CHECK (train_to > train_from),
  -- Length of the window the model predicts a login in.
  window_ms bigint NOT NULL CHECK (window_ms > 0),
  feature_names text[] NOT NULL,
  -- Coefficients, standardisation and format (src/propensity/model.ts).
  parameters jsonb NOT NULL,
  -- Platt scaling fitted on the latest windows of the training period.
  calibration jsonb NOT NULL,
  -- Fit and held-out metrics, with the reliability table by decile under "reliability".
  metrics jsonb NOT NULL
);
CREATE INDEX propensity_models_trained_idx ON propensity_models (trained_at DESC);

-- Reliability of each model's calibrated probabilities on its held-out windows, by decile:
--   SELECT decile, mean_predicted, observed_rate FROM propensity_model_reliability
--    WHERE version = (SELECT version FROM propensity_models ORDER BY trained_at DESC LIMIT 1);
CREATE VIEW propensity_model_reliability AS
SELECT m.version, m.trained_at, r.decile, r.count, r."minPredicted" AS min_predicted, r."maxPredicted" AS max_predicted,
       r."meanPredicted" AS mean_predicted, r."observedRate" AS observed_rate
  FROM propensity_models m,
       jsonb_to_recordset(m.metrics -> 'reliability')
         AS r (decile integer, count bigint, "minPredicted" double precision, "maxPredicted" double precision,
               "meanPredicted" double precision, "observedRate" double precision);

-- Per-user activity state for propensity features, one per window grid (window length and its
-- offset from UTC midnight, e.g. '86400000@0'), updated as logins arrive, so that scoring every
-- user is one scan of this table. `state` is STATE_SIZE float64s (src/propensity/state.ts).
CREATE TABLE propensity_state_grids (
  grid text PRIMARY KEY,
  window_ms bigint NOT NULL CHECK (window_ms > 0),
  phase_ms bigint NOT NULL CHECK (phase_ms >= 0),
  state_size integer NOT NULL,
  -- Latest login folded in by a catch-up scan of `logins`; the next scan starts a little before.
  observed_through timestamptz,
  built_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE propensity_state (
  grid text NOT NULL REFERENCES propensity_state_grids (grid) ON DELETE CASCADE,
  user_id text NOT NULL,
  first_login_at timestamptz NOT NULL,
  last_login_at timestamptz NOT NULL,
  state bytea NOT NULL,
  PRIMARY KEY (grid, user_id)
);

-- Down Migration
DROP TABLE propensity_state;
DROP TABLE propensity_state_grids;
DROP VIEW propensity_model_reliability;
DROP TABLE propensity_models;
