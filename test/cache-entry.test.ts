// Cache entries written by hand (src/sets/cache-entry.ts) are MessagePack that msgpackr reads back
// exactly, with the bytes msgpackr itself writes for the same map.
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { decodeEntry, encodeEntry } from '../src/sets/cache-entry.ts';
import { packItems } from '../src/sets/packed-items.ts';
import type { RecommendationSet } from '../src/sets/set.ts';

const packr = new Packr({ useRecords: false });
const text = fc.string({ unit: 'binary', maxLength: 300 });
const instant = fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('2200-01-01T00:00:00Z'), noInvalidDate: true });
const set: fc.Arbitrary<RecommendationSet> = fc
  .record({
    id: fc.oneof(fc.uuid(), text),
    userId: fc.constant('u1'),
    source: fc.constantFrom('batch', 'on_demand'),
    runId: fc.option(fc.oneof(fc.nat(), fc.integer({ min: -40, max: 300 }), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })), { nil: null }),
    holdout: fc.boolean(),
    computedAt: instant,
    expiresAt: instant,
    items: fc.array(fc.tuple(text, fc.double()), { maxLength: 120 }),
    modelVersion: text,
    computeMs: fc.oneof(fc.nat(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer({ min: -100_000, max: 100_000 })),
  })
  .map(({ items, ...fields }) => ({ ...fields, itemIds: items.map(([id]) => id), scores: items.map(([, score]) => score) }) as RecommendationSet);

/** What msgpackr writes for the same entry. */
function byMsgpackr(s: RecommendationSet): Buffer {
  return packr.pack({
    v: 2,
    id: s.id,
    source: s.source,
    runId: s.runId,
    holdout: s.holdout,
    computedAt: s.computedAt.getTime(),
    expiresAt: s.expiresAt.getTime(),
    modelVersion: s.modelVersion,
    computeMs: s.computeMs,
    count: s.itemIds.length,
    items: packItems(s.itemIds, s.scores),
  });
}

describe('cache entries', () => {
  it('are read back exactly, and hold what msgpackr writes for the same map', () => {
    fc.assert(
      fc.property(set, (s) => {
        const entry = encodeEntry(s);
        const read = decodeEntry(entry, 'u1');
        expect(read).toBeDefined();
        const { id, userId, source, runId, holdout, computedAt, expiresAt, itemIds, scores, modelVersion, computeMs } = read!;
        expect({ id, userId, source, runId, holdout, computedAt, expiresAt, itemIds, scores, modelVersion, computeMs }).toEqual(s);
        // The same map, field for field, as msgpackr reads both.
        expect(packr.unpack(entry)).toEqual(packr.unpack(byMsgpackr(s)));
      }),
      { seed: 20261206, numRuns: 500 },
    );
  });
});
