import type { Redis } from 'ioredis';
import type { Logger } from '../log.ts';
import type { RecommendationSet } from './set.ts';

/** How long a cache entry outlives its expiry, so a late reader still finds and rejects it cheaply. */
const MIN_TTL_MS = 1_000;

interface CachedSet {
  id: string;
  source: RecommendationSet['source'];
  runId: number | null;
  holdout: boolean;
  computedAt: number;
  expiresAt: number;
  items: RecommendationSet['items'];
  modelVersion: string;
  computeMs: number;
}

export interface RecommendationCache {
  /** The cached set, or undefined when absent or when Redis does not answer (never throws). */
  get(userId: string): Promise<RecommendationSet | undefined>;
  /** Caches sets in one pipeline, TTL = remaining freshness measured against `now`. */
  setMany(sets: readonly RecommendationSet[], now: Date): Promise<void>;
  key(userId: string): string;
}

export interface RecommendationCacheOptions {
  redis: Redis;
  /** Key prefix; default `prewarm:`. Tests give each test its own. */
  prefix: string;
  log: Logger;
}

/**
 * The recommendation cache in Redis. Freshness is always judged by `expiresAt` against the
 * caller's clock, not by the key's TTL: a replay's virtual clock runs far ahead of Redis's.
 */
export function createRecommendationCache({ redis, prefix, log }: RecommendationCacheOptions): RecommendationCache {
  const key = (userId: string) => `${prefix}rec:${userId}`;
  return {
    key,
    async get(userId) {
      let raw: string | null;
      try {
        raw = await redis.get(key(userId));
      } catch (error) {
        log.warn({ err: error }, 'recommendation cache read failed; falling through to Postgres');
        return undefined;
      }
      if (raw === null) return undefined;
      const cached = JSON.parse(raw) as CachedSet;
      return {
        id: cached.id,
        userId,
        source: cached.source,
        runId: cached.runId,
        holdout: cached.holdout,
        computedAt: new Date(cached.computedAt),
        expiresAt: new Date(cached.expiresAt),
        items: cached.items,
        modelVersion: cached.modelVersion,
        computeMs: cached.computeMs,
      };
    },
    async setMany(sets, now) {
      if (sets.length === 0) return;
      const pipeline = redis.pipeline();
      for (const set of sets) {
        const ttl = Math.max(MIN_TTL_MS, set.expiresAt.getTime() - now.getTime());
        const value: CachedSet = {
          id: set.id,
          source: set.source,
          runId: set.runId,
          holdout: set.holdout,
          computedAt: set.computedAt.getTime(),
          expiresAt: set.expiresAt.getTime(),
          items: set.items,
          modelVersion: set.modelVersion,
          computeMs: set.computeMs,
        };
        pipeline.set(key(set.userId), JSON.stringify(value), 'PX', ttl);
      }
      const results = await pipeline.exec();
      const failed = results?.find(([error]) => error !== null);
      if (failed) throw failed[0];
    },
  };
}
