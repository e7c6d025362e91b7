import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import pino from 'pino';
import { createPool, type Pool } from '../src/db/pool.ts';
import { migrate, quoteIdent } from '../src/db/migrate.ts';
import type { Policy } from '../src/planner/policy.ts';
import { deleteKeysWithPrefix } from '../src/redis.ts';
import { streamActivity } from '../src/replay/generate.ts';
import type { PolicyRun, ReplayData, ReplayOptions } from '../src/replay/replay.ts';

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

/**
 * The replay tests' shared set-up (test/replay-agreement, timed-replay, behind-replay,
 * replay-behind-*): ReplayOptions on the test services with the model scorer, and the Postgres
 * schemas of the replays a test keeps to inspect, dropped by drop(). The replay's modules are
 * loaded on first use, so the tests that never replay do not load them.
 */
export interface ReplayTestBed {
  /** `base` over the defaults (test Postgres and Redis, silent log, daily windows, model scorer), then `overrides`. */
  options(overrides?: Partial<ReplayOptions>): ReplayOptions;
  /** replayPolicy with its schema kept (keepSchemas), to be read by the test and dropped by drop(). */
  replay(data: ReplayData, policy: Policy, overrides?: Partial<ReplayOptions>, name?: string): Promise<PolicyRun>;
  /** Drops the kept schemas. */
  drop(): Promise<void>;
}

export function createReplayTestBed(base: Pick<ReplayOptions, 'from' | 'to'> & Partial<ReplayOptions>): ReplayTestBed {
  const kept: string[] = [];
  const options = (overrides: Partial<ReplayOptions> = {}): ReplayOptions => ({
    databaseUrl: TEST_DATABASE_URL,
    redisUrl: TEST_REDIS_URL,
    log: silentLog,
    window: '1d',
    prepareScorer: async (args) => (await import('../src/replay/propensity.ts')).prepareModelScorer(args),
    ...base,
    ...overrides,
  });
  return {
    options,
    async replay(data, policy, overrides = {}, name = 'model') {
      const { replayPolicy } = await import('../src/replay/replay.ts');
      const run = await replayPolicy(data, name, policy, options({ ...overrides, keepSchemas: true }));
      kept.push(run.schema);
      return run;
    },
    async drop() {
      if (kept.length === 0) return;
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      try {
        for (const schema of kept.splice(0)) await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}

/** A generated log (src/replay/generate.ts) as a replay takes it: logins and interactions in time order. */
export function generatedReplayData(options: { seed: number; users: number; days: number; start: Date }): ReplayData {
  const logins: ReplayData['logins'][number][] = [];
  const interactions: ReplayData['interactions'][number][] = [];
  for (const day of streamActivity(options).days) {
    logins.push(...day.logins);
    interactions.push(...day.interactions);
  }
  const byTime = (a: { at: Date }, b: { at: Date }) => a.at.getTime() - b.at.getTime();
  return { logins: logins.sort(byTime), interactions: interactions.sort(byTime) };
}
