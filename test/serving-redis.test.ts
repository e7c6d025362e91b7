// The login path's Redis client (src/redis.ts, createServingRedis) on a real Redis: the commands
// sent in one turn of the event loop leave in one socket write, replies stay in order, and a
// replaced connection is corked and uncorked like the first.
import type { Socket } from 'node:net';
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createServingRedis } from '../src/redis.ts';
import { createTestRedis, silentLog, TEST_REDIS_URL, type TestRedis } from './helpers.ts';

/** Counts the socket's writes to the kernel: `_write` for one chunk, `_writev` for several. */
function countWrites(socket: Socket): { writes: () => number } {
  let writes = 0;
  const target = socket as unknown as Record<'_write' | '_writev', (...args: unknown[]) => unknown>;
  for (const method of ['_write', '_writev'] as const) {
    const original = target[method];
    target[method] = function (this: unknown, ...args: unknown[]) {
      writes++;
      return original.apply(this, args);
    };
  }
  return { writes: () => writes };
}

async function ready(redis: Redis): Promise<void> {
  if (redis.status !== 'ready') await new Promise((resolve) => redis.once('ready', resolve));
}

describe('the serving Redis client', () => {
  let testRedis: TestRedis;
  let serving: Redis;

  beforeEach(async () => {
    testRedis = await createTestRedis();
    serving = createServingRedis(TEST_REDIS_URL, silentLog);
    await ready(serving);
  });
  afterEach(async () => {
    serving.disconnect();
    await testRedis.drop();
  });

  const key = (n: number) => `${testRedis.prefix}:k${n}`;

  it('sends the commands of one turn in one write, and answers each in order', async () => {
    await testRedis.redis.mset(...Array.from({ length: 40 }, (_, n) => [key(n), `v${n}`]).flat());
    const socket = serving.stream as Socket;
    const counter = countWrites(socket);
    const replies = await Promise.all(Array.from({ length: 40 }, (_, n) => serving.mgetBuffer(key(n), key(n + 100))));
    expect(counter.writes()).toBe(1);
    expect(replies.map(([value, absent]) => [value?.toString(), absent])).toEqual(Array.from({ length: 40 }, (_, n) => [`v${n}`, null]));
    expect(socket.writableCorked).toBe(0);
  });

  it('uncorks after each turn: commands of later turns leave in writes of their own', async () => {
    await testRedis.redis.set(key(1), 'one');
    const counter = countWrites(serving.stream as Socket);
    for (let turn = 0; turn < 5; turn++) {
      expect(await serving.get(key(1))).toBe('one');
    }
    expect(counter.writes()).toBe(5);
  });

  it('corks the connection that replaces a killed one', async () => {
    await testRedis.redis.set(key(2), 'two');
    const first = serving.stream as Socket;
    const clientId = await serving.client('ID');
    await testRedis.redis.client('KILL', 'ID', String(clientId));
    await new Promise((resolve) => serving.once('ready', resolve));
    const second = serving.stream as Socket;
    expect(second).not.toBe(first);
    const counter = countWrites(second);
    const replies = await Promise.all(Array.from({ length: 10 }, () => serving.get(key(2))));
    expect(replies).toEqual(Array.from({ length: 10 }, () => 'two'));
    expect(counter.writes()).toBe(1);
  });

  it('fails at once while disconnected, as before, and does not cork a socket that is gone', async () => {
    serving.disconnect();
    await expect(serving.get(key(3))).rejects.toThrow(/Stream isn't writeable|Connection is closed/);
  });
});
