import { readdirSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { redactUrl } from './config.ts';
import type { Queryable } from './db/pool.ts';
import { MIGRATIONS_DIR } from './db/migrate.ts';
import { PrewarmError } from './errors.ts';

// A long-running process that starts against a database it cannot use would only fail later,
// on a login or in the middle of a run. These checks make start-up fail at once, with one line
// naming what to fix; the entry points exit non-zero on it.

const MIGRATION_FILE = /^\d{4}_.+\.sql$/;

/** The migration names shipped with this build, in order (their file names without `.sql`). */
export function shippedMigrations(dir: string = MIGRATIONS_DIR): string[] {
  return readdirSync(dir)
    .filter((name) => MIGRATION_FILE.test(name))
    .sort()
    .map((name) => name.slice(0, -'.sql'.length));
}

/** Postgres answers, and the schema has every migration this build ships (`prewarm migrate`). */
export async function checkPostgres(pool: Queryable, options: { databaseUrl: string; schema: string }): Promise<void> {
  const where = `${redactUrl(options.databaseUrl)} (schema ${options.schema})`;
  let applied: string[];
  try {
    const table = await pool.query<{ present: boolean }>(
      `SELECT to_regclass(format('%I.prewarm_migrations', $1::text)) IS NOT NULL AS present`,
      [options.schema],
    );
    if (!table.rows[0]?.present) {
      throw new PrewarmError('PREWARM_ERR_MIGRATION', `the database at ${where} is not migrated: run \`prewarm migrate\` first`);
    }
    const rows = await pool.query<{ name: string }>(`SELECT name FROM prewarm_migrations ORDER BY run_on, id`);
    applied = rows.rows.map((row) => row.name);
  } catch (error) {
    if (error instanceof PrewarmError) throw error;
    throw new PrewarmError('PREWARM_ERR_SERVICE_UNAVAILABLE', `cannot use Postgres at ${where}: ${oneLine(error)}`, { cause: error });
  }
  const missing = shippedMigrations().filter((name) => !applied.includes(name));
  if (missing.length > 0) {
    throw new PrewarmError('PREWARM_ERR_MIGRATION', `the database at ${where} lacks migrations ${missing.join(', ')}: run \`prewarm migrate\` first`);
  }
}

/**
 * Redis is connected and answers a PING within `timeoutMs`. Queue connections retry forever by
 * design (BullMQ) and serving connections refuse commands until connected, so without waiting
 * for `ready` under a deadline a process would either hang silently or fail on a race.
 */
export async function checkRedis(redis: Redis, url: string, timeoutMs = 5_000): Promise<void> {
  let lastError: unknown = new Error(`no answer within ${timeoutMs} ms`);
  const remember = (error: unknown) => (lastError = error);
  let timer: NodeJS.Timeout | undefined;
  let onReady: (() => void) | undefined;
  redis.on('error', remember);
  try {
    if (redis.status !== 'ready') {
      await new Promise<void>((resolve, reject) => {
        onReady = resolve;
        redis.once('ready', onReady);
        timer = setTimeout(() => reject(lastError), timeoutMs);
      });
    }
    await redis.ping();
  } catch (error) {
    throw new PrewarmError('PREWARM_ERR_SERVICE_UNAVAILABLE', `cannot reach Redis at ${redactUrl(url)}: ${oneLine(error)}`, { cause: error });
  } finally {
    clearTimeout(timer);
    redis.off('error', remember);
    if (onReady) redis.off('ready', onReady);
  }
}

/**
 * The one-line start-up error for a port that cannot be bound, naming the settings to change
 * (`settings`, e.g. "PORT, PREWARM_HOST"), for the API and the workers' /metrics alike.
 */
export function listenFailure(error: unknown, where: { host: string; port: number; settings: string }): PrewarmError {
  const code = (error as { code?: string }).code;
  const reason = code === 'EADDRINUSE' ? 'the port is in use' : code === 'EACCES' ? 'permission denied' : oneLine(error);
  return new PrewarmError('PREWARM_ERR_CONFIG', `cannot listen on ${where.host}:${where.port} (${where.settings}): ${reason}`, { cause: error });
}

function oneLine(error: unknown): string {
  const message = (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
  if (message !== '') return message;
  // AggregateError (ECONNREFUSED on both ::1 and 127.0.0.1) has an empty message but a code.
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : error instanceof Error ? error.name : 'unknown error';
}
