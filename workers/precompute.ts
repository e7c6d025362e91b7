// Process entry point of a precompute worker: `prewarm worker`, or `node --import tsx workers/precompute.ts`.
// Run as many as you like, on as many machines as you like, against the same Redis and Postgres.
import { pathToFileURL } from 'node:url';
import { systemClock, type Clock } from '../src/clock.ts';
import { loadConfig, redactUrl, type Config } from '../src/config.ts';
import { createPool } from '../src/db/pool.ts';
import { toError } from '../src/errors.ts';
import { closeOnSignal, runShutdownSteps } from '../src/lifecycle.ts';
import { configSecrets, createLogger, type Logger } from '../src/log.ts';
import { closeRedis, createQueueRedis } from '../src/redis.ts';
import { startMetricsServer, type MetricsServer } from '../src/metrics/server.ts';
import { createPrecomputeMetrics } from '../src/precompute/metrics.ts';
import { createPrecomputeWorker, type PrecomputeWorkerDeps } from '../src/precompute/precompute-worker.ts';
import { createPlanShardWorker } from '../src/precompute/plan-shard-worker.ts';
import { createPrecomputeQueue } from '../src/precompute/queue.ts';
import { createDefaultScorer } from '../src/propensity/default-scorer.ts';
import { createRecommendationCache } from '../src/sets/cache.ts';
import { createRecommendationStore } from '../src/sets/store.ts';
import { createRecommender } from '../src/recommender/index.ts';
import type { Recommender } from '../src/recommender/types.ts';
import { checkPostgres, checkRedis } from '../src/startup-checks.ts';

export interface PrecomputeProcessOptions {
  config: Readonly<Config>;
  log: Logger;
  clock?: Clock;
  /** Default: the recommender PREWARM_RECOMMENDER selects. Tests pass a slow one. */
  recommender?: Recommender;
  /** BullMQ worker options (tests shorten lockDuration and stalledInterval). */
  workerOptions?: PrecomputeWorkerDeps['workerOptions'];
}

export interface PrecomputeProcess {
  /** Where `/metrics` is served (PREWARM_METRICS_PORT); undefined when it is unset. */
  metricsUrl: string | undefined;
  /** Stop taking jobs → wait for the active ones → /metrics server → recommender → Redis → Postgres. Idempotent. */
  close(): Promise<void>;
}

/** Wires a precompute worker from the configuration (the process's composition root). */
export async function startPrecomputeProcess(options: PrecomputeProcessOptions): Promise<PrecomputeProcess> {
  const { config, log } = options;
  const clock = options.clock ?? systemClock;
  const pool = createPool({
    databaseUrl: config.databaseUrl,
    schema: config.dbSchema,
    // Each active chunk holds one connection for its transaction; the recommender reads too.
    max: Math.max(config.dbPoolSize, config.workerConcurrency + 2),
    applicationName: 'prewarm-worker',
    log,
  });
  // Workers persevere through Redis outages (STYLE.md §9): commands wait, never fail fast —
  // the cache writes too, as they come after the chunk's commit.
  const queueRedis = createQueueRedis(config.redisUrl, log);
  const cacheRedis = createQueueRedis(config.cacheRedisUrl, log);
  let recommender: Recommender | undefined;
  let worker: ReturnType<typeof createPrecomputeWorker> | undefined;
  // Planning shards: scored here, their chunks enqueued on the precompute queue.
  let shardWorker: ReturnType<typeof createPlanShardWorker> | undefined;
  const chunkQueue = createPrecomputeQueue({ connection: queueRedis, prefix: config.queuePrefix, log });
  const metrics = createPrecomputeMetrics({ queue: chunkQueue, log });
  let metricsServer: MetricsServer | undefined;
  let closing: Promise<void> | undefined;

  const close = () =>
    (closing ??= runShutdownSteps(
      [
        ['plan-shard worker', () => shardWorker?.close()],
        ['worker', () => worker?.close()],
        // Scrapes still see the drain; the server goes before the queue its gauge reads.
        ['metrics server', () => metricsServer?.close()],
        ['chunk queue', () => chunkQueue.close()],
        ['recommender', () => recommender?.close()],
        ['queue redis', () => closeRedis(queueRedis)],
        ['cache redis', () => closeRedis(cacheRedis)],
        ['postgres', () => pool.end()],
      ],
      log,
    ));

  try {
    await checkPostgres(pool, { databaseUrl: config.databaseUrl, schema: config.dbSchema });
    await checkRedis(queueRedis, config.redisUrl);
    await checkRedis(cacheRedis, config.cacheRedisUrl);
    recommender = options.recommender ?? (await createRecommender({ config, pool, log }));
    worker = createPrecomputeWorker({
      connection: queueRedis,
      prefix: config.queuePrefix,
      pool,
      recommender,
      store: createRecommendationStore({ pool }),
      cache: createRecommendationCache({ redis: cacheRedis, prefix: config.cachePrefix, log }),
      clock,
      log,
      concurrency: config.workerConcurrency,
      metrics,
      ...(options.workerOptions ? { workerOptions: options.workerOptions } : {}),
    });
    await worker.worker.waitUntilReady();
    shardWorker = createPlanShardWorker({ connection: queueRedis, prefix: config.queuePrefix, pool, scorer: createDefaultScorer({ pool, log }), chunkQueue, clock, log });
    await shardWorker.waitUntilReady();
    if (config.metricsPort !== undefined) {
      metricsServer = await startMetricsServer({ registry: metrics.registry, host: config.host, port: config.metricsPort, adminToken: config.adminToken, log });
    }
  } catch (error) {
    await close();
    throw error;
  }
  log.info(
    { redis: redactUrl(config.redisUrl), prefix: config.queuePrefix, concurrency: config.workerConcurrency, recommender: recommender.kind, model: recommender.modelVersion(), metrics: metricsServer?.url },
    'precompute worker started',
  );
  return { metricsUrl: metricsServer?.url, close };
}

/**
 * Runs a worker until SIGTERM or SIGINT, then shuts down in order; if that takes longer than
 * PREWARM_SHUTDOWN_TIMEOUT_MS the process exits anyway (non-zero).
 */
export async function runPrecomputeWorker(overrides: Partial<PrecomputeProcessOptions> = {}): Promise<void> {
  const config = overrides.config ?? loadConfig();
  const log = overrides.log ?? createLogger({ level: config.logLevel, name: 'prewarm-worker', secrets: configSecrets(config) });
  const running = await startPrecomputeProcess({ ...overrides, config, log });
  await closeOnSignal({ close: running.close, log, timeoutMs: config.shutdownTimeoutMs, name: 'precompute worker' });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runPrecomputeWorker().catch((error: unknown) => {
    process.stderr.write(`prewarm worker: ${toError(error).message}\n`);
    process.exit(1);
  });
}
