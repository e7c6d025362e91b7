import type { Candidate } from './policy.ts';

/**
 * Gives every known user a probability of logging in during a window. The planner depends only
 * on this interface: a recency rule stands in until a trained propensity model is available.
 */
export interface PropensityScorer {
  /** Stored with each batch run (`batch_runs.model_version`). */
  readonly version: string;
  /**
   * Scores every known user (first login before `windowStart`) for the window
   * [windowStart, windowStart + horizonMs), using only logins before `windowStart`. Holds every
   * candidate in memory: `evaluate`-sized populations and tests only; the planner streams.
   */
  scoreKnownUsers(windowStart: Date, horizonMs: number): Promise<Candidate[]>;
  /** Scores in batches, shard by shard, in bounded memory. Absent: `streamingScorer` adapts scoreKnownUsers. */
  readonly streaming?: StreamingScorer;
}

/** One of `count` disjoint parts of the known users; every user is in exactly one. */
export interface ShardSpec {
  index: number;
  count: number;
}

/** Scores of consecutive users of one shard, in typed arrays (no object per user). */
export interface ScoredBatch {
  size: number;
  userIds: string[];
  p: Float64Array;
  /** Epoch ms of the user's last login before the window. */
  lastLoginAt: Float64Array;
}

export interface ScoringRequest {
  windowStart: Date;
  horizonMs: number;
  shard: ShardSpec;
  /** Score with this version (the run's, fixed by `prepare`), whichever is newest meanwhile. */
  version: string;
  /** The merged population summary (`population` of every shard, `mergePopulation`d); null when none is needed. */
  population: unknown;
  /** Users per batch (memory bound of the stream). */
  batchSize: number;
}

/**
 * The planner's streaming view of a scorer. Scores may depend on the whole population (the
 * model's population and cohort features): `population` summarises one shard in a small JSON
 * value, `mergePopulation` adds shards up, and every shard scores with the merged value, so the
 * scores do not depend on how the users were sharded.
 */
export interface StreamingScorer {
  /** Once per run, before any shard: brings stored state up to date; returns the version to score with. */
  prepare(windowStart: Date, horizonMs: number): Promise<{ version: string }>;
  /** A shard's mergeable population summary (JSON-safe), or null when scores need none. */
  population(request: Omit<ScoringRequest, 'population'>): Promise<unknown>;
  mergePopulation(parts: readonly unknown[]): unknown;
  scoreShard(request: ScoringRequest): AsyncIterable<ScoredBatch>;
}

/** FNV-1a of a user id, the shard of users for scorers that have no sharding of their own. */
export function fnvShard(userId: string, count: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < userId.length; i++) {
    hash ^= userId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % count;
}

/** Batches of candidates held in memory (tests, and `scoreKnownUsers`-only scorers). */
export function* batchesOf(candidates: readonly Candidate[], shard: ShardSpec, batchSize: number): Generator<ScoredBatch> {
  let batch = emptyBatch(batchSize);
  for (const c of candidates) {
    if (shard.count > 1 && fnvShard(c.userId, shard.count) !== shard.index) continue;
    batch.userIds.push(c.userId);
    batch.p[batch.size] = c.p;
    batch.lastLoginAt[batch.size] = c.lastLoginAt;
    if (++batch.size === batchSize) {
      yield batch;
      batch = emptyBatch(batchSize);
    }
  }
  if (batch.size > 0) yield batch;
}

export function emptyBatch(capacity: number): ScoredBatch {
  return { size: 0, userIds: [], p: new Float64Array(capacity), lastLoginAt: new Float64Array(capacity) };
}

/** The scorer's streaming side, or an adapter over `scoreKnownUsers` (which holds every candidate). */
export function streamingScorer(scorer: PropensityScorer): StreamingScorer {
  if (scorer.streaming) return scorer.streaming;
  return {
    prepare: async () => ({ version: scorer.version }),
    population: async () => null,
    mergePopulation: () => null,
    async *scoreShard(request) {
      yield* batchesOf(await scorer.scoreKnownUsers(request.windowStart, request.horizonMs), request.shard, request.batchSize);
    },
  };
}
