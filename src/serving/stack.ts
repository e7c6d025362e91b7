import type { Redis } from 'ioredis';
import { recordLogins } from '../activity/user-activity.ts';
import type { Clock } from '../clock.ts';
import type { Pool } from '../db/pool.ts';
import { createFreshness, type Freshness } from '../freshness/freshness.ts';
import { createInteractionRecorder, type InteractionRecorder } from '../interactions/recorder.ts';
import { MAX_CLOCK_AHEAD_MS } from '../interactions/route.ts';
import { runShutdownSteps } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import type { Recommender } from '../recommender/types.ts';
import { createRecommendationCache, type RecommendationCache } from '../sets/cache.ts';
import { createRecommendationStore, type RecommendationStore } from '../sets/store.ts';
import { createEventRecorder, type EventRecorder, type EventRecorderOptions } from './event-recorder.ts';
import { createRecommendationService, type RecommendationService, type RecommendationServiceDeps, type ServingOptions } from './service.ts';

/** Metrics the service reports every answer to (the API's Prometheus metrics). */
export interface ServeMetrics {
  observeServe: NonNullable<RecommendationServiceDeps['onServe']>;
}

export interface ServingStackOptions {
  /** Prefix of the cache's Redis keys (PREWARM_CACHE_PREFIX). */
  cachePrefix: string;
  /** The login path: latency budget, on-demand TTL, concurrency and queue, set size. */
  serving: ServingOptions;
  /** Batching of the event recorder; defaults are the recorder's (200 ms, 2,000, 200,000). */
  events?: Pick<EventRecorderOptions, 'flushIntervalMs' | 'maxBatch' | 'maxPending'>;
  /** How long `close()` keeps trying to write buffered events. Default 10 s (the recorder's). */
  closeDeadlineMs?: number;
  /** How long each user's interaction times stay in Redis for the behind check (src/freshness). Default 3 days. */
  freshnessKeepMs?: number;
}

export interface ServingStackDeps<M extends ServeMetrics | undefined = undefined> {
  pool: Pool;
  /** The cache's Redis; in a server, one that fails fast (createServingRedis). */
  redis: Redis;
  /** Not owned: the caller closes it (a replay shares it with its precompute worker). */
  recommender: Recommender;
  clock: Clock;
  log: Logger;
  options: ServingStackOptions;
  /** Builds the process's metrics once the recorder exists (its backlog is a gauge). Default: none. */
  metrics?: (parts: { recorder: EventRecorder }) => M;
}

export interface ServingStack<M extends ServeMetrics | undefined = undefined> {
  cache: RecommendationCache;
  store: RecommendationStore;
  recorder: EventRecorder;
  /** The buffer behind `POST /v1/interactions`, batched like the events. */
  interactions: InteractionRecorder;
  /** Each user's recent interaction times in Redis: whether a served set is behind. */
  freshness: Freshness;
  service: RecommendationService;
  metrics: M;
  /**
   * Finishes the on-demand computations, then writes the events they and the logins buffered.
   * Runs both steps even if the first fails, then rejects with the first failure. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * The login path, wired once for every process that serves: the API (src/server.ts), the replay,
 * and the tests' serving harness. Redis, the pool and the recommender come from the caller,
 * which closes them after `close()`.
 */
export function createServingStack<M extends ServeMetrics | undefined = undefined>(deps: ServingStackDeps<M>): ServingStack<M> {
  const { pool, redis, recommender, clock, log, options } = deps;
  const cache = createRecommendationCache({ redis, prefix: options.cachePrefix, log });
  const store = createRecommendationStore({ pool });
  const recorder = createEventRecorder({ pool, store, recordLogins, log, ...options.events });
  // Writes a user's buffered interactions before they are counted in Postgres (`interactions`
  // is created just below; the count runs only at a login).
  const flushPending = async (userId: string) => {
    if (interactions.hasPending(userId)) await interactions.flush();
  };
  const freshness = createFreshness({ redis, prefix: options.cachePrefix, pool, clock, log, keepMs: options.freshnessKeepMs, clockAheadMs: MAX_CLOCK_AHEAD_MS, flushPending });
  void freshness.start();
  const interactions = createInteractionRecorder({ pool, log, flushIntervalMs: options.events?.flushIntervalMs, maxPending: options.events?.maxPending, freshness });
  const metrics = deps.metrics?.({ recorder }) as M;
  const service = createRecommendationService({ cache, store, recommender, recorder, clock, log, options: options.serving, onServe: metrics?.observeServe, interactions, freshness });

  let closing: Promise<void> | undefined;
  return {
    cache,
    store,
    recorder,
    interactions,
    freshness,
    service,
    metrics,
    close() {
      closing ??= runShutdownSteps(
        [
          ['finish on-demand computations', () => service.close()],
          ['flush logins and serves', () => recorder.close(options.closeDeadlineMs)],
          ['flush interactions', () => interactions.close(options.closeDeadlineMs)],
          ['stop the freshness marker retry', async () => freshness.close()],
        ],
        log,
        { rethrow: true },
      );
      return closing;
    },
  };
}
