import type { Logger } from '../log.ts';
import { textArrayLiteral } from '../db/array-literal.ts';
import { BinaryCopyWriter, copyIn } from '../db/copy-binary.ts';
import { createBatchBuffer } from '../db/batch-buffer.ts';
import { withTransaction, type Pool, type PoolClient, type Sql } from '../db/pool.ts';
import type { RecommendationSet } from '../sets/set.ts';
import type { RecommendationStore } from '../sets/store.ts';

export type ServeSource = 'precomputed' | 'reused' | 'on_demand' | 'fallback';

export interface ServeEvent {
  id: string;
  userId: string;
  at: Date;
  source: ServeSource;
  recommendationId: string | null;
  stalenessMs: number | null;
  latencyMs: number;
  reason: string | null;
  /**
   * The user's interactions at or after the served set's computedAt and before the login (0: up to
   * date); null or absent for fallback answers, or when it could not be counted.
   */
  missedInteractions?: number | null;
}

export interface LoginEvent {
  userId: string;
  at: Date;
  /** False when the login was answered `unknown_user`: it does not make its user known. */
  vouched?: boolean;
}

/** Inserts logins and keeps per-user activity in step (src/activity/user-activity.ts). */
export type RecordLogins = (client: PoolClient, rows: readonly LoginEvent[]) => Promise<unknown>;

export interface EventRecorderOptions {
  pool: Pool;
  store: RecommendationStore;
  recordLogins: RecordLogins;
  log: Logger;
  /** Flush at least this often. Default DEFAULT_FLUSH_INTERVAL_MS (50 ms). */
  flushIntervalMs?: number;
  /** Flush as soon as this many events wait; also the most one transaction writes. Default 2,000. */
  maxBatch?: number;
  /**
   * Above this many unflushed events (Postgres down for a while) the recorder reports itself
   * full, and the API answers 503 rather than acknowledge an event it might not keep.
   * Default 200,000.
   */
  maxPending?: number;
}

// The serves go in by binary COPY: the server parses no array literal and runs no conflict check
// per row (≈5.8 against ≈10.2 µs of Postgres CPU per serve, measured on the backend in batches
// of 2 000), and the client encodes no decimal text. COPY has no ON CONFLICT, so a flush whose
// commit succeeded but whose reply was lost, retried, fails on the primary key (23505); the batch
// is then written again in a new transaction without the serves already in Postgres
// (`alreadyWritten`), so an acknowledged serve is never lost and never written twice.
const COPY_SERVES =
  'COPY serves (id, user_id, at, source, recommendation_id, staleness_ms, latency_ms, reason, missed_interactions) FROM STDIN (FORMAT binary)';

const sql = {
  // Bounded by the batch's instants, so only the partitions the serves can be in are probed.
  alreadyWritten(serves: readonly ServeEvent[]): Sql {
    let from = Number.POSITIVE_INFINITY;
    let to = Number.NEGATIVE_INFINITY;
    for (const serve of serves) {
      from = Math.min(from, serve.at.getTime());
      to = Math.max(to, serve.at.getTime());
    }
    return {
      text: 'SELECT id::text AS id FROM serves WHERE id = ANY($1::uuid[]) AND at BETWEEN $2 AND $3',
      values: [textArrayLiteral(serves.map((serve) => serve.id)), new Date(from), new Date(to)],
    };
  },
};

// Serves only: a set's serve count and first serve are derived from them by maintenance
// (src/maintenance/rollups.ts, fillServeCounts), not updated here. The update was 40% of
// Postgres's work per login (a new version of a wide row, not HOT: four indexes), for columns
// no view needs (they read the serves).
function servesCopy(serves: readonly ServeEvent[]): Buffer {
  const rows = new BinaryCopyWriter(64 + serves.length * 160);
  for (const serve of serves) {
    rows.row(9).uuid(serve.id).text(serve.userId).timestamptz(serve.at).text(serve.source);
    if (serve.recommendationId === null) rows.null();
    else rows.uuid(serve.recommendationId);
    if (serve.stalenessMs === null) rows.null();
    else rows.int8(Math.round(serve.stalenessMs));
    rows.float4(serve.latencyMs);
    if (serve.reason === null) rows.null();
    else rows.text(serve.reason);
    const missed = serve.missedInteractions ?? null;
    if (missed === null) rows.null();
    else rows.int4(missed);
  }
  return rows.finish();
}

const isUniqueViolation = (error: unknown): boolean => (error as { code?: unknown } | null)?.code === '23505';

export interface EventRecorder {
  /** Buffers a set computed on demand; it is written before any serve that refers to it. */
  addSet(set: RecommendationSet): void;
  addLogin(login: LoginEvent): void;
  addServe(serve: ServeEvent): void;
  /** Writes everything buffered so far; resolves when it is in Postgres. */
  flush(): Promise<void>;
  /** Events acknowledged but not yet in Postgres. */
  pending(): number;
  /** True when the buffer is over `maxPending`: stop acknowledging new events. */
  isFull(): boolean;
  /** Stops the timer and flushes; retries until written or `deadlineMs` passes. Idempotent. */
  close(deadlineMs?: number): Promise<void>;
}

/** One buffered write of the login path, in arrival order (a set before the serves that name it). */
type LoginPathEvent = { kind: 'set'; set: RecommendationSet } | { kind: 'login'; login: LoginEvent } | { kind: 'serve'; serve: ServeEvent };

/**
 * Buffers the login path's writes and flushes them in one transaction per batch: a login
 * request never waits on a Postgres fsync, and a failed flush keeps its events for the next
 * (src/db/batch-buffer.ts).
 */
export function createEventRecorder(options: EventRecorderOptions): EventRecorder {
  const { pool, store, recordLogins, log } = options;

  async function writeBatch(batch: LoginPathEvent[]): Promise<void> {
    const sets: RecommendationSet[] = [];
    const logins: LoginEvent[] = [];
    const serves: ServeEvent[] = [];
    for (const event of batch) {
      if (event.kind === 'set') sets.push(event.set);
      else if (event.kind === 'login') logins.push(event.login);
      else serves.push(event.serve);
    }
    // The sets and logins statements skip what Postgres holds already; the serves are filtered
    // only when asked (`skipWritten`), after the COPY met one of them.
    const writeAll = async (client: PoolClient, skipWritten: boolean): Promise<void> => {
      if (sets.length > 0) await store.insertMany(client, sets);
      if (logins.length > 0) await recordLogins(client, logins);
      let copied = serves;
      if (skipWritten) {
        const written = new Set((await client.query<{ id: string }>(sql.alreadyWritten(serves))).rows.map((row) => row.id));
        copied = serves.filter((serve) => !written.has(serve.id.toLowerCase()));
      }
      if (copied.length > 0) await copyIn(client, COPY_SERVES, servesCopy(copied));
    };
    try {
      await withTransaction(pool, (client) => writeAll(client, false));
    } catch (error) {
      if (!isUniqueViolation(error) || serves.length === 0) throw error;
      log.warn({ serves: serves.length }, 'a flush met serves already written (a retry after a lost reply); writing the batch again without them');
      await withTransaction(pool, (client) => writeAll(client, true));
    }
  }

  const buffer = createBatchBuffer<LoginPathEvent>({
    name: 'logins and serves',
    write: writeBatch,
    log,
    flushIntervalMs: options.flushIntervalMs,
    maxBatch: options.maxBatch ?? 2_000,
    maxPending: options.maxPending ?? 200_000,
  });

  return {
    addSet: (set) => buffer.add({ kind: 'set', set }),
    addLogin: (login) => buffer.add({ kind: 'login', login }),
    addServe: (serve) => buffer.add({ kind: 'serve', serve }),
    flush: buffer.flush,
    pending: buffer.pending,
    isFull: buffer.isFull,
    close: buffer.close,
  };
}
