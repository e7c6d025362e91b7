import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import pino from 'pino';
import { createPool, type Pool } from '../src/db/pool.ts';
import { migrate, quoteIdent } from '../src/db/migrate.ts';
import { deleteKeysWithPrefix } from '../src/redis.ts';

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export const silentLog = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export interface TestDb {
  pool: Pool;
  schema: string;
  drop(): Promise<void>;
}

/** A fresh, migrated schema of its own; drop() removes it. */
export async function createTestDb(options: { migrate?: boolean } = {}): Promise<TestDb> {
  const schema = `t_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
  const pool = createPool({ databaseUrl: TEST_DATABASE_URL, schema, log: silentLog, max: 5, applicationName: `prewarm-test-${schema}` });
  if (options.migrate ?? true) {
    await migrate({ pool, schema, log: silentLog });
  } else {
    await pool.query(`CREATE SCHEMA ${quoteIdent(schema)}`);
  }
  let dropped = false;
  return {
    pool,
    schema,
    async drop() {
      if (dropped) return;
      dropped = true;
      await pool.query(`DROP SCHEMA ${quoteIdent(schema)} CASCADE`);
      await pool.end();
    },
  };
}

export interface TestRedis {
  redis: Redis;
  /** Unique per test: cache keys and BullMQ queues live under it. */
  prefix: string;
  drop(): Promise<void>;
}

export async function createTestRedis(): Promise<TestRedis> {
  const prefix = `test-${randomUUID().slice(0, 12)}`;
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null, lazyConnect: false });
  let dropped = false;
  return {
    redis,
    prefix,
    async drop() {
      if (dropped) return;
      dropped = true;
      await deleteKeysWithPrefix(redis, prefix);
      await redis.quit();
    },
  };
}
