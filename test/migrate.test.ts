import { runner } from 'node-pg-migrate';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate, MIGRATIONS_DIR } from '../src/db/migrate.ts';
import { createTestDb, silentLog, type TestDb } from './helpers.ts';

describe('migrations', () => {
  let db: TestDb | undefined;
  afterEach(async () => db?.drop());

  it('applies every file once; a second run finds nothing to do', async () => {
    db = await createTestDb({ migrate: false });
    const first = await migrate({ pool: db.pool, schema: db.schema, log: silentLog });
    expect(first[0]).toBe('0001_core');
    const second = await migrate({ pool: db.pool, schema: db.schema, log: silentLog });
    expect(second).toEqual([]);
    const tables = await db.pool.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
      [db.schema],
    );
    expect(tables.rows.map((row) => row.table_name)).toEqual(
      expect.arrayContaining(['logins', 'user_activity', 'interactions', 'recommendations', 'serves', 'windows', 'batch_runs', 'predictions']),
    );
  });

  it('is safe when several processes migrate at once', async () => {
    db = await createTestDb({ migrate: false });
    const pool = db.pool;
    const schema = db.schema;
    const results = await Promise.all([1, 2, 3].map(() => migrate({ pool, schema, log: silentLog })));
    const appliedTotal = results.flat();
    // Every migration ran exactly once across the three runners.
    expect(new Set(appliedTotal).size).toBe(appliedTotal.length);
    const recorded = await pool.query('SELECT count(*)::int AS n FROM prewarm_migrations');
    expect(recorded.rows[0].n).toBe(appliedTotal.length);
  });

  it('moves stored sets from jsonb items to item arrays and back', async () => {
    db = await createTestDb({ migrate: false });
    const pool = db.pool;
    const client = await pool.connect();
    const migrateBy = (direction: 'up' | 'down', count: number) =>
      runner({ dbClient: client, dir: MIGRATIONS_DIR, direction, count, migrationsTable: 'prewarm_migrations', schema: db!.schema, checkOrder: true, noLock: true, logger: { debug() {}, info() {}, warn() {}, error() {} } });
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS "${db.schema}"`);
      await migrateBy('up', 5);
      await client.query(
        `INSERT INTO recommendations (id, user_id, source, computed_at, expires_at, items, model_version, compute_ms) VALUES
           ('00000000-0000-4000-8000-000000000001', 'u1', 'on_demand', now(), now() + interval '1 hour', '[{"itemId":"a","score":0.5},{"itemId":"b,c","score":0.25}]', 'v1', 1),
           ('00000000-0000-4000-8000-000000000002', 'u2', 'on_demand', now(), now() + interval '1 hour', '[]', 'v1', 1)`,
      );
      await migrateBy('up', 1);
      const moved = await client.query('SELECT user_id, item_ids, scores FROM recommendations ORDER BY user_id');
      expect(moved.rows).toEqual([
        { user_id: 'u1', item_ids: ['a', 'b,c'], scores: [0.5, 0.25] },
        { user_id: 'u2', item_ids: [], scores: [] },
      ]);
      await migrateBy('down', 1);
      const back = await client.query('SELECT user_id, items FROM recommendations ORDER BY user_id');
      expect(back.rows).toEqual([
        { user_id: 'u1', items: [{ itemId: 'a', score: 0.5 }, { itemId: 'b,c', score: 0.25 }] },
        { user_id: 'u2', items: [] },
      ]);
    } finally {
      client.release();
    }
  });
});
