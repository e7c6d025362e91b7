import { afterEach, describe, expect, it } from 'vitest';
import { recordLogins } from '../src/activity/user-activity.ts';
import { createWasteReport } from '../src/accounting/waste.ts';
import { batchSetId, isFresh, scoredItems, storedItems } from '../src/sets/set.ts';
import { createEventRecorder, type EventRecorder } from '../src/serving/event-recorder.ts';
import { createRecommendationService, type RecommendationService } from '../src/serving/service.ts';
import { silentLog } from './helpers.ts';
import { createPlannerHarness, DAY, HOUR, recencyPopulation, type PlannerHarness } from './fixtures/precompute-harness.ts';
import { createTestRecommender, itemsFor } from './fixtures/precompute-recommender.ts';

const MIDNIGHT = Date.parse('2024-03-01T00:00:00Z');
const TICK = MIDNIGHT + 2 * HOUR; // the nightly window: 02:00 UTC

describe('batch end to end on a virtual clock', () => {
  let h: PlannerHarness | undefined;
  let recorder: EventRecorder | undefined;
  let service: RecommendationService | undefined;
  afterEach(async () => {
    await service?.close();
    await recorder?.close();
    await h?.close();
    h = service = recorder = undefined;
  });

  it('a window ticks, users are selected, a worker completes, logins are served, unserved sets are wasted', async () => {
    h = await createPlannerHarness({ start: MIDNIGHT });
    // 100 known users, u0001 most recent (1 h before midnight), u0100 least.
    await h.seedLogins(recencyPopulation(MIDNIGHT, 100));
    await h.windows.set('nightly', { cron: '0 2 * * *', ttl: '24h', policy: 'budget:30', chunkSize: 8, holdoutRate: 0.1 });
    const { recommender } = createTestRecommender();
    recorder = createEventRecorder({ pool: h.pool, store: h.store, recordLogins, log: silentLog, flushIntervalMs: 60_000 });
    service = createRecommendationService({
      cache: h.cache,
      store: h.store,
      recommender,
      recorder,
      clock: h.clock,
      log: silentLog,
      options: { latencyBudgetMs: 2_000, onDemandTtlMs: HOUR, onDemandConcurrency: 2, onDemandQueue: 16, setSize: 10 },
    });

    // 02:00: the window ticks. The planner scores the known users and selects the 30 most likely.
    h.clock.set(TICK);
    const [outcome] = await h.scheduler.tick();
    expect(outcome).toMatchObject({ window: 'nightly', action: 'planned', occurrence: new Date(TICK), selected: 30 });
    const runId = (outcome as { runId: number }).runId;
    const predictions = await h.pool.query<{ user_id: string; selected: boolean; holdout: boolean }>('SELECT user_id, selected, holdout FROM predictions WHERE run_id = $1', [runId]);
    expect(predictions.rowCount).toBe(100);
    const selected = predictions.rows.filter((r) => r.selected).map((r) => r.user_id);
    const holdout = predictions.rows.filter((r) => r.holdout).map((r) => r.user_id);
    const unselected = predictions.rows.filter((r) => !r.selected && !r.holdout).map((r) => r.user_id);
    expect(selected).toContain('u0001');
    expect(selected).not.toContain('u0100');
    expect(unselected).toContain('u0100');

    // A worker computes the chunks (the virtual clock holds still meanwhile).
    h.startWorker(recommender);
    const run = await h.waitForRun(runId);
    expect(run).toMatchObject({ status: 'completed', precomputed: 30 + holdout.length, failed: 0, finishedAt: new Date(TICK) });

    // The cache is fresh for every selected user.
    for (const userId of selected) {
      const cached = await h.cache.get(userId);
      expect(cached?.id).toBe(batchSetId(runId, userId));
      expect(isFresh(cached!, h.clock.now())).toBe(true);
    }

    // 03:00: a selected user logs in and is served the precomputed set; an unselected one on demand.
    h.clock.set(TICK + HOUR);
    const hit = await service.getRecommendations('u0001', 5);
    expect(hit).toMatchObject({ userId: 'u0001', source: 'precomputed', stalenessMs: HOUR, computedAt: new Date(TICK), expiresAt: new Date(TICK + DAY), modelVersion: 'test-v1' });
    expect(hit.items).toEqual(scoredItems(storedItems(itemsFor('u0001', 10)), 5));
    const miss = await service.getRecommendations('u0100', 5);
    expect(miss).toMatchObject({ userId: 'u0100', source: 'on_demand', stalenessMs: 0 });
    await recorder.flush();
    const serves = await h.pool.query('SELECT user_id, source, recommendation_id, staleness_ms FROM serves ORDER BY user_id');
    expect(serves.rows).toEqual([
      { user_id: 'u0001', source: 'precomputed', recommendation_id: batchSetId(runId, 'u0001'), staleness_ms: HOUR },
      expect.objectContaining({ user_id: 'u0100', source: 'on_demand' }),
    ]);

    // Next day, 02:00 + 1 min: the sets have expired. Every selected set but u0001's was never
    // served: wasted, with its compute time. Holdout sets are counted apart.
    h.clock.set(TICK + DAY + 60_000);
    const report = createWasteReport({ pool: h.pool });
    const totals = await report.totals({ asOf: h.clock.now(), window: 'nightly' });
    expect(totals).toMatchObject({ precomputes: 30, ended: 30, served: 1, wasted: 29, holdoutPrecomputes: holdout.length, holdoutWasted: holdout.length, onDemandSets: 1 });
    expect(totals.waste).toBeCloseTo(29 / 30, 9);
    expect(totals.wastedComputeMs).toBeGreaterThanOrEqual(0);
    const life = await h.pool.query('SELECT user_id, served, wasted FROM recommendation_life WHERE run_id = $1 AND user_id = ANY($2::text[]) ORDER BY user_id', [runId, ['u0001', 'u0002']]);
    expect(life.rows).toEqual([
      { user_id: 'u0001', served: true, wasted: false },
      { user_id: 'u0002', served: false, wasted: true },
    ]);
    const [byRun] = await report.byRun({ asOf: h.clock.now() });
    expect(byRun).toMatchObject({ runId, window: 'nightly', precomputes: 30, wasted: 29, holdoutPrecomputes: holdout.length });

    // The next tick plans the new day's occurrence.
    const [next] = await h.scheduler.tick();
    expect(next).toMatchObject({ action: 'planned', occurrence: new Date(TICK + DAY) });
  });
});
