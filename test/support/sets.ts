// A batch set as a worker would have stored it, for tests that need precomputed users.
import { batchSetId, type RecommendationSet } from '../../src/sets/set.ts';

/**
 * A fresh three-item batch set of run 1 for `userId`, computed at `computedAt`, fresh for a day;
 * `fields` overrides any of it (items, model version, …).
 */
export function precomputedSet(userId: string, computedAt: Date, ttlMs = 86_400_000, fields: Partial<RecommendationSet> = {}): RecommendationSet {
  return {
    id: batchSetId(1, userId),
    userId,
    source: 'batch',
    runId: null,
    holdout: false,
    computedAt,
    expiresAt: new Date(computedAt.getTime() + ttlMs),
    itemIds: ['i1', 'i2', 'i3'],
    scores: [0.9, 0.8, 0.7],
    modelVersion: 'fault-v1',
    computeMs: 1,
    ...fields,
  };
}
