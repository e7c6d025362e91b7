import type { Redis } from 'ioredis';
import { throttledErrorLog, type Logger } from '../log.ts';
import { decodeEntry, encodeEntry } from './cache-entry.ts';
import type { RecommendationSet } from './set.ts';

/** How long a cache entry outlives its expiry, so a late reader still finds and rejects it cheaply. */
const MIN_TTL_MS = 1_000;
/**
 * Sets per script call. Redis runs a script without serving anyone else (1 000 SETs of 100-item
 * sets took ≈5 ms), where it interleaves other clients within a pipeline; 100 keeps a login's
 * cache read from waiting more than ≈0.5 ms behind a worker. The calls of a chunk are sent at once.
 */
const MAX_SETS_PER_CALL = 100;

// A worker caches one set per user, so encoding and sending are on the batch path's critical
// path: the entry is written by hand (src/sets/cache-entry.ts, as fast as msgpackr was for the
// set's two arrays), and a chunk's sets go in script calls (SET … PX for each key) instead of a
// pipeline of SETs: ≈3.5 µs of client CPU per set against ≈10 µs, as ioredis builds 5 commands
// instead of 500.

// KEYS: the sets' keys; ARGV: their values, then their TTLs in milliseconds.
const SET_MANY_SCRIPT = `
local n = #KEYS
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[i], 'PX', ARGV[n + i])
end
return n`;
const SET_MANY_COMMAND = 'prewarmCacheSetMany';

interface CacheRedis extends Redis {
  [SET_MANY_COMMAND](keyCount: number, ...keysValuesTtls: (string | Buffer | number)[]): Promise<number>;
}

/** Sets encoded as cache entries, to be written later (`setEncoded`). */
export interface EncodedEntries {
  readonly keys: string[];
  readonly values: Buffer[];
  readonly expiresAt: number[];
}

/** A cached set read with other keys (`getWith`). */
export interface CachedRead {
  /** The cached set, or undefined when absent (or unreadable). */
  set: RecommendationSet | undefined;
  /** The other keys' values, in order; undefined when Redis did not answer. */
  values: (Buffer | null)[] | undefined;
}

export interface RecommendationCache {
  /** The cached set, or undefined when absent or when Redis does not answer (never throws). */
  get(userId: string): Promise<RecommendationSet | undefined>;
  /**
   * The cached set and the values of `keys`, in one MGET (the login path reads its user's
   * freshness keys with it: one command, not two). Never throws.
   */
  getWith(userId: string, keys: readonly string[]): Promise<CachedRead>;
  /** Caches sets, TTL = remaining freshness measured against `now`. */
  setMany(sets: readonly RecommendationSet[], now: Date): Promise<void>;
  /** The entries setMany would write; encoding early lets a worker drop its sets sooner. */
  encode(sets: readonly RecommendationSet[]): EncodedEntries;
  /** Writes encoded entries, TTL = remaining freshness measured against `now`. */
  setEncoded(entries: EncodedEntries, now: Date): Promise<void>;
  key(userId: string): string;
}

export interface RecommendationCacheOptions {
  /** The cache's connection; the cache defines one script command on it (`prewarmCacheSetMany`). */
  redis: Redis;
  /** Key prefix; default `prewarm:`. Tests give each test its own. */
  prefix: string;
  log: Logger;
}

/**
 * The recommendation cache in Redis. Freshness is always judged by `expiresAt` against the
 * caller's clock, not by the key's TTL: a replay's virtual clock runs far ahead of Redis's.
 */
export function createRecommendationCache({ redis, prefix, log }: RecommendationCacheOptions): RecommendationCache {
  const key = (userId: string) => `${prefix}rec:${userId}`;
  // ioredis sends the script by its SHA and, after a Redis restart has emptied the script cache,
  // once more in full.
  if (!(SET_MANY_COMMAND in redis)) redis.defineCommand(SET_MANY_COMMAND, { lua: SET_MANY_SCRIPT });
  const scripted = redis as CacheRedis;
  // Both happen on every login while they last (Redis away; entries of an older version): one
  // line per interval with a count, not a stack trace per request.
  const readFailed = throttledErrorLog(log, 'recommendation cache read failed; falling through to Postgres');
  const unrecognised = throttledErrorLog(log, 'unrecognised recommendation cache entry; reading Postgres instead');

  function encodeEntries(sets: readonly RecommendationSet[]): EncodedEntries {
    const entries: EncodedEntries = { keys: [], values: [], expiresAt: [] };
    for (const set of sets) {
      entries.keys.push(key(set.userId));
      entries.values.push(encodeEntry(set));
      entries.expiresAt.push(set.expiresAt.getTime());
    }
    return entries;
  }

  async function setEncoded({ keys, values, expiresAt }: EncodedEntries, now: Date): Promise<void> {
    const calls: Promise<number>[] = [];
    for (let start = 0; start < keys.length; start += MAX_SETS_PER_CALL) {
      const end = Math.min(keys.length, start + MAX_SETS_PER_CALL);
      const ttls: number[] = [];
      for (let n = start; n < end; n++) ttls.push(Math.max(MIN_TTL_MS, (expiresAt[n] as number) - now.getTime()));
      calls.push(scripted[SET_MANY_COMMAND](end - start, ...keys.slice(start, end), ...values.slice(start, end), ...ttls));
    }
    await Promise.all(calls);
  }

  function cachedSetOf(raw: Buffer | null, userId: string): RecommendationSet | undefined {
    if (raw === null) return undefined;
    const cached = decodeEntry(raw, userId);
    // Written by an older version, or not by prewarm: Postgres has the set.
    if (cached === undefined) unrecognised(new Error(`cannot decode the entry at ${key(userId)}`));
    return cached;
  }

  async function getWith(userId: string, keys: readonly string[]): Promise<CachedRead> {
    let raw: (Buffer | null)[];
    try {
      raw = await redis.mgetBuffer(key(userId), ...keys);
    } catch (error) {
      readFailed(error);
      return { set: undefined, values: undefined };
    }
    return { set: cachedSetOf(raw[0] ?? null, userId), values: raw.slice(1) };
  }

  return {
    key,
    getWith,
    async get(userId) {
      return (await getWith(userId, [])).set;
    },
    encode: encodeEntries,
    setEncoded,
    setMany: (sets, now) => setEncoded(encodeEntries(sets), now),
  };
}
