import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../src/db/migrate.ts';
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
});
