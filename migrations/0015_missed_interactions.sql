-- Up Migration

-- Content staleness of each serve (issue 15): how many of the user's interactions happened at or
-- after the served set's computed_at and before the login, i.e. what the set could not know
-- (the recommender reads interactions strictly before computed_at). 0 for a set that is up to
-- date, null for fallback answers and for serves recorded before this column existed, or when
-- the count could not be had (README "Serves: login coverage, staleness, latency").
-- A nullable column without a default: no partition of serves is rewritten.
ALTER TABLE serves ADD COLUMN missed_interactions integer;

-- Missed interactions per UTC day and source, beside the age of the same serves. Read from
-- serves itself (no rollup yet), so it covers the days serves still holds (PREWARM_RETENTION).
-- A serve is behind when it missed at least one interaction.
CREATE VIEW missed_interactions_by_day AS
SELECT (at AT TIME ZONE 'UTC')::date AS day, source,
       count(*) AS serves,
       count(*) FILTER (WHERE missed_interactions > 0) AS behind_serves,
       (count(*) FILTER (WHERE missed_interactions > 0))::double precision / count(*) AS behind_share,
       sum(missed_interactions) AS missed_interactions,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY missed_interactions) AS missed_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY missed_interactions) AS missed_p95,
       max(missed_interactions) AS missed_max,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY staleness_ms) AS staleness_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY staleness_ms) AS staleness_p95_ms
  FROM serves
 WHERE missed_interactions IS NOT NULL
 GROUP BY 1, 2;

-- Down Migration
DROP VIEW missed_interactions_by_day;
ALTER TABLE serves DROP COLUMN missed_interactions;
