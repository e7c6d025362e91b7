import type { FastifyInstance } from 'fastify';
import { buildApp } from './api/app.ts';
import { createApiMetrics, type ApiMetrics } from './api/metrics.ts';
import { systemClock, type Clock } from './clock.ts';
import type { Config } from './config.ts';
import { createPool } from './db/pool.ts';
import { createAdminQueues } from './dashboard/queues.ts';
import { createDashboardPlugin } from './dashboard/plugin.ts';
import { PrewarmError } from './errors.ts';
import { runShutdownSteps } from './lifecycle.ts';
import type { Logger } from './log.ts';
import { createRecommender } from './recommender/index.ts';
import { closeRedis, createServingRedis } from './redis.ts';
import type { Recommender } from './recommender/types.ts';
import { createServingStack, type ServingStack } from './serving/stack.ts';
import { checkPostgres, checkRedis, listenFailure } from './startup-checks.ts';

export interface RunningServer {
  app: FastifyInstance;
  /** Address the server listens on, e.g. http://127.0.0.1:8080. */
  url: string;
  /** Graceful shutdown in a fixed order; idempotent, runs every step even if one fails. */
  close(): Promise<void>;
}

/**
 * Composition root of the API process: checks its dependencies, wires the factories, listens,
 * and knows how to stop. A failure at any step closes what was opened and throws, so the
 * process exits instead of lingering with its connections (a port in use, Postgres or Redis
 * unreachable, migrations missing).
 */
export async function startServer(config: Readonly<Config>, log: Logger, clock: Clock = systemClock): Promise<RunningServer> {
  if (config.apiTokens.length === 0) {
    throw new PrewarmError('PREWARM_ERR_CONFIG', 'invalid configuration: PREWARM_API_TOKENS: set at least one service token to serve the API');
  }
  const pool = createPool({ databaseUrl: config.databaseUrl, schema: config.dbSchema, max: config.dbPoolSize, applicationName: 'prewarm-api', log });
  const redis = createServingRedis(config.cacheRedisUrl, log);
  let app: FastifyInstance | undefined;
  let serving: ServingStack<ApiMetrics> | undefined;
  let recommender: Recommender | undefined;
  let adminQueues: ReturnType<typeof createAdminQueues> | undefined;

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= runShutdownSteps(
      [
        ['stop HTTP intake', () => app?.close()],
        ['finish on-demand computations, then flush logins and serves', () => serving?.close()],
        ['close recommender', () => recommender?.close()],
        ['close the queue view', () => adminQueues?.close()],
        ['close Redis', () => closeRedis(redis)],
        ['close Postgres pool', () => pool.end()],
      ],
      log,
    ));

  try {
    await checkPostgres(pool, { databaseUrl: config.databaseUrl, schema: config.dbSchema });
    await checkRedis(redis, config.cacheRedisUrl);
    recommender = await createRecommender({ config, pool, log });
    serving = createServingStack({
      pool,
      redis,
      recommender,
      clock,
      log,
      options: {
        cachePrefix: config.cachePrefix,
        serving: {
          latencyBudgetMs: config.latencyBudgetMs,
          onDemandTtlMs: config.onDemandTtlMs,
          onDemandConcurrency: config.onDemandConcurrency,
          onDemandQueue: config.onDemandQueue,
          refreshBehind: config.refreshBehind,
          setSize: config.maxLimit,
        },
        events: { flushIntervalMs: config.flushIntervalMs, maxBatch: config.flushMaxBatch, maxPending: config.eventBufferMax },
        closeDeadlineMs: config.shutdownTimeoutMs,
      },
      metrics: ({ recorder }) => createApiMetrics({ pendingEvents: () => recorder.pending() }),
    });
    const { service, metrics, recorder: events, interactions } = serving;
    app = await buildApp({
      service,
      metrics,
      log,
      options: { apiTokens: config.apiTokens, adminToken: config.adminToken, defaultLimit: config.defaultLimit, maxLimit: config.maxLimit },
      readiness: {
        postgres: async () => void (await pool.query('SELECT 1')),
        redis: async () => void (await redis.ping()),
        events: async () => {
          if (events.isFull()) throw new Error(`${events.pending()} events wait to be written`);
        },
        interactions: async () => {
          if (interactions.isFull()) throw new Error(`${interactions.pending()} interactions wait to be written`);
        },
      },
      interactions: { recorder: interactions, clock },
    });
    // Operators' dashboard and queue view (src/dashboard/), behind PREWARM_ADMIN_TOKEN.
    if (config.adminToken) adminQueues = createAdminQueues({ redisUrl: config.redisUrl, prefix: config.queuePrefix, log });
    await app.register(createDashboardPlugin({ pool, clock, log, adminToken: config.adminToken, queues: adminQueues?.queues }));
    const url = await listen(app, config);
    log.info({ url }, 'prewarm API listening');
    return { app, url, close };
  } catch (error) {
    await close();
    throw error;
  }
}

async function listen(app: FastifyInstance, config: Readonly<Config>): Promise<string> {
  try {
    return await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    throw listenFailure(error, { host: config.host, port: config.port, settings: 'PORT, PREWARM_HOST' });
  }
}
