import { buildApp } from '../../src/api/app.ts';
import { createApiMetrics } from '../../src/api/metrics.ts';
import { VirtualClock } from '../../src/clock.ts';
import { runShutdownSteps } from '../../src/lifecycle.ts';
import type { Recommender } from '../../src/recommender/types.ts';
import type { ServingOptions } from '../../src/serving/service.ts';
import { createServingStack } from '../../src/serving/stack.ts';
import { createTestDb, createTestRedis, silentLog } from '../helpers.ts';

export const API_TOKEN = 'test-token-0123456789abcdef';

/** The whole login path on real Postgres and Redis, isolated, with a virtual clock. */
export async function createServingHarness(recommender: Recommender, options: Partial<ServingOptions> = {}) {
  const db = await createTestDb();
  const testRedis = await createTestRedis();
  const clock = new VirtualClock(Date.parse('2024-03-01T12:00:00Z'));
  const serving = createServingStack({
    pool: db.pool,
    redis: testRedis.redis,
    recommender,
    clock,
    log: silentLog,
    options: {
      cachePrefix: `${testRedis.prefix}:`,
      serving: { latencyBudgetMs: 1_000, onDemandTtlMs: 3_600_000, onDemandConcurrency: 4, onDemandQueue: 64, setSize: 100, ...options },
      events: { flushIntervalMs: 60_000 },
    },
    metrics: ({ recorder }) => createApiMetrics({ defaultMetrics: false, pendingEvents: () => recorder.pending() }),
  });
  const { cache, store, recorder, interactions, service, metrics } = serving;
  const app = await buildApp({
    service,
    metrics,
    log: silentLog,
    options: { apiTokens: [API_TOKEN], adminToken: undefined, defaultLimit: 10, maxLimit: 100 },
    readiness: { postgres: async () => void (await db.pool.query('SELECT 1')) },
    interactions: { recorder: interactions, clock },
  });
  return {
    db,
    redis: testRedis.redis,
    cache,
    store,
    recorder,
    interactions,
    service,
    clock,
    app,
    /** Runs every step even if one fails, then rejects with the first failure. */
    close: () =>
      runShutdownSteps(
        [
          ['close the app', () => app.close()],
          ['close the serving stack', () => serving.close()],
          ['drop the schema', () => db.drop()],
          ['drop the Redis keys', () => testRedis.drop()],
        ],
        silentLog,
        { rethrow: true },
      ),
  };
}

export type ServingHarness = Awaited<ReturnType<typeof createServingHarness>>;
