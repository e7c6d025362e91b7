import { withTransaction, type Pool } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import type { EncodedCacheEntries, RecommendationCache } from '../recommendations/cache.ts';
import type { RecommendationStore } from '../recommendations/store.ts';
import { createRunStore, type ChunkOutcome } from './runs.ts';

/** A computed chunk, encoded: its sets as a binary COPY stream, its cache entries, its outcome. */
export interface ChunkWrite {
  /** encodeSets() of the chunk's sets. */
  sets: Uint8Array;
  /** encodeCacheEntries() of the same sets. */
  cache: EncodedCacheEntries;
  completion: ChunkOutcome;
}

/**
 * Writes a computed chunk: the sets and the chunk's completion in one transaction, then the
 * cache. Two implementations: in the caller's thread (`createInlinePersister`), or in a thread
 * of its own (`createThreadPersister`) so that a worker's compute thread does not spend its time
 * in socket writes and protocol encoding.
 */
export interface ChunkPersister {
  /**
   * True when this call recorded the chunk; false when it was already done (a duplicate won,
   * and its sets are the ones stored). Rejects when the transaction failed: nothing was written.
   */
  persist(write: ChunkWrite): Promise<boolean>;
  close(): Promise<void>;
}

export interface PersistDeps {
  pool: Pool;
  store: RecommendationStore;
  cache: RecommendationCache;
  log: Logger;
}

/** The one implementation of the write, whichever thread runs it. */
export function persistChunk({ pool, store, cache, log }: PersistDeps): (write: ChunkWrite) => Promise<boolean> {
  const runs = createRunStore({ pool });
  return async ({ sets, cache: entries, completion }) => {
    const recorded = await withTransaction(pool, async (client) => {
      if (completion.precomputed > 0) await store.insertEncoded(client, sets);
      return runs.completeChunk(client, completion);
    });
    // A duplicate finished first: its sets (same ids, its computedAt) are the ones stored and cached.
    if (!recorded) return false;
    // After the commit: a cached set always has its row, which serves reference. A cache write
    // that fails is not retried — the login path finds the set in Postgres and re-caches it.
    await cache
      .setEncoded(entries)
      .catch((error: unknown) => log.warn({ err: error, runId: completion.runId, chunkNo: completion.chunkNo }, 'caching precomputed sets failed'));
    return true;
  };
}

export function createInlinePersister(deps: PersistDeps): ChunkPersister {
  const persist = persistChunk(deps);
  return { persist, close: async () => undefined };
}
