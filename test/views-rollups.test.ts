import { afterEach, describe, expect, it } from 'vitest';
import { readmeViewQueries } from '../scripts/bench/views.ts';
import { systemClock } from '../src/clock.ts';
import type { Queryable } from '../src/db/pool.ts';
import { createPartitionMaintenance } from '../src/maintenance/partitions.ts';
import { createTestDb, silentLog, type TestDb } from './helpers.ts';

// A known history, 70 days back (so that a 30-day retention drops the months holding it): window
// `nightly`, runs r1 (day 0) and r2 (day 1), finished, and r3 (started two hours ago, still fresh).
//   r1: a (2 ms) served at +2 h; b (4 ms) never served, wasted; c holdout (8 ms) served at +5 h.
//   b gets an on-demand set (0.5 ms) at day 1 +0.5 h, replaced by r2's set at day 1 +1 h.
//   d, a new user, gets an on-demand set (16 ms) at day 0 +3 h.
//   r2: a (2 ms) served at day 1 +2 h; b (1 ms) never served, wasted.
//   r3: a (3 ms), computed an hour ago: its life has not ended.
// Compute times are binary fractions, so every sum is exact in any order.
const HISTORY = `
DO $$
DECLARE d0 timestamptz := date_trunc('day', now()) - interval '70 days';
BEGIN
  INSERT INTO windows (name, cron, timezone, horizon_ms, ttl_ms, policy) VALUES ('nightly', '0 0 * * *', 'UTC', 86400000, 86400000, 'coverage:0.8');
  INSERT INTO batch_runs (id, window_name, scheduled_for, started_at, finished_at, expires_at, policy, status, selected, holdout, precomputed) VALUES
    (1, 'nightly', d0, d0, d0 + interval '1 hour', d0 + interval '1 day', 'coverage:0.8', 'completed', 2, 1, 3),
    (2, 'nightly', d0 + interval '1 day', d0 + interval '1 day', d0 + interval '25 hours', d0 + interval '2 days', 'coverage:0.8', 'completed', 2, 0, 2),
    (3, 'nightly', now() - interval '2 hours', now() - interval '2 hours', now() - interval '1 hour', now() + interval '22 hours', 'coverage:0.8', 'completed', 1, 0, 1);
  INSERT INTO logins (user_id, at) VALUES
    ('a', d0 - interval '5 days'), ('b', d0 - interval '5 days'), ('c', d0 - interval '5 days'),
    ('a', d0 + interval '2 hours'), ('c', d0 + interval '5 hours'), ('d', d0 + interval '3 hours'),
    ('b', d0 + interval '1 day 30 minutes'), ('a', d0 + interval '1 day 2 hours');
  INSERT INTO user_activity (user_id, first_login_at, last_login_at, login_count, known_since)
  SELECT user_id, min(at), max(at), count(*), min(at) FROM logins GROUP BY user_id;
  INSERT INTO recommendations (id, user_id, source, run_id, holdout, computed_at, expires_at, item_ids, scores, model_version, compute_ms, first_served_at, serve_count) VALUES
    ('00000000-0000-0000-0000-00000000000a', 'a', 'batch', 1, false, d0 + interval '1 hour', d0 + interval '1 day', '{i1,i2}', '{0.5,0.25}', 'v1', 2, d0 + interval '2 hours', 1),
    ('00000000-0000-0000-0000-00000000000b', 'b', 'batch', 1, false, d0 + interval '1 hour', d0 + interval '1 day', '{i2}', '{0.5}', 'v1', 4, NULL, 0),
    ('00000000-0000-0000-0000-00000000000c', 'c', 'batch', 1, true, d0 + interval '1 hour', d0 + interval '1 day', '{i3}', '{0.5}', 'v1', 8, d0 + interval '5 hours', 1),
    ('00000000-0000-0000-0000-0000000000d1', 'd', 'on_demand', NULL, false, d0 + interval '3 hours', d0 + interval '1 day 3 hours', '{i1}', '{0.5}', 'v1', 16, d0 + interval '3 hours', 1),
    ('00000000-0000-0000-0000-0000000000b1', 'b', 'on_demand', NULL, false, d0 + interval '1 day 30 minutes', d0 + interval '2 days 30 minutes', '{i1}', '{0.5}', 'v1', 0.5, d0 + interval '1 day 30 minutes', 1),
    ('00000000-0000-0000-0000-0000000002a0', 'a', 'batch', 2, false, d0 + interval '1 day 1 hour', d0 + interval '2 days', '{i1}', '{0.5}', 'v1', 2, d0 + interval '1 day 2 hours', 1),
    ('00000000-0000-0000-0000-0000000002b0', 'b', 'batch', 2, false, d0 + interval '1 day 1 hour', d0 + interval '2 days', '{i2}', '{0.5}', 'v1', 1, NULL, 0),
    ('00000000-0000-0000-0000-0000000003a0', 'a', 'batch', 3, false, now() - interval '1 hour', now() + interval '22 hours', '{i1}', '{0.5}', 'v1', 3, NULL, 0);
  INSERT INTO serves (id, user_id, at, source, recommendation_id, staleness_ms, latency_ms, reason) VALUES
    (gen_random_uuid(), 'a', d0 + interval '2 hours', 'precomputed', '00000000-0000-0000-0000-00000000000a', 3600000, 2, NULL),
    (gen_random_uuid(), 'c', d0 + interval '5 hours', 'precomputed', '00000000-0000-0000-0000-00000000000c', 14400000, 3, NULL),
    (gen_random_uuid(), 'd', d0 + interval '3 hours', 'on_demand', '00000000-0000-0000-0000-0000000000d1', 0, 40, NULL),
    (gen_random_uuid(), 'b', d0 + interval '1 day 30 minutes', 'on_demand', '00000000-0000-0000-0000-0000000000b1', 0, 30, NULL),
    (gen_random_uuid(), 'a', d0 + interval '1 day 2 hours', 'precomputed', '00000000-0000-0000-0000-0000000002a0', 3600000, 2, NULL);
  INSERT INTO predictions (run_id, user_id, p, selected, holdout, created_at) VALUES
    (1, 'a', 0.9, true, false, d0), (1, 'b', 0.6, true, false, d0), (1, 'c', 0.1, false, true, d0),
    (2, 'a', 0.9, true, false, d0 + interval '1 day'), (2, 'b', 0.7, true, false, d0 + interval '1 day');
END
$$;`;

const day = (offset: number) => {
  const d0 = Math.floor(Date.now() / 86_400_000) * 86_400_000 - 70 * 86_400_000;
  return new Date(d0 + offset * 86_400_000).toISOString().slice(0, 10);
};

async function figures(db: Queryable) {
  const rows = async (text: string) => (await db.query(text)).rows;
  return {
    wasteByRun: await rows(`SELECT run_id::int, precomputes::int, ended::int, served::int, wasted::int, waste_rate, compute_ms, wasted_compute_ms,
                                   holdout_precomputes::int, holdout_ended::int, holdout_wasted::int, holdout_waste_rate FROM waste_by_run ORDER BY run_id`),
    wasteByDay: await rows(`SELECT day::text, window_name, ended::int, wasted::int, waste_rate, wasted_compute_ms, holdout_ended::int, holdout_wasted::int
                              FROM waste_by_day ORDER BY day, window_name`),
    costByDay: await rows(`SELECT day::text, batch_sets::int, batch_compute_ms, batch_wasted_compute_ms, holdout_compute_ms, on_demand_sets::int,
                                  on_demand_compute_ms, total_compute_ms FROM compute_cost_by_day WHERE day < current_date - 30 ORDER BY day`),
    coverageByRun: await rows(`SELECT run_id::int, active_known::int, covered::int, coverage, holdout_hits::int FROM coverage_by_run WHERE run_id < 3 ORDER BY run_id`),
    coverageByDay: await rows(`SELECT day::text, window_name, active_known::int, covered::int, coverage FROM coverage_by_day WHERE day < current_date - 30 ORDER BY day`),
    calibration: await rows(`SELECT decile, predictions::int, round(mean_predicted::numeric, 6)::float8 AS mean_predicted, actual_rate::float8 FROM calibration_by_decile ORDER BY decile`),
  };
}

const EXPECTED = {
  wasteByRun: [
    { run_id: 1, precomputes: 2, ended: 2, served: 1, wasted: 1, waste_rate: 0.5, compute_ms: 6, wasted_compute_ms: 4, holdout_precomputes: 1, holdout_ended: 1, holdout_wasted: 0, holdout_waste_rate: 0 },
    { run_id: 2, precomputes: 2, ended: 2, served: 1, wasted: 1, waste_rate: 0.5, compute_ms: 3, wasted_compute_ms: 1, holdout_precomputes: 0, holdout_ended: 0, holdout_wasted: 0, holdout_waste_rate: null },
    { run_id: 3, precomputes: 1, ended: 0, served: 0, wasted: 0, waste_rate: null, compute_ms: 3, wasted_compute_ms: 0, holdout_precomputes: 0, holdout_ended: 0, holdout_wasted: 0, holdout_waste_rate: null },
  ],
  wasteByDay: [
    { day: day(1), window_name: 'nightly', ended: 2, wasted: 1, waste_rate: 0.5, wasted_compute_ms: 4, holdout_ended: 1, holdout_wasted: 0 },
    { day: day(2), window_name: 'nightly', ended: 2, wasted: 1, waste_rate: 0.5, wasted_compute_ms: 1, holdout_ended: 0, holdout_wasted: 0 },
  ],
  costByDay: [
    { day: day(0), batch_sets: 3, batch_compute_ms: 14, batch_wasted_compute_ms: 4, holdout_compute_ms: 8, on_demand_sets: 1, on_demand_compute_ms: 16, total_compute_ms: 30 },
    { day: day(1), batch_sets: 2, batch_compute_ms: 3, batch_wasted_compute_ms: 1, holdout_compute_ms: 0, on_demand_sets: 1, on_demand_compute_ms: 0.5, total_compute_ms: 3.5 },
  ],
  coverageByRun: [
    // r1: a covered, c a holdout hit, d not known yet; r2: b logged in before r2's set existed.
    { run_id: 1, active_known: 2, covered: 1, coverage: 0.5, holdout_hits: 1 },
    { run_id: 2, active_known: 2, covered: 1, coverage: 0.5, holdout_hits: 0 },
  ],
  coverageByDay: [
    { day: day(0), window_name: 'nightly', active_known: 2, covered: 1, coverage: 0.5 },
    { day: day(1), window_name: 'nightly', active_known: 2, covered: 1, coverage: 0.5 },
  ],
  // Ended runs r1, r2: five scores in order c .1, b .6, b .7, a .9, a .9 (one user each) fall in
  // deciles 1, 3, 5, 7, 9; b did not log in during r1's window.
  calibration: [
    { decile: 1, predictions: 1, mean_predicted: 0.1, actual_rate: 1 },
    { decile: 3, predictions: 1, mean_predicted: 0.6, actual_rate: 0 },
    { decile: 5, predictions: 1, mean_predicted: 0.7, actual_rate: 1 },
    { decile: 7, predictions: 1, mean_predicted: 0.9, actual_rate: 1 },
    { decile: 9, predictions: 1, mean_predicted: 0.9, actual_rate: 1 },
  ],
};

describe('rolled-up waste, cost, coverage and calibration views (migration 0011)', () => {
  let db: TestDb | undefined;
  afterEach(async () => db?.drop());

  it('give the exact figures from the raw tables, from the rollups, and after retention dropped the raw history', async () => {
    db = await createTestDb();
    await db.pool.query(HISTORY);
    // Nothing rolled up: everything computed from the raw tables.
    expect(await figures(db.pool)).toEqual(EXPECTED);

    const keepAll = createPartitionMaintenance({ pool: db.pool, clock: systemClock, log: silentLog, retentionMs: 3_650 * 86_400_000 });
    const report = await keepAll.run();
    expect(report.actions.filter((a) => a.kind === 'rollup' && a.table === 'waste_runs')).toMatchObject([{ runs: 2 }]);
    const rolled = await db.pool.query(
      `SELECT (SELECT count(*)::int FROM waste_daily) wd, (SELECT count(*)::int FROM cost_daily WHERE batch_sets + on_demand_sets > 0) cd,
              (SELECT count(*)::int FROM waste_runs) wr, (SELECT count(*)::int FROM coverage_runs) cr`,
    );
    expect(rolled.rows[0]).toEqual({ wd: 2, cd: 2, wr: 2, cr: 2 });
    expect((await db.pool.query(`SELECT runs::int[] AS runs, count(*)::int AS n FROM calibration_snapshot GROUP BY runs`)).rows).toEqual([{ runs: [1, 2], n: 5 }]);
    expect(await figures(db.pool)).toEqual(EXPECTED);

    // A 30-day retention drops the partitions of the history (70 days back); r3 keeps its own.
    const report30 = await createPartitionMaintenance({ pool: db.pool, clock: systemClock, log: silentLog, retentionMs: 30 * 86_400_000 }).run();
    const dropped = report30.actions.filter((a) => a.kind === 'drop').map((a) => ('table' in a ? a.table : ''));
    expect(new Set(dropped)).toEqual(new Set(['logins', 'serves', 'recommendations', 'predictions']));
    const left = await db.pool.query(`SELECT (SELECT count(*)::int FROM recommendations) r, (SELECT count(*)::int FROM logins WHERE at < now() - interval '30 days') l`);
    expect(left.rows[0]).toEqual({ r: 1, l: 0 });
    expect(await figures(db.pool)).toEqual(EXPECTED);
  });

  it('keep raw partitions a view still reads: runs not rolled up hold back retention', async () => {
    db = await createTestDb();
    await db.pool.query(HISTORY);
    // r1 never finished: it is not rolled up, so what its raw figures read stays.
    await db.pool.query(`UPDATE batch_runs SET status = 'running' WHERE id = 1`);
    const report = await createPartitionMaintenance({ pool: db.pool, clock: systemClock, log: silentLog, retentionMs: 30 * 86_400_000 }).run();
    expect(report.actions.filter((a) => a.kind === 'drop' && (a.table === 'recommendations' || a.table === 'serves'))).toEqual([]);
    expect(report.actions.filter((a) => a.kind === 'keep' && a.reason === 'not rolled up yet').length).toBeGreaterThan(0);
    expect((await figures(db.pool)).wasteByRun[0]).toEqual(EXPECTED.wasteByRun[0]);
  });
});

describe("README's analysts' guide", () => {
  let db: TestDb | undefined;
  afterEach(async () => db?.drop());

  it('runs every example query of "For analysts: the views", on raw tables and on rollups', async () => {
    const queries = readmeViewQueries();
    const views = new Set(queries.map((q) => q.view));
    for (const view of ['recommendation_items', 'recommendation_life', 'waste_by_run', 'waste_by_day', 'compute_cost_by_day', 'coverage_by_run', 'coverage_by_day',
      'login_coverage_by_day', 'staleness_by_day', 'latency_by_day', 'calibration_by_decile', 'propensity_model_reliability', 'model_quality_by_run']) {
      expect(views, `README has an example query for ${view}`).toContain(view);
    }
    db = await createTestDb();
    await db.pool.query(HISTORY);
    const run = async () => {
      for (const query of queries) await expect(db!.pool.query(query.sql), query.sql).resolves.toBeDefined();
    };
    await run();
    await createPartitionMaintenance({ pool: db.pool, clock: systemClock, log: silentLog, retentionMs: 3_650 * 86_400_000 }).run();
    await run();
  });
});
