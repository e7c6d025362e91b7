import { recordLogins } from '../../src/activity/user-activity.ts';
import { buildApp } from '../../src/api/app.ts';
import { createApiMetrics } from '../../src/api/metrics.ts';
import { VirtualClock } from '../../src/clock.ts';
import type { Recommender } from '../../src/recommender/types.ts';
import { createEventRecorder } from '../../src/serving/event-recorder.ts';
import { createRecommendationService, type ServingOptions } from '../../src/serving/service.ts';
import { createRecommendationCache } from '../../src/sets/cache.ts';
import { createRecommendationStore } from '../../src/sets/store.ts';
import { createTestDb, createTestRedis, silentLog } from '../helpers.ts';

export const API_TOKEN = 'test-token-0123456789abcdef';

/** The whole login path on real Postgres and Redis, isolated, with a virtual clock. */
export async function createServingHarness(recommender: Recommender, options: Partial<ServingOptions> = {}) {
  const db = await createTestDb();
  const testRedis = await createTestRedis();
  const clock = new VirtualClock(Date.parse('2024-03-01T12:00:00Z'));
  const cache = createRecommendationCache({ redis: testRedis.redis, prefix: `${testRedis.prefix}:`, log: silentLog });
  const store = createRecommendationStore({ pool: db.pool });
  const recorder = createEventRecorder({ pool: db.pool, store, recordLogins, log: silentLog, flushIntervalMs: 60_000 });
  const metrics = createApiMetrics({ defaultMetrics: false, pendingEvents: () => recorder.pending() });
  const service = createRecommendationService({
    cache,
    store,
    recommender,
    recorder,
    clock,
    log: silentLog,
    options: { latencyBudgetMs: 1_000, onDemandTtlMs: 3_600_000, onDemandConcurrency: 4, onDemandQueue: 64, setSize: 100, ...options },
    onServe: metrics.observeServe,
  });
  const app = await buildApp({
    service,
    metrics,
    log: silentLog,
    options: { apiTokens: [API_TOKEN], adminToken: undefined, defaultLimit: 10, maxLimit: 100 },
    readiness: { postgres: async () => void (await db.pool.query('SELECT 1')) },
  });
  return {
    db,
    redis: testRedis.redis,
    cache,
    store,
    recorder,
    service,
    clock,
    app,
    async close() {
      await app.close();
      await service.close();
      await recorder.close();
      await db.drop();
      await testRedis.drop();
    },
  };
}

export type ServingHarness = Awaited<ReturnType<typeof createServingHarness>>;
