import { afterEach, describe, expect, it } from 'vitest';
import { VirtualClock } from '../src/clock.ts';
import { createPartitionMaintenance, partitionName } from '../src/maintenance/partitions.ts';
import { createTestDb, silentLog, type TestDb } from './helpers.ts';

const DAY = 86_400_000;
const NOW = new Date('2026-06-15T12:00:00Z');

describe('partition maintenance', () => {
  let db: TestDb | undefined;
  afterEach(async () => db?.drop());

  it('moves default rows into partitions, drops what retention allows, keeps what is still needed', async () => {
    db = await createTestDb();
    const { pool } = db;
    // A new deployment: partitions ahead, nothing dropped (no serve rolled up yet either).
    const first = await createPartitionMaintenance({ pool, clock: new VirtualClock(NOW), log: silentLog, retentionMs: DAY }).run();
    expect(first.actions.filter((a) => a.kind !== 'create')).toEqual([]);
    expect(first.actions.filter((a) => a.kind === 'create')).toHaveLength(12);
    // Start again from the default partitions only, as a database migrated in place would.
    for (const a of first.actions) if (a.kind === 'create') await pool.query(`DROP TABLE ${a.partition}`);
    const at = (daysAgo: number) => new Date(NOW.getTime() - daysAgo * DAY).toISOString();
    await pool.query(`INSERT INTO windows (name, cron, horizon_ms, ttl_ms, policy) VALUES ('w', '0 2 * * *', 86400000, 86400000, 'all')`);
    // Run 1 finished long ago; run 2 is old but still running (its predictions rebuild lost chunks).
    await pool.query(
      `INSERT INTO batch_runs (id, window_name, scheduled_for, started_at, expires_at, policy, status) VALUES
         (1, 'w', $1, $1, $2, 'all', 'completed'), (2, 'w', $3, $3, $4, 'all', 'running')`,
      [at(200), at(199), at(150), at(149)],
    );
    await pool.query(`INSERT INTO logins (user_id, at) VALUES ('u1', $1), ('u1', $2)`, [at(200), at(1)]);
    await pool.query(`INSERT INTO predictions (run_id, user_id, p, selected, created_at) VALUES (1, 'u1', 0.5, true, $1), (2, 'u1', 0.5, true, $2)`, [at(200), at(150)]);
    // Three old sets: an expired one, one still fresh (a year-long TTL), one of the running run.
    await pool.query(
      `INSERT INTO recommendations (id, user_id, source, run_id, computed_at, expires_at, item_ids, scores, model_version, compute_ms) VALUES
         (gen_random_uuid(), 'u1', 'on_demand', NULL, $1, $2, '{}', '{}', 'v', 1),
         (gen_random_uuid(), 'u2', 'on_demand', NULL, $3, $4, '{}', '{}', 'v', 1),
         (gen_random_uuid(), 'u3', 'batch', 2, $5, $6, '{}', '{}', 'v', 1)`,
      [at(200), at(199), at(180), at(-200), at(150), at(149)],
    );
    await pool.query(`INSERT INTO serves (id, user_id, at, source, latency_ms) VALUES (gen_random_uuid(), 'u1', $1, 'fallback', 3), (gen_random_uuid(), 'u1', $2, 'fallback', 5)`, [at(200), at(1)]);

    const maintenance = createPartitionMaintenance({ pool, clock: new VirtualClock(NOW), log: silentLog, retentionMs: 90 * DAY });
    const dry = await maintenance.run({ dryRun: true });
    expect(dry.actions.length).toBeGreaterThan(0);
    const defaults = `SELECT (SELECT count(*) FROM logins_default) + (SELECT count(*) FROM serves_default) + (SELECT count(*) FROM recommendations_default) + (SELECT count(*) FROM predictions_default) AS n`;
    expect((await pool.query(defaults)).rows[0].n).toBe(9);

    const report = await maintenance.run();
    expect((await pool.query(defaults)).rows[0].n).toBe(0);
    const dropped = report.actions.filter((a) => a.kind === 'drop').map((a) => ('partition' in a ? a.partition : ''));
    const kept = report.actions.filter((a) => a.kind === 'keep').map((a) => ('partition' in a ? a.partition : ''));
    const day = (daysAgo: number) => new Date(NOW.getTime() - daysAgo * DAY);
    expect(dropped.sort()).toEqual(
      [
        partitionName('logins', 'month', new Date('2025-11-01T00:00:00Z')),
        partitionName('serves', 'month', new Date('2025-11-01T00:00:00Z')),
        partitionName('recommendations', 'day', new Date(Math.floor(day(200).getTime() / DAY) * DAY)),
        partitionName('predictions', 'day', new Date(Math.floor(day(200).getTime() / DAY) * DAY)),
      ].sort(),
    );
    expect(kept.sort()).toEqual(
      [
        partitionName('recommendations', 'day', new Date(Math.floor(day(180).getTime() / DAY) * DAY)),
        partitionName('recommendations', 'day', new Date(Math.floor(day(150).getTime() / DAY) * DAY)),
        partitionName('predictions', 'day', new Date(Math.floor(day(150).getTime() / DAY) * DAY)),
      ].sort(),
    );
    const left = await pool.query(`SELECT (SELECT count(*)::int FROM logins) l, (SELECT count(*)::int FROM serves) s, (SELECT count(*)::int FROM recommendations) r, (SELECT count(*)::int FROM predictions) p`);
    expect(left.rows[0]).toEqual({ l: 1, s: 1, r: 2, p: 1 });
    // The dropped day of serves is still in the daily views, from the rollup.
    const latency = await pool.query(`SELECT day::text, serves::int FROM latency_by_day ORDER BY day`);
    expect(latency.rows).toEqual([
      { day: at(200).slice(0, 10), serves: 1 },
      { day: at(1).slice(0, 10), serves: 1 },
    ]);
    // Partitions exist ahead: an insert two days on lands in a partition, not the default.
    await pool.query(`INSERT INTO serves (id, user_id, at, source, latency_ms) VALUES (gen_random_uuid(), 'u1', $1, 'fallback', 1)`, [at(-2)]);
    expect((await pool.query(defaults)).rows[0].n).toBe(0);

    // Several maintainers at once: one pass at a time, no error, nothing done twice.
    const passes = await Promise.all([maintenance.run(), maintenance.run(), maintenance.run()]);
    expect(passes.flatMap((p) => p.actions).filter((a) => a.kind === 'create' || a.kind === 'drop')).toEqual([]);
  });
});
