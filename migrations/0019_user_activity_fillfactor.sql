-- Up Migration

-- Every login updates its user's user_activity row (src/activity/user-activity.ts). On full pages
-- each such update wrote a new row version elsewhere and a new entry in the primary key (4 of
-- 1 000 updates were HOT in a measured flush); with a fifth of each page free, the new version
-- stays on its page and the index is not touched (a heap-only tuple). Pages written from now on
-- keep the room; existing ones get it as they are rewritten (VACUUM FULL or pg_repack, at a
-- quiet hour: not done here, as it locks the table).
ALTER TABLE user_activity SET (fillfactor = 80);

-- Down Migration

ALTER TABLE user_activity RESET (fillfactor);
