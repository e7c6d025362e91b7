-- Up Migration

-- Which users the planner may precompute for (issue 12: a `--policy all` run spent 87.6% of
-- its sets on ids seen only as unknown-user requests). A user is known from the earliest of
--   - their first interaction (imported, or fed by a replay): the recommender has a history
--     to personalise from, so a precomputed set differs from the popular-items fallback;
--   - their first login imported from a file: history the operator vouches for.
-- A login recorded by the API (a request for recommendations) does not make a user known by
-- itself: any id can be asked for. It still counts in user_activity for a known user.
-- NULL: not known. Maintained by src/activity/user-activity.ts only.
ALTER TABLE user_activity ADD COLUMN known_since timestamptz;

-- Existing users: known from their first interaction; failing that, from their first login,
-- unless every login of theirs prewarm answered was an unknown-user fallback (ids seen only as
-- unknown-user requests).
-- Set-based (serves has no index on user_id): one aggregate over each table.
WITH first_interaction AS (
  SELECT user_id, min(at) AS at FROM interactions GROUP BY user_id
), only_unknown AS (
  SELECT user_id FROM serves GROUP BY user_id HAVING bool_and(reason IS NOT DISTINCT FROM 'unknown_user')
)
UPDATE user_activity ua
   SET known_since = coalesce(fi.at, CASE WHEN ou.user_id IS NULL THEN ua.first_login_at END)
  FROM user_activity u
  LEFT JOIN first_interaction fi ON fi.user_id = u.user_id
  LEFT JOIN only_unknown ou ON ou.user_id = u.user_id
 WHERE u.user_id = ua.user_id;

-- Down Migration
ALTER TABLE user_activity DROP COLUMN known_since;
