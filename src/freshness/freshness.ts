import type { Redis } from 'ioredis';
import type { Clock } from '../clock.ts';
import type { Queryable, Sql } from '../db/pool.ts';
import { throttledErrorLog, type Logger } from '../log.ts';

/**
 * Whether a served set is *behind*: did its user interact at or after the set's `computedAt`
 * (the recommender reads interactions strictly before it) and before the login? An interaction
 * at the login's very instant is the login's own doing (in a log of sessions the first action
 * *is* the login): it does not count. README "HTTP API" and "Serves: login coverage, staleness,
 * latency".
 *
 * Each user's recent interaction times live in a Redis sorted set, and the newest of them in a
 * plain key, written as interactions are acknowledged (`record`, from the interactions recorder).
 * A login reads the plain keys in the same MGET as its cached set (`keys`, `fromValues`): a set
 * computed after the user's newest interaction is up to date (`countFrom` says 0), which is
 * nearly every login, for no script call and no extra round trip (a Lua read of the sorted set
 * cost Redis ≈ 12 µs and the client ≈ 10 µs per login, against ≈ 2 and ≈ 5 for the MGET). Only a
 * set that is behind is counted, by ZCOUNT (`countExactly`). What Redis cannot vouch for is
 * counted in Postgres: a Redis that lost its keys (restart, eviction of the marker, a failed
 * write) makes a few logins slower, never wrong.
 */

export interface FreshnessOptions {
  /** The cache's Redis (a serving connection: fails fast). */
  redis: Redis;
  /** Key prefix, the cache's (PREWARM_CACHE_PREFIX). */
  prefix: string;
  /** For the exact count when Redis cannot give it. */
  pool: Queryable;
  clock: Clock;
  log: Logger;
  /**
   * How long a user's interaction times are kept, after their newest, and the longest a set may
   * have been served for and still be judged from Redis. Longer-lived sets are counted in
   * Postgres. Default 3 days.
   */
  keepMs?: number;
  /** Interaction times kept per user at most; older ones are dropped (then Postgres counts). Default 1,000. */
  maxPerUser?: number;
  /**
   * How far ahead of the server's clock an interaction's `at` may be (the interactions API's
   * bound): a set computed less than this after the marker could miss one acknowledged before it.
   */
  clockAheadMs: number;
  /** Writes a user's acknowledged interactions still buffered, so that Postgres counts them. */
  flushPending?: (userId: string) => Promise<void>;
}

/** What one login read from Redis about its user's interactions. */
export interface RecentInteractions {
  /** False when Redis did not answer. */
  readonly ok: boolean;
  /** Since when every acknowledged interaction is in Redis (ms); null: unknown (Redis lost them). */
  readonly since: number | null;
  /** Interactions before this instant (ms) may have been dropped from the user's times. */
  readonly floor: number;
  /**
   * The user's times were loaded from Postgres (`countExactly`): complete from `from` on, if
   * loaded after the marker was last set (`madeAt`). Null when never loaded.
   */
  readonly loaded: { from: number; madeAt: number } | null;
  /** The user's newest interaction (ms) Redis holds; null: none within keepMs. */
  readonly newest: number | null;
}

/** One interaction as the recorder acknowledged it. */
export interface RecordedInteraction {
  userId: string;
  itemId: string;
  at: Date;
}

export interface Freshness {
  /**
   * Puts acknowledged interactions' times in Redis. Never rejects: a failed write is logged and
   * makes later counts of older sets go to Postgres until Redis has them again.
   */
  record(rows: readonly RecordedInteraction[]): Promise<void>;
  /** The keys a login reads (in the cache's MGET, `fromValues`). */
  keys(userId: string): string[];
  /** What the values of `keys` say; undefined values: Redis did not answer. Never rejects. */
  fromValues(values: readonly (Buffer | string | null)[] | undefined): RecentInteractions;
  /** `keys` read on their own (`fromValues` of an MGET). Never rejects. */
  read(userId: string): Promise<RecentInteractions>;
  /**
   * Interactions at or after `computedAt` and before `at` when a read vouches for none (0);
   * undefined otherwise (then `countExactly`).
   */
  countFrom(read: RecentInteractions, computedAt: Date, at: Date): number | undefined;
  /** The same count, exactly: Redis's ZCOUNT when it holds them all, else Postgres. Null when neither answers. */
  countExactly(read: RecentInteractions, userId: string, computedAt: Date, at: Date): Promise<number | null>;
  /** Sets the marker if Redis has none (start of tracking). Never rejects. */
  start(): Promise<void>;
  /** Stops retrying the marker after a failed write. Idempotent. */
  close(): void;
}

// KEYS[1]: the marker; then per user: their times, their floor, their newest. ARGV[1]: keep (ms); ARGV[2]: most
// times per user; ARGV[3]: now (ms); ARGV[4]: '1' to move the marker to now (a write failed
// before); then per user: n, then n pairs of score (ms) and member.
// Times older than now - keep are dropped: a login judges from Redis only sets younger than keep,
// so it never needs them. Times beyond maxLen for one user are dropped oldest first, and the
// user's floor (the instant before which times may be missing) is raised past them; it need not
// outlive keep, after which sets that old are counted in Postgres anyway. The newest time is kept
// as given (a string: Lua would print a number with 14 digits) and only ever raised. Six calls per
// user unless that user overflows.
const RECORD_SCRIPT = `
local keep = tonumber(ARGV[1])
local maxLen = tonumber(ARGV[2])
local cut = '(' .. (tonumber(ARGV[3]) - keep)
if ARGV[4] == '1' then redis.call('SET', KEYS[1], ARGV[3]) else redis.call('SET', KEYS[1], ARGV[3], 'NX') end
local a = 5
for k = 2, #KEYS, 3 do
  local key = KEYS[k]
  local n = tonumber(ARGV[a])
  redis.call('ZADD', key, unpack(ARGV, a + 1, a + 2 * n))
  local newest = ARGV[a + 1]
  for i = a + 3, a + 2 * n, 2 do
    if tonumber(ARGV[i]) > tonumber(newest) then newest = ARGV[i] end
  end
  local old = redis.call('GET', KEYS[k + 2])
  if old == false or tonumber(old) < tonumber(newest) then redis.call('SET', KEYS[k + 2], newest, 'PX', keep)
  else redis.call('PEXPIRE', KEYS[k + 2], keep) end
  a = a + 1 + 2 * n
  redis.call('ZREMRANGEBYSCORE', key, '-inf', cut)
  local size = redis.call('ZCARD', key)
  if size > maxLen then
    local last = redis.call('ZRANGE', key, size - maxLen - 1, size - maxLen - 1, 'WITHSCORES')
    redis.call('ZREMRANGEBYRANK', key, 0, size - maxLen - 1)
    local floor = tonumber(last[2]) + 1
    local old = redis.call('GET', KEYS[k + 1])
    if old == false or tonumber(old) < floor then redis.call('SET', KEYS[k + 1], floor, 'PX', keep) end
  end
  redis.call('PEXPIRE', key, keep)
end
return #KEYS`;
/**
 * Users per script call: Redis serves nobody else while a script runs, and a login's cache GET
 * must not wait long behind an ingest (as src/sets/cache.ts bounds its own script calls).
 */
const USERS_PER_CALL = 50;

// The user's times loaded from Postgres (a login after Redis lost them). KEYS[1]: their times;
// KEYS[2]: their newest; KEYS[3]: when they were loaded. ARGV[1]: keep (ms); ARGV[2]: 'from:madeAt';
// ARGV[3]: the newest loaded (ms, or ''); then pairs of score and member. The newest is only
// raised: an interaction recorded meanwhile may be newer than any loaded.
const LOAD_SCRIPT = `
local keep = tonumber(ARGV[1])
if #ARGV > 3 then
  redis.call('ZADD', KEYS[1], unpack(ARGV, 4, #ARGV))
  redis.call('PEXPIRE', KEYS[1], keep)
  local old = redis.call('GET', KEYS[2])
  if old == false or tonumber(old) < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3], 'PX', keep) end
end
redis.call('SET', KEYS[3], ARGV[2], 'PX', keep)
return 1`;

const RECORD_COMMAND = 'prewarmFreshnessRecord';
const LOAD_COMMAND = 'prewarmFreshnessLoad';

interface FreshnessRedis extends Redis {
  [RECORD_COMMAND](keyCount: number, ...args: (string | number)[]): Promise<number>;
  [LOAD_COMMAND](keyCount: number, ...args: (string | number)[]): Promise<number>;
}

const sql = {
  /** The user's interactions from `from` on, newest first, at most `limit` (to load them into Redis). */
  recentOf(userId: string, from: Date, limit: number): Sql {
    return {
      text: `SELECT (extract(epoch FROM at) * 1000)::float8 AS ms, item_id FROM interactions
              WHERE user_id = $1 AND at >= $2 ORDER BY at DESC LIMIT $3`,
      values: [userId, from.toISOString(), limit],
    };
  },
  /** Interactions of the user in [from, to); the (user_id, at) index of migrations/0005 answers it. */
  countBetween(userId: string, from: Date, to: Date): Sql {
    return {
      text: 'SELECT count(*)::int AS n FROM interactions WHERE user_id = $1 AND at >= $2 AND at < $3',
      values: [userId, from.toISOString(), to.toISOString()],
    };
  },
};

const UNREAD: RecentInteractions = Object.freeze({ ok: false, since: null, floor: Infinity, loaded: null, newest: null });
/** How often the marker is moved again after a failed write, until Redis takes it. */
const MARKER_RETRY_MS = 1_000;

export function createFreshness(options: FreshnessOptions): Freshness {
  const { redis, prefix, pool, clock, log } = options;
  const keepMs = options.keepMs ?? 3 * 86_400_000;
  const maxPerUser = options.maxPerUser ?? 1_000;
  const markerKey = `${prefix}fr:since`;
  const timesKey = (userId: string) => `${prefix}fr:t:${userId}`;
  const floorKey = (userId: string) => `${prefix}fr:f:${userId}`;
  const loadedKey = (userId: string) => `${prefix}fr:l:${userId}`;
  const newestKey = (userId: string) => `${prefix}fr:n:${userId}`;
  if (!(RECORD_COMMAND in redis)) redis.defineCommand(RECORD_COMMAND, { lua: RECORD_SCRIPT });
  if (!(LOAD_COMMAND in redis)) redis.defineCommand(LOAD_COMMAND, { lua: LOAD_SCRIPT });
  const scripted = redis as FreshnessRedis;
  // A write that failed may have lost interactions: the marker moves to a later instant, so sets
  // computed before it are counted in Postgres. Retried until Redis takes it.
  let markerBehind = false;
  let retry: NodeJS.Timeout | undefined;
  let closed = false;
  const recordFailed = throttledErrorLog(log, 'recording interaction times in Redis failed; sets computed before Redis has them again are checked in Postgres');
  const readFailed = throttledErrorLog(log, 'reading interaction times from Redis failed; checking in Postgres');
  const countFailed = throttledErrorLog(log, 'counting missed interactions failed; the set is served as if up to date');

  function scheduleMarkerRetry(): void {
    if (retry || closed) return;
    retry = setTimeout(() => {
      retry = undefined;
      redis.set(markerKey, String(clock.now().getTime())).then(
        () => void (markerBehind = false),
        () => scheduleMarkerRetry(),
      );
    }, MARKER_RETRY_MS);
    retry.unref();
  }

  async function record(rows: readonly RecordedInteraction[]): Promise<void> {
    if (rows.length === 0) return;
    const byUser = new Map<string, (string | number)[]>();
    for (const row of rows) {
      let pairs = byUser.get(row.userId);
      if (!pairs) byUser.set(row.userId, (pairs = []));
      // The member is what Postgres keys an interaction by (with the user): a repeat of one is
      // one interaction in both, two items at one instant are two.
      pairs.push(row.at.getTime(), `${row.at.getTime().toString(36)}:${row.itemId}`);
    }
    const moveMarker = markerBehind;
    const now = clock.now().getTime();
    const calls: Promise<number>[] = [];
    let keys: string[] = [markerKey];
    let perUser: (string | number)[] = [];
    const send = () => {
      calls.push(scripted[RECORD_COMMAND](keys.length, ...keys, keepMs, maxPerUser, now, moveMarker ? '1' : '0', ...perUser));
      keys = [markerKey];
      perUser = [];
    };
    for (const [userId, pairs] of byUser) {
      keys.push(timesKey(userId), floorKey(userId), newestKey(userId));
      perUser.push(pairs.length / 2);
      for (const value of pairs) perUser.push(value);
      if (keys.length > 3 * USERS_PER_CALL) send();
    }
    if (keys.length > 1) send();
    try {
      await Promise.all(calls);
      if (moveMarker) markerBehind = false;
    } catch (error) {
      recordFailed(error);
      markerBehind = true;
      scheduleMarkerRetry();
    }
  }

  const text = (value: Buffer | string | null | undefined) => (value === null || value === undefined ? null : typeof value === 'string' ? value : value.toString('latin1'));

  function fromValues(values: readonly (Buffer | string | null)[] | undefined): RecentInteractions {
    if (values === undefined) return UNREAD;
    const [since, floor, loaded, newest] = values.map(text);
    // Redis restarted empty (or evicted the marker): from now on, every acknowledged interaction
    // is here. Until then this login's set is counted in Postgres.
    if (since === null) redis.set(markerKey, String(clock.now().getTime()), 'NX').catch(recordFailed);
    const [loadedFrom, loadedAt] = loaded ? loaded.split(':').map(Number) : [];
    return {
      ok: true,
      since: since === null ? null : Number(since),
      floor: floor === null ? -Infinity : Number(floor),
      loaded: loadedFrom !== undefined && loadedAt !== undefined ? { from: loadedFrom, madeAt: loadedAt } : null,
      newest: newest === null ? null : Number(newest),
    };
  }

  const keys = (userId: string) => [markerKey, floorKey(userId), loadedKey(userId), newestKey(userId)];

  async function read(userId: string): Promise<RecentInteractions> {
    try {
      return fromValues(await redis.mgetBuffer(...keys(userId)));
    } catch (error) {
      readFailed(error);
      return UNREAD;
    }
  }

  /** Whether Redis still holds every time it was given at or after `computedAt`. */
  function keepsAllSince(recent: RecentInteractions, computedAt: number, at: number): boolean {
    // Times older than the ingest's clock minus keepMs are dropped; logins come later.
    return recent.ok && computedAt >= recent.floor && at - computedAt <= keepMs;
  }

  /** Whether Redis holds every interaction of the user at or after `computedAt`. */
  function holdsAllSince(recent: RecentInteractions, computedAt: number, at: number): boolean {
    if (!keepsAllSince(recent, computedAt, at) || recent.since === null) return false;
    if (computedAt >= recent.since + options.clockAheadMs) return true;
    // Loaded from Postgres since the marker was last set: complete from the load's start.
    return recent.loaded !== null && recent.loaded.madeAt >= recent.since && computedAt >= recent.loaded.from;
  }

  /**
   * Counts in Postgres, and when only the marker stood in the way, loads the user's times of the
   * last keepMs into Redis, so that the user's next logins are judged from Redis again: after a
   * restart or a first deployment, one Postgres read per user, not one per login.
   */
  async function countInPostgres(recent: RecentInteractions, userId: string, computedAt: Date, at: Date): Promise<number> {
    await options.flushPending?.(userId);
    const madeAt = clock.now().getTime();
    // (A read that found no marker has just set one, before this load.)
    if (keepsAllSince(recent, computedAt.getTime(), at.getTime())) {
      const from = madeAt - keepMs;
      const rows = (await pool.query<{ ms: number; item_id: string }>(sql.recentOf(userId, new Date(from), maxPerUser))).rows;
      if (rows.length < maxPerUser && computedAt.getTime() >= from) {
        const pairs: (string | number)[] = [];
        for (const row of rows) pairs.push(row.ms, `${row.ms.toString(36)}:${row.item_id}`);
        // Newest first.
        const newest = rows[0] === undefined ? '' : String(rows[0].ms);
        scripted[LOAD_COMMAND](3, timesKey(userId), newestKey(userId), loadedKey(userId), keepMs, `${from}:${madeAt}`, newest, ...pairs).catch(recordFailed);
        const since = computedAt.getTime();
        return rows.filter((row) => row.ms >= since && row.ms < at.getTime()).length;
      }
    }
    const result = await pool.query<{ n: number }>(sql.countBetween(userId, computedAt, at));
    return result.rows[0]?.n ?? 0;
  }

  return {
    record,
    keys,
    fromValues,
    read,
    countFrom(recent, computedAt, at) {
      const from = computedAt.getTime();
      if (!holdsAllSince(recent, from, at.getTime())) return undefined;
      return recent.newest === null || recent.newest < from ? 0 : undefined;
    },
    async countExactly(recent, userId, computedAt, at) {
      if (holdsAllSince(recent, computedAt.getTime(), at.getTime())) {
        try {
          return await redis.zcount(timesKey(userId), computedAt.getTime(), `(${at.getTime()}`);
        } catch (error) {
          readFailed(error);
        }
      }
      try {
        return await countInPostgres(recent, userId, computedAt, at);
      } catch (error) {
        countFailed(error);
        return null;
      }
    },
    async start() {
      await redis.set(markerKey, String(clock.now().getTime()), 'NX').catch((error: unknown) => {
        recordFailed(error);
      });
    },
    close() {
      closed = true;
      clearTimeout(retry);
      retry = undefined;
    },
  };
}
