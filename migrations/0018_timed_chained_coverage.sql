-- Up Migration

-- Timed sets chain (src/planner/timing.ts): a set of a timed run of a daily (or longer) window
-- lives one horizon past its run's end, superseded by the user's next set, so a login that comes
-- before the user's new set is served the previous one (older) instead of on demand. Coverage
-- counts what the login found: a run's active known user is covered by the run's own set computed
-- at or before their first login (as before), or by a policy set of one of the window's earlier
-- timed runs still live at that login. Untimed windows are unchanged: their sets expire when the
-- next run starts, so no earlier run's set is live in a later run.
-- (The coverage_runs rollup selects from this function: src/maintenance/sql.ts fillCoverageRuns.)
CREATE OR REPLACE FUNCTION coverage_of_runs(run_ids bigint[])
RETURNS TABLE (run_id bigint, active_known bigint, covered bigint, holdout_hits bigint)
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT SET jit = off SET work_mem = '64MB' SET max_parallel_workers_per_gather = 0 AS $fn$
BEGIN
  RETURN QUERY EXECUTE $q$
  WITH runs AS (
    SELECT b.id, b.window_name, b.scheduled_for, b.expires_at FROM batch_runs b WHERE b.id = ANY ($1)
  ), sources AS (
    -- Each run's own sets, and those of the window's earlier timed runs that may still be live in it.
    SELECT b.id AS for_run, b.id AS set_run FROM runs b
    UNION ALL
    SELECT b.id, o.id FROM runs b
      JOIN batch_runs o ON o.window_name = b.window_name AND o.timing IS NOT NULL AND o.scheduled_for < b.scheduled_for
                       AND o.expires_at + o.horizon_ms * interval '1 millisecond' > b.scheduled_for
  ), active AS (
    SELECT b.id AS run_id, l.user_id, min(l.at) AS first_at
      FROM runs b
      CROSS JOIN LATERAL (SELECT user_id, at FROM logins WHERE at >= b.scheduled_for AND at < b.expires_at) l
      JOIN user_activity ua ON ua.user_id = l.user_id AND ua.first_login_at < b.scheduled_for
     GROUP BY b.id, l.user_id
  ), judged AS (
    -- The sets in one pass (an index range per partition), not a probe of every partition per
    -- active user; a policy set counts over a holdout one, as a run has one set per user.
    SELECT DISTINCT ON (a.run_id, a.user_id) a.run_id, a.user_id, r.holdout
      FROM active a
      LEFT JOIN (SELECT s.for_run, r.user_id, r.computed_at, r.expires_at, r.holdout, r.run_id = s.for_run AS own
                   FROM sources s JOIN recommendations r ON r.run_id = s.set_run
                  WHERE r.run_id IN (SELECT set_run FROM sources)) r
        ON r.for_run = a.run_id AND r.user_id = a.user_id AND r.computed_at <= a.first_at
       AND (r.own OR (r.expires_at > a.first_at AND NOT r.holdout))
     ORDER BY a.run_id, a.user_id, r.holdout
  )
  SELECT b.id, count(j.user_id), count(j.user_id) FILTER (WHERE j.holdout = false), count(j.user_id) FILTER (WHERE j.holdout)
    FROM runs b
    LEFT JOIN judged j ON j.run_id = b.id
   GROUP BY b.id
  $q$ USING run_ids;
END
$fn$;

-- Down Migration
CREATE OR REPLACE FUNCTION coverage_of_runs(run_ids bigint[])
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
