// A known history for the dashboard and `prewarm runs` tests: three daily runs of window
// `nightly` that ended days ago, with their sets, logins and serves, and a propensity model.
// Every figure the dashboard shows follows from it by hand:
//
// each day k (4, 3 and 2 days before today, UTC): run at 00:00, sets fresh until 12:00;
//   10 users scored (u0…u9), 4 selected and precomputed (u0…u3, 100 ms each);
//   u0, u1, u2 log in at 06:00, served precomputed, 5 h 55 min after their set was computed;
//   u3 does not log in (its set is wasted); u4 logs in at 07:00, computed on demand (200 ms);
//   a new user logs in at 08:00 and gets popular items (fallback, unknown_user).
// So, per day and over the period: waste 1/4 = 25%, coverage 3/4 = 75% (u0–u2 of u0–u2 + u4),
// login coverage 3/5 = 60%, on-demand share 1/5 = 20%, median age 5.9 h; compute spent
// 400 + 200 = 600 ms a day against 10 × 100 = 1,000 ms to precompute everyone: 40% saved.
// The last run also has a chunk that failed one user.
import { randomUUID } from 'node:crypto';
import type { Pool } from '../src/db/pool.ts';

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
export const STALENESS_MS = 5 * HOUR_MS + 55 * 60_000;

export interface SeededHistory {
  /** The three days, oldest first, as `YYYY-MM-DD`. */
  days: string[];
  runIds: number[];
  modelVersion: string;
}

export async function seedHistory(pool: Pool, now = new Date()): Promise<SeededHistory> {
  const today = Math.floor(now.getTime() / DAY_MS) * DAY_MS;
  const starts = [4, 3, 2].map((k) => today - k * DAY_MS);
  await pool.query(`INSERT INTO windows (name, cron, timezone, horizon_ms, ttl_ms, policy) VALUES ('nightly', '0 0 * * *', 'UTC', $1, $1, 'coverage:0.8')`, [12 * HOUR_MS]);
  const users = Array.from({ length: 10 }, (_, i) => `u${i}`);
  await pool.query(
    `INSERT INTO user_activity (user_id, first_login_at, last_login_at, login_count) SELECT u, '2020-01-01', '2020-01-01', 1 FROM unnest($1::text[]) u`,
    [users],
  );
  const runIds: number[] = [];
  for (const [k, start] of starts.entries()) {
    const at = (ms: number) => new Date(start + ms);
    const last = k === starts.length - 1;
    const run = await pool.query<{ id: string }>(
      `INSERT INTO batch_runs (window_name, scheduled_for, started_at, planned_at, finished_at, expires_at, horizon_ms, model_version, policy,
                               candidates, selected, holdout, precomputed, failed, chunks_total, chunks_done, status, compute_ms, expected_coverage, expected_waste)
       VALUES ('nightly', $1, $1, $2, $3, $4, $5, 'logistic-test', 'coverage:0.8', 10, $6, 0, 4, $7, $8, $8, 'completed', 400, 0.8, 0.3) RETURNING id`,
      [at(0), at(20_000), at(6 * 60_000), at(12 * HOUR_MS), 12 * HOUR_MS, last ? 5 : 4, last ? 1 : 0, last ? 2 : 1],
    );
    const runId = Number(run.rows[0]?.id);
    runIds.push(runId);
    await pool.query(`INSERT INTO batch_chunks (run_id, chunk_no, users, done_at, precomputed, failed, compute_ms) VALUES ($1, 0, 4, $2, 4, 0, 400)`, [runId, at(6 * 60_000)]);
    if (last) {
      await pool.query(`INSERT INTO batch_chunks (run_id, chunk_no, users, done_at, precomputed, failed, compute_ms, error) VALUES ($1, 1, 1, $2, 0, 1, 0, 'recommender timed out')`, [runId, at(6 * 60_000)]);
    }
    const setIds = new Map<string, string>();
    for (const user of users.slice(0, 4)) {
      const id = randomUUID();
      setIds.set(user, id);
      await pool.query(
        `INSERT INTO recommendations (id, user_id, source, run_id, computed_at, expires_at, model_version, compute_ms, item_ids, scores)
         VALUES ($1, $2, 'batch', $3, $4, $5, 'item-cf-test', 100, '{i1,i2}', '{0.9,0.8}')`,
        [id, user, runId, at(5 * 60_000), at(12 * HOUR_MS)],
      );
    }
    for (const user of ['u0', 'u1', 'u2']) {
      await pool.query(`INSERT INTO logins (user_id, at) VALUES ($1, $2)`, [user, at(6 * HOUR_MS)]);
      await pool.query(
        `INSERT INTO serves (id, user_id, at, source, recommendation_id, staleness_ms, latency_ms) VALUES ($1, $2, $3, 'precomputed', $4, $5, 3)`,
        [randomUUID(), user, at(6 * HOUR_MS), setIds.get(user), STALENESS_MS],
      );
      await pool.query(`UPDATE recommendations SET first_served_at = $2, serve_count = 1 WHERE id = $1`, [setIds.get(user), at(6 * HOUR_MS)]);
    }
    const onDemand = randomUUID();
    await pool.query(
      `INSERT INTO recommendations (id, user_id, source, computed_at, expires_at, model_version, compute_ms, item_ids, scores, first_served_at, serve_count)
       VALUES ($1, 'u4', 'on_demand', $2, $3, 'item-cf-test', 200, '{i3}', '{0.7}', $2, 1)`,
      [onDemand, at(7 * HOUR_MS), at(8 * HOUR_MS)],
    );
    await pool.query(`INSERT INTO logins (user_id, at) VALUES ('u4', $1)`, [at(7 * HOUR_MS)]);
    await pool.query(`INSERT INTO serves (id, user_id, at, source, recommendation_id, staleness_ms, latency_ms) VALUES ($1, 'u4', $2, 'on_demand', $3, 0, 80)`, [randomUUID(), at(7 * HOUR_MS), onDemand]);
    const newcomer = `new${k}`;
    await pool.query(`INSERT INTO logins (user_id, at) VALUES ($1, $2)`, [newcomer, at(8 * HOUR_MS)]);
    await pool.query(`INSERT INTO user_activity (user_id, first_login_at, last_login_at, login_count) VALUES ($1, $2, $2, 1)`, [newcomer, at(8 * HOUR_MS)]);
    await pool.query(`INSERT INTO serves (id, user_id, at, source, latency_ms, reason) VALUES ($1, $2, $3, 'fallback', 1, 'unknown_user')`, [randomUUID(), newcomer, at(8 * HOUR_MS)]);
  }
  const modelVersion = 'logistic-20240101-test';
  const reliability = Array.from({ length: 10 }, (_, i) => ({
    decile: i + 1,
    count: 100,
    minPredicted: i / 10,
    maxPredicted: (i + 1) / 10,
    meanPredicted: (i + 0.5) / 10,
    observedRate: Math.min(1, (i + 0.5) / 10 + (i % 2 === 0 ? 0.02 : -0.02)),
  }));
  await pool.query(
    `INSERT INTO propensity_models (version, kind, trained_at, train_from, train_to, window_ms, feature_names, parameters, calibration, metrics)
     VALUES ($1, 'logistic', $2, '2024-01-01', '2024-02-01', $3, '{f}', '{}', '{}', $4)`,
    [modelVersion, new Date(starts[0] as number), DAY_MS, JSON.stringify({ reliability })],
  );
  return { days: starts.map((s) => new Date(s).toISOString().slice(0, 10)), runIds, modelVersion };
}
