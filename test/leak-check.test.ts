// The leak check itself (test/support/leak-check.ts, a setup file of every test file): what a
// test leaves open is found and named, and once closed it is no longer reported.
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createPool } from '../src/db/pool.ts';
import { silentLog, TEST_DATABASE_URL, TEST_REDIS_URL } from './helpers.ts';
import { openResources } from './support/leak-check.ts';

describe('leak check', () => {
  it('names an open pg pool, Redis connection, child process, timer and interval, and forgets them once closed', async () => {
    expect(openResources()).toEqual([]);
    const pool = createPool({ databaseUrl: TEST_DATABASE_URL, log: silentLog, max: 1 });
    await pool.query('SELECT 1');
    const redis = new Redis(TEST_REDIS_URL);
    await redis.ping();
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const timeout = setTimeout(() => undefined, 60_000);
    const interval = setInterval(() => undefined, 60_000);
    interval.unref();

    const open = openResources();
    expect(open).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^a socket to 127\.0\.0\.1:5432 \(Postgres/),
        expect.stringMatching(/^a socket to 127\.0\.0\.1:6379 \(Redis/),
        expect.stringMatching(/^child process \d+: sleep 30/),
        expect.stringMatching(/^setTimeout\(…, 60000 ms\) created\n.*leak-check\.test\.ts/),
        expect.stringMatching(/^setInterval\(…, 60000 ms\) \(unref\) created\n.*leak-check\.test\.ts/),
        // the pool's idle timeout of its one idle client
        expect.stringMatching(/^setTimeout\(…, 10000 ms\) created\n.*pg-pool/),
      ]),
    );
    expect(open).toHaveLength(6);

    await pool.end();
    await redis.quit();
    child.kill();
    await exited;
    clearTimeout(timeout);
    clearInterval(interval);
    await expect.poll(openResources, { timeout: 5_000, interval: 50 }).toEqual([]);
  });
});
