import { ENTRY_VERSION, KEY_NAMES, KEYS } from './entry-layout.ts';
import { isPackedItems, PackedRecommendationSet } from './packed-items.ts';
import type { RecommendationSet } from './set.ts';

/**
 * Reads a cache entry in exactly the layout `encodeEntry` writes, on the login path, without
 * msgpackr: msgpackr's native string extraction made a string of every key of every entry it read
 * (its key cache is skipped for buffers over 180 bytes), and those strings outlived the young
 * generation; with its JavaScript reader it allocates more still. Here the keys are compared as
 * bytes, `source` is one of its constants, and `modelVersion` — the same for every set of a model —
 * is decoded once per model. Anything else (another layout, another writer, damaged bytes) is
 * `NOT_THIS_LAYOUT`, and msgpackr reads it as before.
 */
export const NOT_THIS_LAYOUT = Symbol('not the layout encodeEntry writes');

const SOURCES: readonly RecommendationSet['source'][] = ['batch', 'on_demand'];
const SOURCE_BYTES = SOURCES.map((source) => Buffer.from(source, 'latin1'));
const MAP_HEADER = 0x80 | KEY_NAMES.length;
/** MessagePack's type bytes: a number's and a length's size in bytes after them. */
const NUMBER_SIZES: ReadonlyMap<number, number> = new Map([[0xcc, 1], [0xcd, 2], [0xce, 4], [0xd0, 1], [0xd1, 2], [0xd2, 4], [0xca, 4], [0xcb, 8]]);
const STRING_LENGTH_SIZES: ReadonlyMap<number, number> = new Map([[0xd9, 1], [0xda, 2], [0xdb, 4]]);
const BIN_LENGTH_SIZES: ReadonlyMap<number, number> = new Map([[0xc4, 1], [0xc5, 2], [0xc6, 4]]);
const FIXSTR = { from: 0xa0, to: 0xc0 };

/** The last model version read, and its bytes: reused while entries name the same model. */
let lastModelVersion: { bytes: Buffer; text: string } | undefined;

export function readEntry(raw: Buffer, userId: string): RecommendationSet | undefined | typeof NOT_THIS_LAYOUT {
  const reader = new Reader(raw);
  // A fixmap as encodeEntry writes it, or the map 16 msgpackr writes for the same map.
  if (raw[0] === MAP_HEADER) reader.at = 1;
  else if (raw[0] === 0xde && raw.length > 3 && raw.readUInt16BE(1) === KEY_NAMES.length) reader.at = 3;
  else return NOT_THIS_LAYOUT;
  if (!reader.key(KEYS.v) || reader.number() !== ENTRY_VERSION) return NOT_THIS_LAYOUT;
  const id = reader.key(KEYS.id) ? reader.string() : undefined;
  const source = reader.key(KEYS.source) ? reader.source() : undefined;
  if (id === undefined || source === undefined || !reader.key(KEYS.runId)) return NOT_THIS_LAYOUT;
  const runId = reader.nil() ? null : reader.number();
  const holdout = reader.key(KEYS.holdout) ? reader.boolean() : undefined;
  const computedAt = reader.key(KEYS.computedAt) ? reader.number() : undefined;
  const expiresAt = reader.key(KEYS.expiresAt) ? reader.number() : undefined;
  const modelVersion = reader.key(KEYS.modelVersion) ? reader.modelVersion() : undefined;
  const computeMs = reader.key(KEYS.computeMs) ? reader.number() : undefined;
  const count = reader.key(KEYS.count) ? reader.number() : undefined;
  const block = reader.key(KEYS.items) ? reader.bin() : undefined;
  if (
    runId === undefined ||
    holdout === undefined ||
    computedAt === undefined ||
    expiresAt === undefined ||
    modelVersion === undefined ||
    computeMs === undefined ||
    count === undefined ||
    block === undefined ||
    reader.at !== raw.length
  ) {
    return NOT_THIS_LAYOUT;
  }
  const fields = { id, userId, source, runId, holdout, computedAt: new Date(computedAt), expiresAt: new Date(expiresAt), modelVersion, computeMs };
  return isPackedItems(block, count) ? new PackedRecommendationSet(fields, block, count) : undefined;
}

/** MessagePack of the shapes `encodeEntry` writes; each read returns undefined for any other. */
class Reader {
  at = 0;

  constructor(private readonly raw: Buffer) {}

  key(bytes: Buffer): boolean {
    const raw = this.raw;
    if (this.at + bytes.length > raw.length) return false;
    for (let i = 0; i < bytes.length; i++) if (raw[this.at + i] !== bytes[i]) return false;
    this.at += bytes.length;
    return true;
  }

  nil(): boolean {
    if (this.raw[this.at] !== 0xc0) return false;
    this.at++;
    return true;
  }

  boolean(): boolean | undefined {
    const type = this.raw[this.at];
    if (type !== 0xc2 && type !== 0xc3) return undefined;
    this.at++;
    return type === 0xc3;
  }

  /** The integers and floats msgpackr writes for a number (not 64-bit integers: msgpackr reads those itself). */
  number(): number | undefined {
    const raw = this.raw;
    const at = this.at;
    const type = raw[at];
    if (type === undefined) return undefined;
    if (type < 0x80 || type >= 0xe0) {
      this.at = at + 1;
      return type < 0x80 ? type : type - 0x100;
    }
    const size = NUMBER_SIZES.get(type);
    if (size === undefined || at + 1 + size > raw.length) return undefined;
    this.at = at + 1 + size;
    switch (type) {
      case 0xcc:
        return raw.readUInt8(at + 1);
      case 0xcd:
        return raw.readUInt16BE(at + 1);
      case 0xce:
        return raw.readUInt32BE(at + 1);
      case 0xd0:
        return raw.readInt8(at + 1);
      case 0xd1:
        return raw.readInt16BE(at + 1);
      case 0xd2:
        return raw.readInt32BE(at + 1);
      case 0xca:
        return raw.readFloatBE(at + 1);
      default:
        return raw.readDoubleBE(at + 1);
    }
  }

  /** The [start, end) of a value behind a header of 1 byte or of `sizes` (1, 2 or 4 bytes of length). */
  #bounds(sizes: ReadonlyMap<number, number>, fixed?: { from: number; to: number }): [number, number] | undefined {
    const raw = this.raw;
    const at = this.at;
    const type = raw[at];
    if (type === undefined) return undefined;
    let length: number;
    let header = 1;
    if (fixed && type >= fixed.from && type < fixed.to) length = type - fixed.from;
    else {
      const size = sizes.get(type);
      if (size === undefined || at + 1 + size > raw.length) return undefined;
      length = size === 1 ? raw.readUInt8(at + 1) : size === 2 ? raw.readUInt16BE(at + 1) : raw.readUInt32BE(at + 1);
      header = 1 + size;
    }
    const start = at + header;
    if (start + length > raw.length) return undefined;
    this.at = start + length;
    return [start, start + length];
  }

  #stringBounds(): [number, number] | undefined {
    return this.#bounds(STRING_LENGTH_SIZES, FIXSTR);
  }

  string(): string | undefined {
    const bounds = this.#stringBounds();
    return bounds && this.raw.toString('utf8', bounds[0], bounds[1]);
  }

  source(): RecommendationSet['source'] | undefined {
    const bounds = this.#stringBounds();
    if (!bounds) return undefined;
    const bytes = this.raw.subarray(bounds[0], bounds[1]);
    const known = SOURCE_BYTES.findIndex((candidate) => candidate.equals(bytes));
    // Another source is this layout's still: msgpackr would read it as the same string.
    return known >= 0 ? SOURCES[known] : (bytes.toString('utf8') as RecommendationSet['source']);
  }

  modelVersion(): string | undefined {
    const bounds = this.#stringBounds();
    if (!bounds) return undefined;
    const bytes = this.raw.subarray(bounds[0], bounds[1]);
    if (lastModelVersion?.bytes.equals(bytes)) return lastModelVersion.text;
    const text = bytes.toString('utf8');
    // A copy: the entry's own buffer is not kept alive by the cache of its name.
    lastModelVersion = { bytes: Buffer.from(bytes), text };
    return text;
  }

  /** A bin 8/16/32's bytes, as a view of the entry (no copy), as msgpackr gives them. */
  bin(): Buffer | undefined {
    const bounds = this.#bounds(BIN_LENGTH_SIZES);
    return bounds && this.raw.subarray(bounds[0], bounds[1]);
  }
}
