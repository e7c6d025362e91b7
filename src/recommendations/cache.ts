import type { Redis } from 'ioredis';
import { Packr } from 'msgpackr';
import type { Logger } from '../log.ts';
import type { RecommendationSet } from './set.ts';

/** How long a cache entry outlives its expiry, so a late reader still finds and rejects it cheaply. */
const MIN_TTL_MS = 1_000;

// A worker caches one set per user, so the encoding is on the batch path's critical path:
// MessagePack (msgpackr, already BullMQ's) of items as two parallel arrays costs ≈5 µs for 100
// items, against ≈13 µs for JSON of the same arrays and ≈28 µs for JSON of {itemId, score}
// objects. Scores stay float64, so they come back exactly as written.
const packr = new Packr({ useRecords: false });

interface CachedSet {
  id: string;
  source: RecommendationSet['source'];
  runId: number | null;
  holdout: boolean;
  computedAt: number;
  expiresAt: number;
  itemIds: string[];
  scores: number[];
  modelVersion: string;
  computeMs: number;
}

/** The cached set, or undefined for a value this version did not write. */
function decode(raw: Buffer): CachedSet | undefined {
  let cached: Partial<CachedSet> | null;
  try {
    cached = packr.unpack(raw) as Partial<CachedSet> | null;
  } catch {
    return undefined;
  }
  const wellFormed = typeof cached === 'object' && cached !== null && Array.isArray(cached.itemIds) && Array.isArray(cached.scores) && cached.itemIds.length === cached.scores.length;
  return wellFormed ? (cached as CachedSet) : undefined;
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
      let raw: Buffer | null;
      try {
        raw = await redis.getBuffer(key(userId));
      } catch (error) {
        log.warn({ err: error }, 'recommendation cache read failed; falling through to Postgres');
        return undefined;
      }
      if (raw === null) return undefined;
      const cached = decode(raw);
      if (cached === undefined) {
        // Written by an older version, or not by prewarm: Postgres has the set.
        log.warn({ key: key(userId) }, 'unrecognised recommendation cache entry; reading Postgres instead');
        return undefined;
      }
      return {
        id: cached.id,
        userId,
        source: cached.source,
        runId: cached.runId,
        holdout: cached.holdout,
        computedAt: new Date(cached.computedAt),
        expiresAt: new Date(cached.expiresAt),
        items: cached.itemIds.map((itemId, rank) => ({ itemId, score: cached.scores[rank] as number })),
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
          itemIds: set.items.map((item) => item.itemId),
          scores: set.items.map((item) => item.score),
          modelVersion: set.modelVersion,
          computeMs: set.computeMs,
        };
        pipeline.set(key(set.userId), packr.pack(value), 'PX', ttl);
      }
      const results = await pipeline.exec();
      const failed = results?.find(([error]) => error !== null);
      if (failed) throw failed[0];
    },
  };
}
