import type { FastifyInstance } from 'fastify';
import { recordLogins } from './activity/user-activity.ts';
import { buildApp } from './api/app.ts';
import { createApiMetrics } from './api/metrics.ts';
import { systemClock, type Clock } from './clock.ts';
import type { Config } from './config.ts';
import { createPool } from './db/pool.ts';
import { PrewarmError } from './errors.ts';
import type { Logger } from './log.ts';
import { createRecommendationCache } from './recommendations/cache.ts';
import { createRecommendationStore } from './recommendations/store.ts';
import { createRecommender } from './recommender/index.ts';
import { createServingRedis } from './redis.ts';
import { createEventRecorder } from './serving/event-recorder.ts';
import { createRecommendationService } from './serving/service.ts';

export interface RunningServer {
  app: FastifyInstance;
  /** Address the server listens on, e.g. http://127.0.0.1:8080. */
  url: string;
  /** Graceful shutdown in a fixed order; idempotent, runs every step even if one fails. */
  close(): Promise<void>;
}

/** Composition root of the API process: wires the factories, listens, and knows how to stop. */
export async function startServer(config: Readonly<Config>, log: Logger, clock: Clock = systemClock): Promise<RunningServer> {
  if (config.apiTokens.length === 0) {
    throw new PrewarmError('PREWARM_ERR_CONFIG', 'invalid configuration: PREWARM_API_TOKENS: set at least one service token to serve the API');
  }
  const pool = createPool({ databaseUrl: config.databaseUrl, schema: config.dbSchema, max: config.dbPoolSize, applicationName: 'prewarm-api', log });
  const redis = createServingRedis(config.cacheRedisUrl, log);
  const cache = createRecommendationCache({ redis, prefix: config.cachePrefix, log });
  const store = createRecommendationStore({ pool });
  const recommender = await createRecommender({ config, pool, log });
  const recorder = createEventRecorder({ pool, store, recordLogins, log, flushIntervalMs: config.flushIntervalMs, maxBatch: config.flushMaxBatch });
  const metrics = createApiMetrics({ pendingEvents: () => recorder.pending() });
  const service = createRecommendationService({
    cache,
    store,
    recommender,
    recorder,
    clock,
    log,
    options: {
      latencyBudgetMs: config.latencyBudgetMs,
      onDemandTtlMs: config.onDemandTtlMs,
      onDemandConcurrency: config.onDemandConcurrency,
      onDemandQueue: config.onDemandQueue,
      setSize: config.maxLimit,
    },
    onServe: metrics.observeServe,
  });
  const app = await buildApp({
    service,
    metrics,
    log,
    options: { apiTokens: config.apiTokens, adminToken: config.adminToken, defaultLimit: config.defaultLimit, maxLimit: config.maxLimit },
    readiness: {
      postgres: async () => void (await pool.query('SELECT 1')),
      redis: async () => void (await redis.ping()),
      events: async () => {
        if (recorder.isFull()) throw new Error(`${recorder.pending()} events wait to be written`);
      },
    },
  });

  const url = await app.listen({ port: config.port, host: config.host });
  log.info({ url }, 'prewarm API listening');

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      const steps: [string, () => Promise<unknown>][] = [
        ['stop HTTP intake', () => app.close()],
        ['finish on-demand computations', () => service.close()],
        ['flush logins and serves', () => recorder.close(config.shutdownTimeoutMs)],
        ['close recommender', () => recommender.close()],
        ['close Redis', () => redis.quit()],
        ['close Postgres pool', () => pool.end()],
      ];
      for (const [name, step] of steps) {
        try {
          await step();
        } catch (error) {
          log.error({ err: error, step: name }, 'shutdown step failed');
        }
      }
    })());
  return { app, url, close };
}
