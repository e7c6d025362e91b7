import pg from 'pg';
import { throttledErrorLog, type Logger } from '../log.ts';

// Bigint counts (COUNT(*), bigserial ids) come back as JS numbers: prewarm's counts stay far
// below 2^53, and strings leaking into arithmetic are a worse bug than overflow here.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));
pg.types.setTypeParser(pg.types.builtins.NUMERIC, (value) => Number(value));

export interface PoolOptions {
  databaseUrl: string;
  /** Schema every unqualified name resolves to; tests give each file its own. Default `public`. */
  schema?: string;
  /** Default 10. */
  max?: number;
  /** Name shown in pg_stat_activity. */
  applicationName?: string;
  log: Logger;
}

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
export type Queryable = Pick<pg.Pool, 'query'>;
export interface Sql {
  text: string;
  values?: unknown[];
}

/**
 * A pool whose connections all resolve names in one schema, with errors logged, never thrown.
 *
 * pg-pool listens for a client's `'error'` only while the client is idle. A client that is
 * checked out (a transaction, a COPY, an advisory-lock holder) and loses its connection — a
 * Postgres restart, `pg_terminate_backend` — emits `'error'` with nobody listening, and Node
 * kills the process: every acknowledged event still buffered is lost. So every client gets a
 * listener of its own for its whole life; its running query still rejects, and pg-pool drops
 * the broken client when it is released.
 */
export function createPool(options: PoolOptions): pg.Pool {
  const schema = options.schema ?? 'public';
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'prewarm',
    options: `-c search_path=${schema}`,
    connectionTimeoutMillis: 10_000,
  });
  // During an outage every connection fails, over and over: one line per interval, with a count.
  const reportError = throttledErrorLog(options.log, 'postgres connection error');
  pool.on('error', (error) => reportError(error));
  pool.on('connect', (client) => client.on('error', reportError));
  return pool;
}

/** Runs `work` in a transaction on one client, rolling back on any error. */
export async function withTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
