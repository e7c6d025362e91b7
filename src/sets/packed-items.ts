import type { ScoredItem } from '../recommender/types.ts';
import { toScoredItems, type RecommendationSet } from './set.ts';
import { writeUtf8 } from '../utf8.ts';

/**
 * A set's items as one binary block, the cache entry's `items` field: every score as a float64
 * (little-endian), then every id as its UTF-8 bytes behind a 2-byte length. A login answers the
 * first `limit` items (20 by default) of a 100-item set; read from this block it decodes those and
 * nothing else, where decoding MessagePack arrays made 100 strings and 100 numbers per login —
 * the largest part of the login path's garbage (measured with V8's sampling heap profiler under
 * the serve bench: 16% of the bytes the server allocated).
 *
 * The length's top bit says the id is ASCII: such an id is read as Latin-1, which needs no UTF-8
 * validation. An id is at most 128 code points (src/ids.ts), 512 bytes, far under 2^15.
 */
const ASCII_FLAG = 0x8000;
const LENGTH_MASK = 0x7fff;
/** Longer ids cannot be written (a recommender plugged in over HTTP could return one). */
export const MAX_PACKED_ID_BYTES = LENGTH_MASK;

export class PackedItemsError extends Error {
  readonly code = 'PREWARM_ERR_PACKED_ITEMS';
}

/** Bytes the block of these ids can take at most (a UTF-16 unit is at most 3 UTF-8 bytes). */
export function itemsBound(itemIds: readonly string[]): number {
  let bound = itemIds.length * 10;
  for (let i = 0; i < itemIds.length; i++) bound += 3 * (itemIds[i] as string).length;
  return bound;
}

/** The block for a set's items; the arrays must have the same length. */
export function packItems(itemIds: readonly string[], scores: readonly number[]): Buffer {
  const block = Buffer.allocUnsafe(itemsBound(itemIds));
  return block.subarray(0, writeItems(block, 0, itemIds, scores));
}

/**
 * Writes the block at `offset` of `target`, which must have `itemsBound(itemIds)` bytes free
 * there; returns the offset after it.
 */
export function writeItems(target: Buffer, offset: number, itemIds: readonly string[], scores: readonly number[]): number {
  const count = itemIds.length;
  if (scores.length !== count) throw new PackedItemsError(`${count} item ids but ${scores.length} scores`);
  // A DataView's setters are compiled inline, where Buffer#writeDoubleLE and friends are calls
  // with range checks.
  const view = new DataView(target.buffer, target.byteOffset, target.byteLength);
  for (let i = 0; i < count; i++) view.setFloat64(offset + 8 * i, scores[i] as number, true);
  let at = offset + 8 * count;
  for (let i = 0; i < count; i++) {
    const id = itemIds[i] as string;
    const bytes = writeUtf8(target, at + 2, id);
    if (bytes > MAX_PACKED_ID_BYTES) throw new PackedItemsError(`item id of ${bytes} bytes (at most ${MAX_PACKED_ID_BYTES})`);
    view.setUint16(at, bytes === id.length ? bytes | ASCII_FLAG : bytes, true);
    at += 2 + bytes;
  }
  return at;
}

/**
 * The first `limit` items of a block, or undefined when the block is not one of `count` items
 * (truncated, or its ids run past its end).
 */
export function unpackItems(block: Buffer, count: number, limit: number): { itemIds: string[]; scores: number[] } | undefined {
  if (!(Number.isInteger(count) && count >= 0) || block.length < 8 * count) return undefined;
  const n = Math.min(limit, count);
  const itemIds = new Array<string>(n);
  const scores = new Array<number>(n);
  let at = 8 * count;
  for (let i = 0; i < n; i++) {
    if (at + 2 > block.length) return undefined;
    const field = block.readUInt16LE(at);
    const end = at + 2 + (field & LENGTH_MASK);
    if (end > block.length) return undefined;
    itemIds[i] = block.toString(field & ASCII_FLAG ? 'latin1' : 'utf8', at + 2, end);
    scores[i] = block.readDoubleLE(8 * i);
    at = end;
  }
  return { itemIds, scores };
}

/** True when `block` holds exactly `count` items: checked once, when an entry is read. */
export function isPackedItems(block: Buffer, count: number): boolean {
  if (!(Number.isInteger(count) && count >= 0) || block.length < 8 * count) return false;
  let at = 8 * count;
  for (let i = 0; i < count; i++) {
    if (at + 2 > block.length) return false;
    at += 2 + (block.readUInt16LE(at) & LENGTH_MASK);
  }
  return at === block.length;
}

export type SetFields = Omit<RecommendationSet, 'itemIds' | 'scores'>;

/**
 * A cached set whose items stay packed until asked for: `firstItems(limit)` decodes only those
 * (what a login answers); `itemIds` and `scores` decode them all, once, for every other reader.
 */
export class PackedRecommendationSet implements RecommendationSet {
  id: string;
  userId: string;
  source: RecommendationSet['source'];
  runId: number | null;
  holdout: boolean;
  computedAt: Date;
  expiresAt: Date;
  modelVersion: string;
  computeMs: number;
  readonly #block: Buffer;
  readonly #count: number;
  #all: { itemIds: string[]; scores: number[] } | undefined;

  constructor(fields: SetFields, block: Buffer, count: number) {
    this.id = fields.id;
    this.userId = fields.userId;
    this.source = fields.source;
    this.runId = fields.runId;
    this.holdout = fields.holdout;
    this.computedAt = fields.computedAt;
    this.expiresAt = fields.expiresAt;
    this.modelVersion = fields.modelVersion;
    this.computeMs = fields.computeMs;
    this.#block = block;
    this.#count = count;
  }

  get itemIds(): string[] {
    return this.#decodeAll().itemIds;
  }

  get scores(): number[] {
    return this.#decodeAll().scores;
  }

  /** The first `limit` items as objects, best first. */
  firstItems(limit: number): ScoredItem[] {
    if (this.#all) return toScoredItems(this.#all.itemIds, this.#all.scores, limit);
    // The block was checked when the entry was read (isPackedItems).
    const { itemIds, scores } = unpackItems(this.#block, this.#count, limit) as { itemIds: string[]; scores: number[] };
    return toScoredItems(itemIds, scores, limit);
  }

  #decodeAll(): { itemIds: string[]; scores: number[] } {
    this.#all ??= unpackItems(this.#block, this.#count, this.#count) as { itemIds: string[]; scores: number[] };
    return this.#all;
  }
}
