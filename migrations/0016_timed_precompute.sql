-- Up Migration

-- Precompute timed to the login (src/planner/timing.ts). A window with timing 'predicted' still
-- decides once per occurrence who is precomputed, but gives each selected user a compute time:
-- the start of the slot (timing_slot_ms long, from the occurrence) just before their likely first
-- login, judged from the hour-of-day histogram of their activity state. 'midnight' (the default)
-- computes everybody at the occurrence, as before.
ALTER TABLE windows
  ADD COLUMN timing text NOT NULL DEFAULT 'midnight' CHECK (timing IN ('midnight', 'predicted')),
  ADD COLUMN timing_slot_ms bigint NOT NULL DEFAULT 3600000 CHECK (timing_slot_ms > 0),
  -- The accepted chance that a user's first login of the horizon comes before their set.
  ADD COLUMN timing_risk real NOT NULL DEFAULT 0.02 CHECK (timing_risk >= 0 AND timing_risk < 1);

-- A timed run is marked when claimed (timing), and once its chunks are cut by compute time
-- (timed_at): until then no chunk of it may be enqueued, whoever planned its shards.
ALTER TABLE batch_runs
  ADD COLUMN timing text,
  ADD COLUMN timing_slot_ms bigint,
  ADD COLUMN timing_risk real,
  ADD COLUMN timed_at timestamptz;

-- When a chunk is due (NULL: at once, as every chunk of an untimed run) and when a dispatcher
-- released it to the queue. The compute time lives here, in Postgres, so a restarted scheduler
-- finds every user it has not yet dispatched.
ALTER TABLE batch_chunks
  ADD COLUMN due_at timestamptz,
  ADD COLUMN dispatched_at timestamptz;
CREATE INDEX batch_chunks_held_idx ON batch_chunks (due_at) WHERE dispatched_at IS NULL AND due_at IS NOT NULL;

-- Down Migration
DROP INDEX batch_chunks_held_idx;
ALTER TABLE batch_chunks DROP COLUMN dispatched_at, DROP COLUMN due_at;
ALTER TABLE batch_runs DROP COLUMN timed_at, DROP COLUMN timing_risk, DROP COLUMN timing_slot_ms, DROP COLUMN timing;
ALTER TABLE windows DROP COLUMN timing_risk, DROP COLUMN timing_slot_ms, DROP COLUMN timing;
