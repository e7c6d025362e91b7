import { createHash } from 'node:crypto';
import type { ScoredItem } from '../recommender/types.ts';

/** One computed recommendation set: a row of `recommendations`, and the cached value. */
export interface RecommendationSet {
  id: string;
  userId: string;
  /** `batch` sets are precomputed by workers; `on_demand` ones during a login. */
  source: 'batch' | 'on_demand';
  runId: number | null;
  /** A holdout set: precomputed for an unselected user to keep the model's misses measurable. */
  holdout: boolean;
  computedAt: Date;
  expiresAt: Date;
  items: ScoredItem[];
  modelVersion: string;
  computeMs: number;
}

/**
 * The id of a batch set is derived from its run and user, so a retried or duplicated chunk
 * writes the same row (and the same cache entry) instead of a second set.
 */
export function batchSetId(runId: number, userId: string): string {
  const hex = createHash('sha256').update(`prewarm:batch:${runId}:${userId}`).digest('hex');
  // Shape it as an RFC 4122 version-5-style UUID so Postgres' uuid type accepts it.
  const variant = ((parseInt(hex.slice(16, 18), 16) & 0x3f) | 0x80).toString(16).padStart(2, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${variant}${hex.slice(18, 20)}-${hex.slice(20, 32)}`;
}

export function isFresh(set: Pick<RecommendationSet, 'computedAt' | 'expiresAt'>, at: Date): boolean {
  return set.computedAt.getTime() <= at.getTime() && at.getTime() < set.expiresAt.getTime();
}
