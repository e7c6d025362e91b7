import { Redis } from 'ioredis';
import type { Logger } from './log.ts';
import { redactUrl } from './config.ts';

/**
 * Redis for the login path: commands fail at once while disconnected instead of queueing, so a
 * lost cache costs a Postgres read, not a stalled login (BullMQ's "going to production" advice).
 */
export function createServingRedis(url: string, log: Logger): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: 250,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
    // Commands issued in one turn of the event loop (the cache reads of every request parsed in
    // it) leave in one write instead of one syscall each: that write was the hit path's largest
    // cost under load (scripts/bench/serve.ts --profile).
    enableAutoPipelining: true,
  });
  watch(redis, 'serving', url, log);
  return redis;
}

/** Redis for BullMQ queues and workers: retries forever, as BullMQ requires. */
export function createQueueRedis(url: string, log: Logger): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: false });
  watch(redis, 'queue', url, log);
  return redis;
}

function watch(redis: Redis, role: string, url: string, log: Logger): void {
  let down = false;
  redis.on('error', (error) => {
    if (!down) log.warn({ err: error, redis: redactUrl(url), role }, 'redis connection error');
    down = true;
  });
  redis.on('ready', () => {
    if (down) log.info({ redis: redactUrl(url), role }, 'redis connection restored');
    down = false;
  });
}

/**
 * Closes a connection: QUIT when connected, so replies in flight arrive; otherwise drops it, as
 * QUIT on a connection that retries for ever would wait for a Redis that may never return.
 */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'ready') await redis.quit();
  else redis.disconnect();
}

/** Deletes every key under `prefix` (a replay's or a test's queues and cache), SCAN by SCAN. */
export async function deleteKeysWithPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}
