import type { Logger } from '../log.ts';
import { numberArrayLiteral, textArrayLiteral } from '../db/array-literal.ts';
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
  /** Flush at least this often. Default 200 ms. */
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

const sql = {
  // Serves only: a set's serve count and first serve are derived from them by maintenance
  // (src/maintenance/rollups.ts, fillServeCounts), not updated here. The update was 40% of
  // Postgres's work per login (a new version of a wide row, not HOT: four indexes), for columns
  // no view needs (they read the serves). ON CONFLICT makes a retried flush write nothing twice.
  insertServes(serves: readonly ServeEvent[]): Sql {
    const n = serves.length;
    const ids = new Array<string>(n);
    const userIds = new Array<string>(n);
    const ats = new Array<number>(n);
    const sources = new Array<string>(n);
    const setIds = new Array<string | null>(n);
    const staleness = new Array<number | null>(n);
    const latency = new Array<number>(n);
    const reasons = new Array<string | null>(n);
    const missed = new Array<number | null>(n);
    for (let i = 0; i < n; i++) {
      const s = serves[i] as ServeEvent;
      ids[i] = s.id;
      userIds[i] = s.userId;
      // Epoch milliseconds: a number is written as it is, where an ISO string is built, quoted
      // and parsed again per element.
      ats[i] = s.at.getTime();
      sources[i] = s.source;
      setIds[i] = s.recommendationId;
      staleness[i] = s.stalenessMs;
      latency[i] = s.latencyMs;
      reasons[i] = s.reason;
      missed[i] = s.missedInteractions ?? null;
    }
    return {
      text: `INSERT INTO serves (id, user_id, at, source, recommendation_id, staleness_ms, latency_ms, reason, missed_interactions)
             SELECT id, user_id, to_timestamp(at_ms / 1000), source, recommendation_id, staleness_ms, latency_ms, reason, missed_interactions
               FROM unnest($1::uuid[], $2::text[], $3::float8[], $4::text[], $5::uuid[], $6::bigint[], $7::real[], $8::text[], $9::integer[])
                 AS t(id, user_id, at_ms, source, recommendation_id, staleness_ms, latency_ms, reason, missed_interactions)
             ON CONFLICT (id, at) DO NOTHING`,
      values: [
        textArrayLiteral(ids),
        textArrayLiteral(userIds),
        numberArrayLiteral(ats),
        textArrayLiteral(sources),
        textArrayLiteral(setIds),
        numberArrayLiteral(staleness),
        numberArrayLiteral(latency),
        textArrayLiteral(reasons),
        numberArrayLiteral(missed),
      ],
    };
  },
};

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
    await withTransaction(pool, async (client) => {
      if (sets.length > 0) await store.insertMany(client, sets);
      if (logins.length > 0) await recordLogins(client, logins);
      if (serves.length > 0) await client.query(sql.insertServes(serves));
    });
  }

  const buffer = createBatchBuffer<LoginPathEvent>({
    name: 'logins and serves',
    write: writeBatch,
    log,
    flushIntervalMs: options.flushIntervalMs ?? 200,
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
