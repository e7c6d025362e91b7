import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import type { Logger } from 'pino';
import type pg from 'pg';
import { PrewarmError } from '../errors.ts';
import { ADVISORY_LOCKS } from './locks.ts';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

export interface MigrateOptions {
  pool: pg.Pool;
  schema: string;
  log: Logger;
}

/**
 * Applies the numbered SQL files in migrations/ that have not run yet, all in one transaction.
 * node-pg-migrate's own lock fails fast when another process holds it; we take a blocking
 * advisory lock around it instead, so two `prewarm migrate` at once both succeed, one after
 * the other, and the second finds nothing to do.
 */
export async function migrate({ pool, schema, log }: MigrateOptions): Promise<string[]> {
  const client = await pool.connect();
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`).catch(ignoreConcurrentCreate);
    await client.query('SELECT pg_advisory_lock($1)', [ADVISORY_LOCKS.migration]);
    try {
      const applied = await runner({
        dbClient: client,
        dir: MIGRATIONS_DIR,
        direction: 'up',
        migrationsTable: 'prewarm_migrations',
        schema,
        checkOrder: true,
        singleTransaction: true,
        noLock: true,
        // Its messages are progress chatter ("Can't determine timestamp for 0001"); real failures are thrown.
        logger: { debug: () => undefined, info: (msg: string) => log.debug(msg), warn: (msg: string) => log.debug(msg), error: (msg: string) => log.debug(msg) },
      });
      return applied.map((migration) => migration.name);
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [ADVISORY_LOCKS.migration]);
    }
  } catch (error) {
    throw new PrewarmError('PREWARM_ERR_MIGRATION', `migration failed: ${(error as Error).message}`, { cause: error });
  } finally {
    client.release();
  }
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

// Two processes racing on CREATE SCHEMA IF NOT EXISTS can still collide on the catalog's
// unique index; the loser's schema exists all the same.
function ignoreConcurrentCreate(error: { code?: string }): void {
  if (error.code !== '23505' && error.code !== '42P06') throw error;
}
