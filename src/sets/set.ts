import { hash } from 'node:crypto';
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
  /**
   * The items, best first, as two parallel arrays (as Postgres stores them): a worker writes
   * 100 items per user, and both stores encode two arrays without a per-item copy, and the
   * garbage collector has 2 arrays to trace instead of 100 objects with 100 boxed scores.
   * `scoredItems` gives them back as objects.
   */
  itemIds: string[];
  /** Each item's score, rounded as stored (`storedScore`). */
  scores: number[];
  modelVersion: string;
  computeMs: number;
}

/**
 * The id of a batch set is derived from its run and user, so a retried or duplicated chunk
 * writes the same row (and the same cache entry) instead of a second set.
 */
export function batchSetId(runId: number, userId: string): string {
  // One-shot hash(): half the cost of createHash().update().digest() for so short an input.
  const hex = hash('sha256', `prewarm:batch:${runId}:${userId}`, 'hex');
  // Shape it as an RFC 4122 version-5-style UUID so Postgres' uuid type accepts it.
  const variant = ((parseInt(hex.slice(16, 18), 16) & 0x3f) | 0x80).toString(16).padStart(2, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${variant}${hex.slice(18, 20)}-${hex.slice(20, 32)}`;
}

export function isFresh(set: Pick<RecommendationSet, 'computedAt' | 'expiresAt'>, at: Date): boolean {
  return set.computedAt.getTime() <= at.getTime() && at.getTime() < set.expiresAt.getTime();
}

const POWERS_OF_TEN = Array.from({ length: 23 }, (_, i) => 10 ** i);

/**
 * A score as stored: 6 significant digits, which a Postgres `real` holds exactly, so a set
 * served on demand, from Redis or from Postgres carries the same numbers. Equals
 * `Number(score.toPrecision(6))`, 4× faster (a worker rounds 100 scores per user).
 */
export function storedScore(score: number): number {
  const magnitude = Math.abs(score);
  if (magnitude === 0) return 0;
  if (!(magnitude >= 1e-16 && magnitude < 1e16)) return Number.isFinite(score) ? Number(score.toPrecision(6)) : score;
  const exponent = 5 - Math.floor(Math.log10(magnitude));
  // Dividing an integer by an exact power of ten gives the double nearest the decimal.
  if (exponent >= 0) return Math.round(score * POWERS_OF_TEN[exponent]!) / POWERS_OF_TEN[exponent]!;
  return Math.round(score / POWERS_OF_TEN[-exponent]!) * POWERS_OF_TEN[-exponent]!;
}

/** The items of a new set: the recommender's, scores as stored. */
export function storedItems(items: readonly ScoredItem[]): Pick<RecommendationSet, 'itemIds' | 'scores'> {
  const itemIds: string[] = [];
  const scores: number[] = [];
  for (const item of items) {
    itemIds.push(item.itemId);
    scores.push(storedScore(item.score));
  }
  return { itemIds, scores };
}

/** A set that can give its first items without decoding the rest (a cached set, src/sets/packed-items.ts). */
interface FirstItems {
  firstItems(limit: number): ScoredItem[];
}

/** The set's first `limit` items (all by default) as objects, best first: what a caller is answered. */
export function scoredItems(set: Pick<RecommendationSet, 'itemIds' | 'scores'>, limit?: number): ScoredItem[] {
  if (limit !== undefined && typeof (set as Partial<FirstItems>).firstItems === 'function') return (set as unknown as FirstItems).firstItems(limit);
  return toScoredItems(set.itemIds, set.scores, limit ?? set.itemIds.length);
}

/** The first `limit` of two parallel arrays as item objects. */
export function toScoredItems(itemIds: readonly string[], scores: readonly number[], limit: number): ScoredItem[] {
  const count = Math.min(limit, itemIds.length);
  const items = new Array<ScoredItem>(count);
  for (let rank = 0; rank < count; rank++) items[rank] = { itemId: itemIds[rank] as string, score: scores[rank] as number };
  return items;
}
