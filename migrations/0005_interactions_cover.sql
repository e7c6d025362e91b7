-- Up Migration

-- The recommender reads each user's history before an instant; rows are stored in time order,
-- so without a covering index every user's rows sit on many pages (measured: 0.5–1 ms per user
-- in a chunk of 500 without it, ≈0.2 ms with it, on oulad-2013).
CREATE INDEX interactions_user_cover_idx ON interactions (user_id, at) INCLUDE (item_id, weight);

-- Down Migration
DROP INDEX interactions_user_cover_idx;
