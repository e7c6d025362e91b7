import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { createWasteReport } from '../src/accounting/waste.ts';
import { createRecommendationStore } from '../src/sets/store.ts';
import { batchSetId, type RecommendationSet } from '../src/sets/set.ts';
import { createTestDb, type TestDb } from './helpers.ts';

const T0 = Date.parse('2024-03-01T00:00:00Z');
const HOUR = 3_600_000;
const at = (hours: number) => new Date(T0 + hours * HOUR);

describe('waste and compute-cost accounting', () => {
  let db: TestDb | undefined;
  afterEach(async () => {
    await db?.drop();
    db = undefined;
  });

  /**
   * Run 1 (nightly, T0, fresh 24 h): a served from the serves table, e served per first_served_at,
   * b never served, c replaced at +12 h by run 2's set (and "served" after that, which does not
   * count), d a holdout never served. Run 2 (adhoc, +12 h, fresh 24 h): c. One on-demand set.
   */
  async function seed() {
    db = await createTestDb();
    const runs = await db.pool.query<{ id: number }>(
      `INSERT INTO batch_runs (window_name, scheduled_for, started_at, expires_at, policy, status)
       VALUES ('nightly', $1, $1, $2, 'all', 'completed'), ('adhoc', $3, $3, $4, 'all', 'completed') RETURNING id`,
      [at(0), at(24), at(12), at(36)],
    );
    const [run1, run2] = runs.rows.map((row) => row.id) as [number, number];
    const batch = (runId: number, userId: string, computedAt: Date, holdout = false): RecommendationSet => ({
      id: batchSetId(runId, userId),
      userId,
      source: 'batch',
      runId,
      holdout,
      computedAt,
      expiresAt: new Date(computedAt.getTime() + 24 * HOUR),
      itemIds: ['i1'],
      scores: [1],
      modelVersion: 'm1',
      computeMs: 10,
    });
    const sets = {
      a: batch(run1, 'a', at(0)),
      b: batch(run1, 'b', at(0)),
      c: batch(run1, 'c', at(0)),
      d: batch(run1, 'd', at(0), true),
      e: batch(run1, 'e', at(0)),
      c2: batch(run2, 'c', at(12)),
      f: { ...batch(run1, 'f', at(3)), id: randomUUID(), source: 'on_demand' as const, runId: null, computeMs: 40 },
    };
    await createRecommendationStore({ pool: db.pool }).insertMany(db.pool, Object.values(sets));
    const serve = (setId: string, userId: string, when: Date) =>
      db!.pool.query(`INSERT INTO serves (id, user_id, at, source, recommendation_id, staleness_ms, latency_ms) VALUES ($1, $2, $3, 'precomputed', $4, 0, 1)`, [
        randomUUID(),
        userId,
        when,
        setId,
      ]);
    await serve(sets.a.id, 'a', at(2));
    await serve(sets.c.id, 'c', at(13));
    await db.pool.query('UPDATE recommendations SET first_served_at = $2, serve_count = 1 WHERE id = $1', [sets.e.id, at(1)]);
    return { run1, run2, sets };
  }

  it('recommendation_life: a life ends at expiry or replacement; served means served before that', async () => {
    const { sets } = await seed();
    const life = await db!.pool.query('SELECT user_id, id, life_ended_at, served, ended, wasted, window_name FROM recommendation_life WHERE source = $1', ['batch']);
    const byId = new Map(life.rows.map((row) => [row.id, row]));
    expect(byId.get(sets.a.id)).toMatchObject({ life_ended_at: at(24), served: true, wasted: false, window_name: 'nightly' });
    expect(byId.get(sets.e.id)).toMatchObject({ served: true, wasted: false });
    expect(byId.get(sets.b.id)).toMatchObject({ life_ended_at: at(24), served: false, wasted: true });
    expect(byId.get(sets.c.id)).toMatchObject({ life_ended_at: at(12), served: false, wasted: true });
    expect(byId.get(sets.d.id)).toMatchObject({ served: false, wasted: true });
    expect(byId.get(sets.c2.id)).toMatchObject({ life_ended_at: at(36), window_name: 'adhoc' });
  });

  it('views: waste by run (holdout apart), by day, compute cost by day — judged at now()', async () => {
    const { run1, run2 } = await seed();
    const byRun = await db!.pool.query('SELECT * FROM waste_by_run ORDER BY run_id');
    expect(byRun.rows[0]).toMatchObject({ run_id: run1, window_name: 'nightly', precomputes: 4, ended: 4, served: 2, wasted: 2, waste_rate: 0.5, compute_ms: 40, wasted_compute_ms: 20, holdout_precomputes: 1, holdout_ended: 1, holdout_wasted: 1, holdout_waste_rate: 1 });
    // By the real clock, run 2's set is long over, and it was never served.
    expect(byRun.rows[1]).toMatchObject({ run_id: run2, precomputes: 1, ended: 1, wasted: 1, waste_rate: 1 });

    const byDay = await db!.pool.query(`SELECT to_char(day, 'YYYY-MM-DD') AS day, window_name, ended, wasted, waste_rate, holdout_ended, holdout_wasted FROM waste_by_day ORDER BY day, window_name`);
    expect(byDay.rows).toEqual([
      { day: '2024-03-01', window_name: 'nightly', ended: 1, wasted: 1, waste_rate: 1, holdout_ended: 0, holdout_wasted: 0 },
      { day: '2024-03-02', window_name: 'adhoc', ended: 1, wasted: 1, waste_rate: 1, holdout_ended: 0, holdout_wasted: 0 },
      { day: '2024-03-02', window_name: 'nightly', ended: 3, wasted: 1, waste_rate: 1 / 3, holdout_ended: 1, holdout_wasted: 1 },
    ]);

    const cost = await db!.pool.query(`SELECT to_char(day, 'YYYY-MM-DD') AS day, batch_sets, batch_compute_ms, batch_wasted_compute_ms, holdout_compute_ms, on_demand_sets, on_demand_compute_ms, total_compute_ms FROM compute_cost_by_day`);
    expect(cost.rows).toEqual([
      { day: '2024-03-01', batch_sets: 6, batch_compute_ms: 60, batch_wasted_compute_ms: 40, holdout_compute_ms: 10, on_demand_sets: 1, on_demand_compute_ms: 40, total_compute_ms: 100 },
    ]);
  });

  it('report queries judge lives at the caller clock (a replay asks at its virtual now)', async () => {
    const { run1, run2 } = await seed();
    const report = createWasteReport({ pool: db!.pool });
    const asOf = at(30);
    expect(await report.totals({ asOf })).toEqual({
      precomputes: 5,
      ended: 4,
      served: 2,
      wasted: 2,
      waste: 0.5,
      holdoutPrecomputes: 1,
      holdoutEnded: 1,
      holdoutWasted: 1,
      holdoutWaste: 1,
      batchComputeMs: 50,
      wastedComputeMs: 20,
      holdoutComputeMs: 10,
      onDemandSets: 1,
      onDemandComputeMs: 40,
    });
    // Before anything ended there is no waste rate yet.
    expect(await report.totals({ asOf: at(6) })).toMatchObject({ ended: 0, wasted: 0, waste: null });
    expect(await report.totals({ asOf, window: 'adhoc' })).toMatchObject({ precomputes: 1, ended: 0, onDemandSets: 1 });

    const byRun = await report.byRun({ asOf });
    expect(byRun.map((r) => [r.runId, r.precomputes, r.ended, r.wasted, r.waste])).toEqual([
      [run2, 1, 0, 0, null],
      [run1, 4, 4, 2, 0.5],
    ]);
    expect(await report.byDay({ asOf })).toEqual([
      { day: '2024-03-01', window: 'nightly', ended: 1, wasted: 1, waste: 1, wastedComputeMs: 10, holdoutEnded: 0, holdoutWasted: 0 },
      { day: '2024-03-02', window: 'nightly', ended: 3, wasted: 1, waste: 1 / 3, wastedComputeMs: 10, holdoutEnded: 1, holdoutWasted: 1 },
    ]);
    expect(await report.computeCostByDay({ asOf })).toEqual([
      { day: '2024-03-01', batchSets: 6, batchComputeMs: 60, batchWastedComputeMs: 30, holdoutComputeMs: 10, onDemandSets: 1, onDemandComputeMs: 40, totalComputeMs: 100 },
    ]);
  });
});
