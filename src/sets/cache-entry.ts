import { Packr } from 'msgpackr';
import { isPackedItems, itemsBound, PackedRecommendationSet, writeItems } from './packed-items.ts';
import type { RecommendationSet } from './set.ts';
import { writeUtf8 } from '../utf8.ts';
import { ENTRY_VERSION, KEY_NAMES, KEYS } from './entry-layout.ts';
import { NOT_THIS_LAYOUT, readEntry } from './entry-reader.ts';

// A cache entry: a MessagePack map of the set's fields and its items in one binary block
// (src/sets/packed-items.ts), so that a login decodes only the items it answers. Entries are read
// with msgpackr (already BullMQ's); they are written here by hand, as a worker caches one set per
// user on the batch path's critical path: msgpackr walking the map as a generic object and copying
// the block took ≈25% longer than it took for the earlier two-array layout; written here, in one
// buffer with the block in place, an entry costs what the two-array one did (≈5–7 µs per 100-item
// set, both measured in one process on a loaded host). test/cache-entry.test.ts checks msgpackr
// reads back exactly what was written, and the same map as msgpackr writes.

const packr = new Packr({ useRecords: false });

interface CachedFields {
  id: string;
  source: RecommendationSet['source'];
  runId: number | null;
  holdout: boolean;
  computedAt: number;
  expiresAt: number;
  modelVersion: string;
  computeMs: number;
}

interface CachedEntry extends CachedFields {
  v: typeof ENTRY_VERSION;
  count: number;
  items: Uint8Array;
}

/** The layout written before version 2, still read: a deploy does not send a day's logins to Postgres. */
interface CachedArrays extends CachedFields {
  itemIds: string[];
  scores: number[];
}

/** One set's entry in one buffer: the fields as MessagePack, the items' block in place. */
export function encodeEntry(set: RecommendationSet): Buffer {
  const strings = set.id.length + set.source.length + set.modelVersion.length;
  // Keys ≈ 70 bytes; each value at most 9 bytes of header besides its text or block.
  const out = new EntryWriter(256 + 3 * strings + itemsBound(set.itemIds));
  out.byte(0x80 | KEY_NAMES.length);
  out.key(KEYS.v).number(ENTRY_VERSION);
  out.key(KEYS.id).string(set.id);
  out.key(KEYS.source).string(set.source);
  out.key(KEYS.runId);
  if (set.runId === null) out.byte(0xc0);
  else out.number(set.runId);
  out.key(KEYS.holdout).byte(set.holdout ? 0xc3 : 0xc2);
  out.key(KEYS.computedAt).number(set.computedAt.getTime());
  out.key(KEYS.expiresAt).number(set.expiresAt.getTime());
  out.key(KEYS.modelVersion).string(set.modelVersion);
  out.key(KEYS.computeMs).number(set.computeMs);
  out.key(KEYS.count).number(set.itemIds.length);
  out.key(KEYS.items).items(set.itemIds, set.scores);
  return out.done();
}

/** The cached set, or undefined for a value this version did not write (or cannot read). */
export function decodeEntry(raw: Buffer, userId: string): RecommendationSet | undefined {
  // The layout this module writes, read without msgpackr (src/sets/entry-reader.ts); msgpackr
  // reads anything else: entries of the old layout, of another writer, damaged ones.
  const read = readEntry(raw, userId);
  if (read !== NOT_THIS_LAYOUT) return read;
  let cached: Partial<CachedEntry & CachedArrays> | null;
  try {
    cached = packr.unpack(raw) as Partial<CachedEntry & CachedArrays> | null;
  } catch {
    return undefined;
  }
  if (typeof cached !== 'object' || cached === null) return undefined;
  const fields = {
    id: cached.id as string,
    userId,
    source: cached.source as RecommendationSet['source'],
    runId: cached.runId ?? null,
    holdout: cached.holdout === true,
    computedAt: new Date(cached.computedAt as number),
    expiresAt: new Date(cached.expiresAt as number),
    modelVersion: cached.modelVersion as string,
    computeMs: cached.computeMs as number,
  };
  if (cached.v === ENTRY_VERSION) {
    const items: unknown = cached.items;
    const count = cached.count;
    if (!(items instanceof Uint8Array) || typeof count !== 'number') return undefined;
    // msgpackr gives a view of the entry's own bytes (no copy); as a Buffer for its readers.
    const block = Buffer.isBuffer(items) ? items : Buffer.from(items.buffer, items.byteOffset, items.byteLength);
    return isPackedItems(block, count) ? new PackedRecommendationSet(fields, block, count) : undefined;
  }
  const { itemIds, scores } = cached;
  if (!Array.isArray(itemIds) || !Array.isArray(scores) || itemIds.length !== scores.length) return undefined;
  return { ...fields, itemIds, scores };
}

/** MessagePack's type bytes for an unsigned int and for a string's length of 8, 16 and 32 bits. */
const UINT_TYPES = [0xcc, 0xcd, 0xce] as const;
const STR_TYPES = [0xd9, 0xda, 0xdb] as const;

/** MessagePack of the shapes an entry holds, into a buffer sized for the whole entry. */
class EntryWriter {
  readonly #buffer: Buffer;
  #at = 0;

  constructor(bound: number) {
    this.#buffer = Buffer.allocUnsafe(bound);
  }

  byte(value: number): this {
    this.#buffer[this.#at++] = value;
    return this;
  }

  key(bytes: Buffer): this {
    this.#buffer.set(bytes, this.#at);
    this.#at += bytes.length;
    return this;
  }

  /** As msgpackr writes a number: an integer of 32 bits as the shortest unsigned or signed int, any other as float64. */
  number(value: number): this {
    if (value >>> 0 === value) return value < 0x80 ? this.byte(value) : this.#sized(value, UINT_TYPES);
    if (value >> 0 === value && value >= -0x20) return this.byte(value & 0xff);
    const buffer = this.#buffer;
    if (value >> 0 === value) {
      buffer[this.#at] = 0xd2;
      buffer.writeInt32BE(value, this.#at + 1);
      this.#at += 5;
      return this;
    }
    buffer[this.#at] = 0xcb;
    buffer.writeDoubleBE(value, this.#at + 1);
    this.#at += 9;
    return this;
  }

  /** A string: its UTF-8 bytes behind the shortest header for their length. */
  string(text: string): this {
    let ascii = true;
    for (let i = 0; i < text.length; i++) {
      if (text.charCodeAt(i) >= 0x80) {
        ascii = false;
        break;
      }
    }
    const bytes = ascii ? text.length : Buffer.byteLength(text, 'utf8');
    if (bytes < 32) this.byte(0xa0 | bytes);
    else this.#sized(bytes, STR_TYPES);
    this.#at += writeUtf8(this.#buffer, this.#at, text);
    return this;
  }

  /** A type byte and `n` big-endian in 1, 2 or 4 bytes, the shortest that holds it (`types` in that order). */
  #sized(n: number, types: readonly [number, number, number]): this {
    const buffer = this.#buffer;
    if (n < 0x100) {
      buffer[this.#at] = types[0];
      buffer[this.#at + 1] = n;
      this.#at += 2;
    } else if (n < 0x10000) {
      buffer[this.#at] = types[1];
      buffer.writeUInt16BE(n, this.#at + 1);
      this.#at += 3;
    } else {
      buffer[this.#at] = types[2];
      buffer.writeUInt32BE(n, this.#at + 1);
      this.#at += 5;
    }
    return this;
  }

  /** The items' block as MessagePack bin 32, written in place and its length set after. */
  items(itemIds: readonly string[], scores: readonly number[]): this {
    const header = this.#at;
    this.#buffer[header] = 0xc6;
    const end = writeItems(this.#buffer, header + 5, itemIds, scores);
    this.#buffer.writeUInt32BE(end - header - 5, header + 1);
    this.#at = end;
    return this;
  }

  done(): Buffer {
    return this.#buffer.subarray(0, this.#at);
  }
}
