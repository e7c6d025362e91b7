// Cache entries written by hand (src/sets/cache-entry.ts) are MessagePack that msgpackr reads back
// exactly, with the bytes msgpackr itself writes for the same map.
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { decodeEntry, encodeEntry } from '../src/sets/cache-entry.ts';
import { NOT_THIS_LAYOUT, readEntry } from '../src/sets/entry-reader.ts';
import { packItems, unpackItems } from '../src/sets/packed-items.ts';
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

  /** The fields a reader gave, comparable with toEqual (a PackedRecommendationSet holds private state). */
  const fieldsOf = (read: RecommendationSet | undefined) => {
    if (read === undefined) return undefined;
    const { id, userId, source, runId, holdout, computedAt, expiresAt, itemIds, scores, modelVersion, computeMs } = read;
    return { id, userId, source, runId, holdout, computedAt, expiresAt, itemIds, scores, modelVersion, computeMs };
  };

  /** The set as msgpackr reads the same bytes. */
  function byMsgpackrRead(entry: Buffer): RecommendationSet {
    const map = packr.unpack(entry) as Record<string, unknown>;
    const block = Buffer.from(map.items as Uint8Array);
    const items = unpackItems(block, map.count as number, map.count as number)!;
    return {
      id: map.id as string,
      userId: 'u1',
      source: map.source as RecommendationSet['source'],
      runId: map.runId as number | null,
      holdout: map.holdout as boolean,
      computedAt: new Date(map.computedAt as number),
      expiresAt: new Date(map.expiresAt as number),
      itemIds: items.itemIds,
      scores: items.scores,
      modelVersion: map.modelVersion as string,
      computeMs: map.computeMs as number,
    };
  }

  it('are read without msgpackr as msgpackr reads them, the hand-written and msgpackr-written bytes alike', () => {
    fc.assert(
      fc.property(set, (s) => {
        for (const entry of [encodeEntry(s), byMsgpackr(s)]) {
          const read = readEntry(entry, 'u1');
          expect(read).not.toBe(NOT_THIS_LAYOUT);
          expect(fieldsOf(read as RecommendationSet)).toEqual(byMsgpackrRead(entry));
        }
      }),
      { seed: 20261205, numRuns: 300 },
    );
  });

  it('leave any other layout to msgpackr: keys in another order, the old two arrays, truncated or extended bytes', () => {
    const s: RecommendationSet = {
      id: 'set-1',
      userId: 'u1',
      source: 'batch',
      runId: 7,
      holdout: false,
      computedAt: new Date('2024-03-01T00:00:00Z'),
      expiresAt: new Date('2024-03-02T00:00:00Z'),
      itemIds: ['a', 'b'],
      scores: [0.5, 0.25],
      modelVersion: 'm1',
      computeMs: 1.5,
    };
    const { v, ...afterV } = packr.unpack(encodeEntry(s));
    const reordered = packr.pack({ ...afterV, v });
    const { v: _v, count: _count, items: _items, ...rest } = packr.unpack(encodeEntry(s));
    const twoArrays = packr.pack({ ...rest, itemIds: s.itemIds, scores: s.scores });
    const entry = encodeEntry(s);
    for (const other of [reordered, twoArrays]) {
      expect(readEntry(other, 'u1')).toBe(NOT_THIS_LAYOUT);
      expect(fieldsOf(decodeEntry(other, 'u1'))).toEqual(s);
    }
    for (const damaged of [entry.subarray(0, entry.length - 1), entry.subarray(0, 20), Buffer.concat([entry, Buffer.of(0xc0)])]) {
      expect(readEntry(damaged, 'u1')).toBe(NOT_THIS_LAYOUT);
    }
    // A block that does not hold `count` items is this layout, and no set, as through msgpackr.
    const wrongCount = Buffer.from(entry);
    wrongCount[entry.indexOf(Buffer.from('\xa5count', 'latin1')) + 6] = 3;
    expect(readEntry(wrongCount, 'u1')).toBeUndefined();
    expect(decodeEntry(wrongCount, 'u1')).toBeUndefined();
  });

  it('read a model version once per model, and each model its own', () => {
    const base: Omit<RecommendationSet, 'modelVersion'> = { id: 'x', userId: 'u1', source: 'on_demand', runId: null, holdout: true, computedAt: new Date(0), expiresAt: new Date(1), itemIds: [], scores: [], computeMs: 0 };
    const first = decodeEntry(encodeEntry({ ...base, modelVersion: 'item-cf-a' }), 'u1');
    const again = decodeEntry(encodeEntry({ ...base, modelVersion: 'item-cf-a' }), 'u1');
    const other = decodeEntry(encodeEntry({ ...base, modelVersion: 'item-cf-b' }), 'u1');
    expect([first?.modelVersion, again?.modelVersion, other?.modelVersion]).toEqual(['item-cf-a', 'item-cf-a', 'item-cf-b']);
    expect(first?.source).toBe('on_demand');
  });
});
