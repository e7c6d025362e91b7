-- Up Migration

-- Champion and challenger (src/propensity/champion.ts). A model without a row here serves as it
-- always did (the newest serves: `train-propensity`, a replay's retraining). A model the scheduler
-- trains while another serves starts as a 'challenger': it only scores in shadow until its figures
-- on the same users promote it ('champion', serving from decided_at) or reject it ('rejected',
-- figures kept). The serving model: the latest by coalesce(decided_at, trained_at) among models
-- without a row or with role 'champion'.
CREATE TABLE propensity_model_roles (
  version text PRIMARY KEY REFERENCES propensity_models (version) ON DELETE CASCADE,
  role text NOT NULL CHECK (role IN ('challenger', 'champion', 'rejected')),
  decided_at timestamptz NOT NULL,
  -- 'scheduler' (trained on schedule, decided on the outcomes) or 'operator' (prewarm models).
  decided_by text NOT NULL,
  -- Champion and challenger on the same recorded users: runs, users, positives, AP, ECE each.
  figures jsonb,
  reason text
);

-- The challenger's score for the users a run recorded in `predictions`, written after the run
-- was planned (the states are rewound to the window start, so it scores what the planner would
-- have). Weights are those of the predictions rows.
CREATE TABLE challenger_predictions (
  run_id bigint NOT NULL REFERENCES batch_runs (id) ON DELETE CASCADE,
  version text NOT NULL REFERENCES propensity_models (version) ON DELETE CASCADE,
  user_id text NOT NULL,
  p real NOT NULL,
  PRIMARY KEY (run_id, version, user_id)
);

-- Live quality of each run whose horizon has ended, written once by the scheduler's quality pass
-- (src/propensity/quality.ts): ranking and calibration of the scores the planner used against the
-- logins that followed, over the recorded users weighted by `predictions.weight` (every selected
-- and holdout user, a weighted sample of the others), so the figures estimate the whole scored
-- population. Coverage and waste are those of coverage_by_run and waste_by_run when the row was
-- written (the horizon is over, so they are final).
CREATE TABLE model_quality_runs (
  run_id bigint PRIMARY KEY REFERENCES batch_runs (id) ON DELETE CASCADE,
  model_version text,
  computed_at timestamptz NOT NULL,
  recorded_users bigint NOT NULL,
  -- Σ weight: the scored users the recorded ones stand for, and those of them who logged in.
  scored_users double precision NOT NULL,
  logged_in double precision NOT NULL,
  average_precision double precision,
  roc_auc double precision,
  calibration_error double precision,
  -- [{ decile, count, minPredicted, maxPredicted, meanPredicted, observedRate }], weighted deciles.
  reliability jsonb NOT NULL,
  coverage double precision,
  waste double precision,
  holdout_users bigint NOT NULL,
  holdout_logged_in bigint NOT NULL,
  -- Holdout users are a random draw among the unselected: the share who logged in anyway.
  holdout_miss_rate double precision,
  -- What the model measured on its held-out week at training, and whether live quality fell
  -- below it by more than PREWARM_PROPENSITY_DRIFT_MARGIN.
  trained_average_precision double precision,
  trained_calibration_error double precision,
  drifted boolean NOT NULL DEFAULT false
);

CREATE VIEW model_quality_by_run AS
SELECT q.run_id, b.window_name, b.scheduled_for, b.expires_at, b.policy, q.model_version, q.computed_at,
       q.recorded_users, q.scored_users, q.logged_in, q.average_precision, q.roc_auc, q.calibration_error,
       q.reliability, q.coverage, q.waste, q.holdout_users, q.holdout_logged_in, q.holdout_miss_rate,
       q.trained_average_precision, q.trained_calibration_error,
       q.average_precision - q.trained_average_precision AS average_precision_change,
       q.calibration_error - q.trained_calibration_error AS calibration_error_change,
       q.drifted
  FROM model_quality_runs q
  JOIN batch_runs b ON b.id = q.run_id;

-- The same runs' reliability by decile, one row per decile.
CREATE VIEW model_reliability_by_run AS
SELECT q.run_id, q.model_version, r.decile, r.count, r."meanPredicted" AS mean_predicted, r."observedRate" AS observed_rate
  FROM model_quality_runs q,
       jsonb_to_recordset(q.reliability) AS r (decile integer, count double precision, "meanPredicted" double precision, "observedRate" double precision);

-- Down Migration
DROP VIEW model_reliability_by_run;
DROP VIEW model_quality_by_run;
DROP TABLE model_quality_runs;
DROP TABLE challenger_predictions;
DROP TABLE propensity_model_roles;
