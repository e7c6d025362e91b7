import { runner } from 'node-pg-migrate';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../src/clock.ts';
import { MIGRATIONS_DIR, migrate } from '../src/db/migrate.ts';
import type { PoolClient } from '../src/db/pool.ts';
import { createPartitionMaintenance } from '../src/maintenance/partitions.ts';
import { createTestDb, silentLog, type TestDb } from './helpers.ts';

// Migration 0008 partitions four tables in place. The analysts' views must read the same rows
// from the same data before it, after it, after maintenance (rollup for closed days, default
// rows moved into partitions) and after its down migration.

const VIEWS = [
  'recommendation_life',
  'waste_by_run',
  'waste_by_day',
  'compute_cost_by_day',
  'coverage_by_run',
  'coverage_by_day',
  'login_coverage_by_day',
  'staleness_by_day',
  'latency_by_day',
  'calibration_by_decile',
  'recommendation_items',
];

// 60 days of history for 300 users: daily runs with predictions and batch sets, on-demand sets,
// logins (and some 120 days back), serves of every source. Instants are offsets from t0, a little
// before the test starts, and nothing ends within minutes of it, so now() moving does not matter.
const FILL = `
DO $$
DECLARE t0 timestamptz := date_trunc('minute', now()) - interval '7 minutes';
BEGIN
  PERFORM setseed(0.42);
  INSERT INTO windows (name, cron, timezone, horizon_ms, ttl_ms, policy) VALUES ('nightly', '0 2 * * *', 'UTC', 86400000, 86400000, 'coverage:0.8');
  INSERT INTO logins (user_id, at)
  SELECT 'u' || (random() * 299)::int, t0 - random() * interval '60 days' FROM generate_series(1, 6000)
  UNION ALL
  SELECT 'u' || (random() * 299)::int, t0 - interval '120 days' - random() * interval '5 days' FROM generate_series(1, 300)
  ON CONFLICT DO NOTHING;
  INSERT INTO user_activity (user_id, first_login_at, last_login_at, login_count)
  SELECT user_id, min(at), max(at), count(*) FROM logins GROUP BY user_id;
  INSERT INTO batch_runs (window_name, scheduled_for, started_at, finished_at, expires_at, policy, status, horizon_ms)
  SELECT 'nightly', t0 - d * interval '1 day' + interval '3 hours', t0 - d * interval '1 day' + interval '3 hours',
         t0 - d * interval '1 day' + interval '4 hours', t0 - (d - 1) * interval '1 day' + interval '3 hours',
         'coverage:0.8', CASE WHEN d = 1 THEN 'running' ELSE 'completed' END, 86400000
    FROM generate_series(1, 50) d;
  INSERT INTO predictions (run_id, user_id, p, selected, holdout, chunk_no)
  SELECT b.id, 'u' || u, random(), random() < 0.3, random() < 0.03, NULL FROM batch_runs b, generate_series(0, 299) u;
  INSERT INTO recommendations (id, user_id, source, run_id, holdout, computed_at, expires_at, item_ids, scores, model_version, compute_ms)
  SELECT gen_random_uuid(), p.user_id, 'batch', p.run_id, p.holdout, b.scheduled_for + random() * interval '50 minutes', b.expires_at,
         '{a,b,c}', '{0.5,0.25,0.125}', 'v1', random() * 5
    FROM predictions p JOIN batch_runs b ON b.id = p.run_id WHERE p.selected OR p.holdout;
  INSERT INTO recommendations (id, user_id, source, run_id, holdout, computed_at, expires_at, item_ids, scores, model_version, compute_ms)
  SELECT gen_random_uuid(), 'u' || (random() * 299)::int, 'on_demand', NULL, false, c, c + interval '1 hour', '{d}', '{0.75}', 'v1', random() * 20
    FROM (SELECT t0 - random() * interval '50 days' - interval '2 hours' AS c FROM generate_series(1, 1500)) x;
  INSERT INTO serves (id, user_id, at, source, recommendation_id, staleness_ms, latency_ms, reason)
  SELECT gen_random_uuid(), l.user_id, l.at,
         CASE WHEN r.id IS NULL THEN 'fallback' WHEN r.source = 'batch' THEN 'precomputed' WHEN random() < 0.5 THEN 'reused' ELSE 'on_demand' END,
         r.id, (extract(epoch FROM l.at - r.computed_at) * 1000)::bigint, random() * 100,
         CASE WHEN r.id IS NULL THEN 'unknown_user' END
    FROM logins l
    LEFT JOIN LATERAL (SELECT id, source, computed_at FROM recommendations r
                        WHERE r.user_id = l.user_id AND r.computed_at <= l.at AND r.expires_at > l.at
                        ORDER BY computed_at DESC LIMIT 1) r ON true
   WHERE l.at > t0 - interval '55 days';
  UPDATE recommendations r SET first_served_at = s.first_at, serve_count = s.n
    FROM (SELECT recommendation_id, min(at) AS first_at, count(*)::int AS n FROM serves WHERE recommendation_id IS NOT NULL GROUP BY 1) s
   WHERE r.id = s.recommendation_id;
END
$$;`;

async function readViews(client: PoolClient): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const view of VIEWS) {
    const columns = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1`,
      [view],
    );
    const order = Array.from({ length: columns.rows[0]!.n }, (_, i) => i + 1).join(', ');
    const result = await client.query(`SELECT * FROM ${view} ORDER BY ${order}`);
    out[view] = result.rows;
  }
  return out;
}

/**
 * Same rows; sums of `real` compute times within a relative 1e-5: migration 0011 accumulates them
 * in double precision, where the old views rounded at every step in the order rows came.
 */
function expectSameRows(actual: Record<string, unknown[]>, expected: Record<string, unknown[]>) {
  expect(Object.keys(actual)).toEqual(Object.keys(expected));
  for (const [view, rows] of Object.entries(expected)) {
    const got = actual[view]!;
    expect(got.length, view).toBe(rows.length);
    rows.forEach((row, i) => {
      for (const [column, want] of Object.entries(row as Record<string, unknown>)) {
        const value = (got[i] as Record<string, unknown>)[column];
        if (typeof want === 'number' && column.endsWith('compute_ms')) {
          expect(Math.abs((value as number) - want), `${view}[${i}].${column}`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want)));
        } else expect(value, `${view}[${i}].${column}`).toEqual(want);
      }
    });
  }
}

describe('migration 0008: partitions in place', () => {
  let db: TestDb | undefined;
  afterEach(async () => db?.drop());

  it('leaves every view reading the same rows: up, maintenance with rollups, down, up again', async () => {
    db = await createTestDb({ migrate: false });
    const schema = db.schema;
    const client = await db.pool.connect();
    const migrateBy = (direction: 'up' | 'down', count: number) =>
      runner({ dbClient: client, dir: MIGRATIONS_DIR, direction, count, migrationsTable: 'prewarm_migrations', schema, checkOrder: true, noLock: true, singleTransaction: true, logger: { debug() {}, info() {}, warn() {}, error() {} } });
    try {
      await migrateBy('up', 7);
      await client.query(FILL);
      const before = await readViews(client);
      for (const view of VIEWS) expect(before[view]!.length, view).toBeGreaterThan(0);
      const counts = async () =>
        (await client.query(`SELECT (SELECT count(*) FROM logins) l, (SELECT count(*) FROM serves) s, (SELECT count(*) FROM recommendations) r, (SELECT count(*) FROM predictions) p`)).rows[0];
      const rowsBefore = await counts();

      await migrateBy('up', 1);
      const kinds = await client.query<{ relname: string; relkind: string }>(
        `SELECT relname, relkind FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relname IN ('logins', 'serves', 'recommendations', 'predictions', 'logins_legacy') ORDER BY 1`,
      );
      expect(kinds.rows.map((row) => `${row.relname}:${row.relkind}`)).toEqual(['logins:p', 'logins_legacy:r', 'predictions:p', 'recommendations:p', 'serves:p']);
      expect(await counts()).toEqual(rowsBefore);
      expect(await readViews(client)).toEqual(before);

      // Rows written after the migration land in the default partitions; maintenance moves them,
      // creates partitions ahead and rolls up the closed days of serves.
      const maintenance = createPartitionMaintenance({ pool: db.pool, clock: systemClock, log: silentLog, retentionMs: 3_650 * 86_400_000 });
      const report = await maintenance.run();
      expect(report.skipped).toBe(false);
      expect(report.actions.filter((a) => a.kind === 'drop')).toEqual([]);
      expect(report.actions.some((a) => a.kind === 'rollup')).toBe(true);
      const rolled = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM serves_daily');
      expect(rolled.rows[0]!.n).toBeGreaterThan(0);
      expect(await readViews(client)).toEqual(before);
      // A second pass has nothing left to do but keep its rollups as they are.
      const again = await maintenance.run();
      expect(again.actions.filter((a) => a.kind !== 'rollup')).toEqual([]);
      expect(await readViews(client)).toEqual(before);

      await migrateBy('down', 1);
      expect(await counts()).toEqual(rowsBefore);
      expect(await readViews(client)).toEqual(before);
    } finally {
      client.release();
    }
    await migrate({ pool: db.pool, schema, log: silentLog });
    const after = await db.pool.connect();
    try {
      const views = await readViews(after);
      expect(views.login_coverage_by_day!.length).toBeGreaterThan(0);
    } finally {
      after.release();
    }
  }, 120_000);

  it('migration 0011: the rolled-up waste, cost, coverage and calibration views read the same rows, up, after maintenance and down', async () => {
    db = await createTestDb({ migrate: false });
    const schema = db.schema;
    const client = await db.pool.connect();
    const migrateBy = (direction: 'up' | 'down', count: number) =>
      runner({ dbClient: client, dir: MIGRATIONS_DIR, direction, count, migrationsTable: 'prewarm_migrations', schema, checkOrder: true, noLock: true, singleTransaction: true, logger: { debug() {}, info() {}, warn() {}, error() {} } });
    try {
      await migrateBy('up', 10);
      await client.query(FILL);
      const before = await readViews(client);

      await migrateBy('up', 1);
      expectSameRows(await readViews(client), before);
      const maintenance = createPartitionMaintenance({ pool: db.pool, clock: systemClock, log: silentLog, retentionMs: 3_650 * 86_400_000 });
      const report = await maintenance.run();
      const rolled = new Set(report.actions.flatMap((a) => (a.kind === 'rollup' ? [a.table] : [])));
      expect([...rolled].sort()).toEqual(['calibration_snapshot', 'cost_daily', 'coverage_runs', 'serves_daily', 'waste_daily', 'waste_runs']);
      const sizes = await client.query(
        `SELECT (SELECT count(*)::int FROM waste_daily) wd, (SELECT count(*)::int FROM cost_daily) cd, (SELECT count(*)::int FROM waste_runs) wr, (SELECT count(*)::int FROM coverage_runs) cr`,
      );
      // 50 runs, the newest still running: 49 final; days of life ends and of computation.
      expect(sizes.rows[0]).toMatchObject({ wr: 49, cr: 49 });
      expect(sizes.rows[0].wd).toBeGreaterThan(40);
      expect(sizes.rows[0].cd).toBeGreaterThan(40);
      expectSameRows(await readViews(client), before);
      const again = await maintenance.run();
      expect(again.actions).toEqual([]);
      expectSameRows(await readViews(client), before);

      await migrateBy('down', 1);
      expectSameRows(await readViews(client), before);
    } finally {
      client.release();
    }
  }, 120_000);

  it('migration 0014: the views read the same rows through their new functions, raw and rolled up, up and down', async () => {
    db = await createTestDb({ migrate: false });
    const schema = db.schema;
    const client = await db.pool.connect();
    const migrateBy = (direction: 'up' | 'down', count: number) =>
      runner({ dbClient: client, dir: MIGRATIONS_DIR, direction, count, migrationsTable: 'prewarm_migrations', schema, checkOrder: true, noLock: true, singleTransaction: true, logger: { debug() {}, info() {}, warn() {}, error() {} } });
    try {
      // 0001–0011 and 0013.
      await migrateBy('up', 12);
      await client.query(FILL);
      // Some sets served with no first_served_at (a history written without the recorder): their
      // serves alone make them served, as in 0011's per-set lookup.
      await client.query(`UPDATE recommendations SET first_served_at = NULL, serve_count = 0 WHERE source = 'batch' AND hashtext(id::text) % 3 = 0`);
      const before = await readViews(client);
      for (const view of VIEWS) expect(before[view]!.length, view).toBeGreaterThan(0);

      await migrateBy('up', 1);
      expect(await readViews(client)).toEqual(before);
      const maintenance = createPartitionMaintenance({ pool: db.pool, clock: systemClock, log: silentLog, retentionMs: 3_650 * 86_400_000 });
      const report = await maintenance.run();
      expect((await client.query('SELECT count(*)::int AS n FROM calibration_snapshot')).rows[0].n).toBeGreaterThan(0);
      // Maintenance derives the serve counts of the sets of the last day or so from their serves
      // (some of those were cleared above); nothing else a view shows changes.
      const counted = report.actions.find((a) => a.kind === 'serve_counts');
      expect(counted).toBeDefined();
      const wrong = await client.query(
        `SELECT count(*)::int AS n FROM recommendations r
          WHERE r.computed_at >= $1 AND r.serve_count <> (SELECT count(*) FROM serves s WHERE s.recommendation_id = r.id)`,
        [counted?.kind === 'serve_counts' ? counted.from : null],
      );
      expect(wrong.rows[0].n).toBe(0);
      const withoutServeCounts = (views: Record<string, unknown[]>) => ({
        ...views,
        recommendation_life: views.recommendation_life!.map((row) => ({ ...(row as object), first_served_at: undefined, serve_count: undefined })),
      });
      const after = await readViews(client);
      expect(withoutServeCounts(after)).toEqual(withoutServeCounts(before));
      // The snapshot no longer matches the ended runs: the view computes from the raw tables.
      await client.query(`UPDATE calibration_snapshot SET runs = '{}'`);
      expect(await readViews(client)).toEqual(after);

      await migrateBy('down', 1);
      expect(await readViews(client)).toEqual(after);
    } finally {
      client.release();
    }
  }, 120_000);
});
