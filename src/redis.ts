import { Redis, type Command } from 'ioredis';
import type { Logger } from './log.ts';
import { redactUrl } from './config.ts';

/**
 * Redis for the login path: commands fail at once while disconnected instead of queueing, so a
 * lost cache costs a Postgres read, not a stalled login (BullMQ's "going to production" advice).
 * Commands sent in one turn of the event loop leave in one write (`CorkingRedis`).
 */
export function createServingRedis(url: string, log: Logger): Redis {
  const redis = new CorkingRedis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: 250,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
  });
  watch(redis, 'serving', url, log);
  return redis;
}

/**
 * ioredis whose socket is corked from the first command of a turn of the event loop until the
 * turn's check phase (setImmediate): the cache reads of every request parsed in one turn leave in
 * one writev instead of one syscall each, which was the hit path's largest cost under load
 * (scripts/bench/serve.ts --profile).
 *
 * ioredis's own `enableAutoPipelining` batches the same way through a Pipeline per turn, but under
 * load it kept the login path's short-lived objects alive into the old generation: 1.1–2.0 MB
 * promoted per young-generation collection against ≈ 0.05 MB for the same MGETs sent plainly, and
 * collections of 4–5 ms against ≈ 1 (`node --trace-gc-nvp`, a Fastify route doing one MGET,
 * 14–17k requests/s; scripts/bench/redis-client.ts). Those pauses were the hit path's p99. It
 * also runs one pipeline at a time, so a turn's reads wait for the previous turn's replies.
 * Corking keeps the one write and sends plain commands, each answered as its reply arrives.
 */
class CorkingRedis extends Redis {
  #corked = false;

  override sendCommand(command: Command, stream?: Parameters<Redis['sendCommand']>[1]): unknown {
    const socket = this.stream;
    if (!this.#corked && stream === undefined && this.status === 'ready' && socket?.writable) {
      socket.cork();
      this.#corked = true;
      setImmediate(() => {
        // The socket it corked, even if the connection has been replaced meanwhile.
        this.#corked = false;
        socket.uncork();
      });
    }
    return super.sendCommand(command, stream);
  }
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
