// A cached set's items as one binary block (src/sets/packed-items.ts): a login decodes only the
// items it answers, every other reader all of them, and both get exactly what was written.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isPackedItems, MAX_PACKED_ID_BYTES, PackedRecommendationSet, packItems, unpackItems } from '../src/sets/packed-items.ts';
import { scoredItems, type RecommendationSet } from '../src/sets/set.ts';

const AWKWARD_IDS = ['plain-1', 'naïve café ✓', '😀 emoji', 'x'.repeat(300), '', 'NULL', 'say "hi"', 'back\\slash', 'tab\there', 'é', 'ascii-then-é'];
const fields: Omit<RecommendationSet, 'itemIds' | 'scores'> = {
  id: '00000000-0000-5000-8000-000000000001',
  userId: 'u1',
  source: 'batch',
  runId: 3,
  holdout: false,
  computedAt: new Date('2026-12-04T00:00:00Z'),
  expiresAt: new Date('2026-12-05T00:00:00Z'),
  modelVersion: 'v1',
  computeMs: 0.5,
};

describe('packed items', () => {
  it('gives back exactly the ids and scores written, whole or as a prefix', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.oneof(fc.constantFrom(...AWKWARD_IDS), fc.string({ unit: 'binary', maxLength: 40 })), fc.double()), { maxLength: 120 }),
        fc.nat(130),
        (items, limit) => {
          const itemIds = items.map(([id]) => id);
          const scores = items.map(([, score]) => score);
          const block = packItems(itemIds, scores);
          expect(isPackedItems(block, items.length)).toBe(true);
          expect(unpackItems(block, items.length, items.length)).toEqual({ itemIds, scores });
          expect(unpackItems(block, items.length, limit)).toEqual({ itemIds: itemIds.slice(0, limit), scores: scores.slice(0, limit) });
        },
      ),
      { seed: 20261205, numRuns: 300 },
    );
  });

  it('refuses a block that is not one of its count of items', () => {
    const block = packItems(['a', 'bb', 'ccc'], [1, 2, 3]);
    expect(isPackedItems(block, 2)).toBe(false);
    expect(isPackedItems(block, 4)).toBe(false);
    expect(isPackedItems(block.subarray(0, block.length - 1), 3)).toBe(false);
    expect(isPackedItems(Buffer.concat([block, Buffer.of(0)]), 3)).toBe(false);
    expect(unpackItems(block.subarray(0, block.length - 1), 3, 3)).toBeUndefined();
    expect(() => packItems(['a'], [1, 2])).toThrow(/1 item ids but 2 scores/);
    expect(() => packItems(['é'.repeat(MAX_PACKED_ID_BYTES)], [1])).toThrow(/bytes/);
  });

  it('serves a prefix without decoding the rest, and all items to every other reader', () => {
    const itemIds = Array.from({ length: 100 }, (_, i) => AWKWARD_IDS[i % AWKWARD_IDS.length] + String(i));
    const scores = Array.from({ length: 100 }, (_, i) => 1 / (i + 1));
    const set = new PackedRecommendationSet(fields, packItems(itemIds, scores), 100);
    expect(scoredItems(set, 20)).toEqual(itemIds.slice(0, 20).map((itemId, i) => ({ itemId, score: scores[i] })));
    expect(scoredItems(set, 500)).toHaveLength(100);
    expect(set.itemIds).toEqual(itemIds);
    expect(set.scores).toEqual(scores);
    expect(scoredItems(set, 3)).toEqual(itemIds.slice(0, 3).map((itemId, i) => ({ itemId, score: scores[i] })));
    expect(scoredItems(set)).toHaveLength(100);
  });
});
