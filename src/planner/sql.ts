import { BinaryCopyWriter } from '../db/copy-binary.ts';
import type { Sql } from '../db/pool.ts';

/**
 * Every statement of the planner, the scheduler and the precompute worker: windows, batch runs,
 * their chunks and predictions. All parameterised; timestamps are passed in (from a Clock), never
 * taken from the database's now(), so that a replay on a virtual clock records virtual times.
 */

const WINDOW_COLUMNS = `name, cron, timezone, horizon_ms, ttl_ms, policy, chunk_size, priority, holdout_rate, enabled, created_at, updated_at`;

export interface WindowRow {
  name: string;
  cron: string;
  timezone: string;
  horizon_ms: number;
  ttl_ms: number;
  policy: string;
  chunk_size: number;
  priority: number;
  holdout_rate: number;
  enabled: boolean;
  created_at: Date;
  updated_at: Date;
}

export const windowSql = {
  list(onlyEnabled: boolean): Sql {
    return { text: `SELECT ${WINDOW_COLUMNS} FROM windows ${onlyEnabled ? 'WHERE enabled' : ''} ORDER BY name` };
  },
  get(name: string, forUpdate = false): Sql {
    return { text: `SELECT ${WINDOW_COLUMNS} FROM windows WHERE name = $1${forUpdate ? ' FOR UPDATE' : ''}`, values: [name] };
  },
  upsert(row: Omit<WindowRow, 'created_at'>): Sql {
    return {
      text: `INSERT INTO windows (name, cron, timezone, horizon_ms, ttl_ms, policy, chunk_size, priority, holdout_rate, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
             ON CONFLICT (name) DO UPDATE SET
               cron = excluded.cron, timezone = excluded.timezone, horizon_ms = excluded.horizon_ms,
               ttl_ms = excluded.ttl_ms, policy = excluded.policy, chunk_size = excluded.chunk_size,
               priority = excluded.priority, holdout_rate = excluded.holdout_rate, enabled = excluded.enabled,
               updated_at = excluded.updated_at
             RETURNING ${WINDOW_COLUMNS}, (xmax = 0) AS created`,
      values: [
        row.name,
        row.cron,
        row.timezone,
        row.horizon_ms,
        row.ttl_ms,
        row.policy,
        row.chunk_size,
        row.priority,
        row.holdout_rate,
        row.enabled,
        row.updated_at.toISOString(),
      ],
    };
  },
  setEnabled(name: string, enabled: boolean, at: Date): Sql {
    return {
      text: `UPDATE windows SET enabled = $2, updated_at = $3 WHERE name = $1 RETURNING ${WINDOW_COLUMNS}`,
      values: [name, enabled, at.toISOString()],
    };
  },
  delete(name: string): Sql {
    return { text: `DELETE FROM windows WHERE name = $1 RETURNING name`, values: [name] };
  },
};

export interface RunRow {
  id: number;
  window_name: string;
  scheduled_for: Date;
  started_at: Date;
  finished_at: Date | null;
  expires_at: Date;
  horizon_ms: number | null;
  model_version: string | null;
  policy: string;
  candidates: number;
  selected: number;
  holdout: number;
  precomputed: number;
  failed: number;
  chunks_total: number;
  chunks_done: number;
  status: 'planning' | 'running' | 'completed' | 'failed';
  planned_at: Date | null;
  lease_until: Date | null;
  plan_attempts: number;
  expected_coverage: number | null;
  expected_waste: number | null;
  compute_ms: number;
  error: string | null;
  /** Shards the run was planned in (its chunks are numbered rank · shards + shard). */
  shards: number;
}

const RUN_COLUMNS = `id, window_name, scheduled_for, started_at, finished_at, expires_at, horizon_ms, model_version, policy,
  candidates, selected, holdout, precomputed, failed, chunks_total, chunks_done, status, planned_at, lease_until,
  plan_attempts, expected_coverage, expected_waste, compute_ms, error, shards`;

// The status a run reaches once every chunk is done: failed only when nothing at all was computed.
const finalStatus = (precomputed: string, failed: string) => `CASE WHEN ${precomputed} = 0 AND ${failed} > 0 THEN 'failed' ELSE 'completed' END`;

export const runSql = {
  /** The claim: one row per (window, occurrence), whoever inserts it first plans it. */
  claim(args: { window: string; scheduledFor: Date; startedAt: Date; expiresAt: Date; horizonMs: number; policy: string; leaseUntil: Date }): Sql {
    return {
      text: `INSERT INTO batch_runs (window_name, scheduled_for, started_at, expires_at, horizon_ms, policy, status, lease_until, plan_attempts)
             VALUES ($1, $2, $3, $4, $5, $6, 'planning', $7, 1)
             ON CONFLICT (window_name, scheduled_for) DO NOTHING
             RETURNING ${RUN_COLUMNS}`,
      values: [
        args.window,
        args.scheduledFor.toISOString(),
        args.startedAt.toISOString(),
        args.expiresAt.toISOString(),
        args.horizonMs,
        args.policy,
        args.leaseUntil.toISOString(),
      ],
    };
  },
  /** Takes over a claim whose planner died (its lease ran out before it finished planning). */
  takeOver(args: { window: string; scheduledFor: Date; now: Date; leaseUntil: Date }): Sql {
    return {
      text: `UPDATE batch_runs SET lease_until = $4, plan_attempts = plan_attempts + 1
              WHERE window_name = $1 AND scheduled_for = $2 AND status = 'planning' AND lease_until < $3
              RETURNING ${RUN_COLUMNS}`,
      values: [args.window, args.scheduledFor.toISOString(), args.now.toISOString(), args.leaseUntil.toISOString()],
    };
  },
  exists(window: string, scheduledFor: Date): Sql {
    return { text: `SELECT id FROM batch_runs WHERE window_name = $1 AND scheduled_for = $2`, values: [window, scheduledFor.toISOString()] };
  },
  /**
   * Taken first by the transaction that records a plan: a second planner (one that took an
   * expired claim over) waits here until the first commits, then finds the run planned.
   */
  lockForPlanning(id: number): Sql {
    return { text: `SELECT id FROM batch_runs WHERE id = $1 AND planned_at IS NULL AND status = 'planning' FOR UPDATE`, values: [id] };
  },
  get(id: number): Sql {
    return { text: `SELECT ${RUN_COLUMNS} FROM batch_runs WHERE id = $1`, values: [id] };
  },
  list(window: string | null, limit: number): Sql {
    return {
      text: `SELECT ${RUN_COLUMNS} FROM batch_runs WHERE ($1::text IS NULL OR window_name = $1) ORDER BY scheduled_for DESC, id DESC LIMIT $2`,
      values: [window, limit],
    };
  },
  latestPerWindow(): Sql {
    return { text: `SELECT DISTINCT ON (window_name) ${RUN_COLUMNS} FROM batch_runs ORDER BY window_name, scheduled_for DESC, id DESC` };
  },
  /** Records the plan; only the first planner to get here wins (planned_at IS NULL). */
  markPlanned(args: {
    id: number;
    plannedAt: Date;
    modelVersion: string;
    candidates: number;
    selected: number;
    holdout: number;
    chunksTotal: number;
    expectedCoverage: number;
    expectedWaste: number;
  }): Sql {
    return {
      text: `UPDATE batch_runs SET planned_at = $2, model_version = $3, candidates = $4, selected = $5, holdout = $6,
                    chunks_total = $7, expected_coverage = $8, expected_waste = $9, error = NULL
              WHERE id = $1 AND planned_at IS NULL AND status = 'planning'
              RETURNING id`,
      values: [
        args.id,
        args.plannedAt.toISOString(),
        args.modelVersion,
        args.candidates,
        args.selected,
        args.holdout,
        args.chunksTotal,
        args.expectedCoverage,
        args.expectedWaste,
      ],
    };
  },
  /**
   * After the chunks are enqueued. Workers may already have finished every chunk (their
   * completion does not close a run still `planning`), so completion is decided here too.
   */
  markRunning(id: number, at: Date): Sql {
    const done = `chunks_done >= chunks_total`;
    return {
      text: `UPDATE batch_runs SET
               status = CASE WHEN ${done} THEN ${finalStatus('precomputed', 'failed')} ELSE 'running' END,
               finished_at = CASE WHEN ${done} THEN $2::timestamptz ELSE NULL END,
               lease_until = NULL
             WHERE id = $1 AND status = 'planning'
             RETURNING status`,
      values: [id, at.toISOString()],
    };
  },
  /** Planning failed: retry after `retryAt` (another tick, any replica) unless attempts are used up. */
  planningFailed(id: number, at: Date, retryAt: Date, message: string, maxAttempts: number): Sql {
    return {
      text: `UPDATE batch_runs SET error = $4, lease_until = $3,
               status = CASE WHEN plan_attempts >= $5 THEN 'failed' ELSE status END,
               finished_at = CASE WHEN plan_attempts >= $5 THEN $2::timestamptz ELSE finished_at END
             WHERE id = $1 AND status = 'planning'
             RETURNING status`,
      values: [id, at.toISOString(), retryAt.toISOString(), message.slice(0, 2000), maxAttempts],
    };
  },
  /** Runs whose chunks are in the queue's hands; the sweeper checks them. */
  running(limit: number): Sql {
    return { text: `SELECT ${RUN_COLUMNS} FROM batch_runs WHERE status = 'running' ORDER BY id LIMIT $1`, values: [limit] };
  },
};

/** What the scheduler's /metrics reads at scrape: each window's last finished run. */
export const runOutcomeSql = {
  /** The newest finished run of each window, with its duration from occurrence to finish. */
  lastFinishedPerWindow(): Sql {
    return {
      text: `SELECT DISTINCT ON (window_name) window_name, id, status, precomputed, failed,
                    extract(epoch FROM finished_at - scheduled_for)::float8 AS duration_seconds
               FROM batch_runs
              WHERE finished_at IS NOT NULL
              ORDER BY window_name, scheduled_for DESC`,
    };
  },
  /** Policy sets of these runs whose life ended unserved (the waste view's count). */
  wasted(runIds: readonly number[]): Sql {
    return { text: 'SELECT run_id, wasted, ended FROM waste_by_run WHERE run_id = ANY($1::bigint[])', values: [runIds] };
  },
};

export const chunkSql = {
  insertMany(runId: number, sizes: readonly number[]): Sql {
    return {
      text: `INSERT INTO batch_chunks (run_id, chunk_no, users)
             SELECT $1::bigint, n - 1, users FROM unnest($2::int[]) WITH ORDINALITY AS c (users, n)
             ON CONFLICT DO NOTHING`,
      values: [runId, sizes],
    };
  },
  /** Chunks with explicit numbers (a shard's: rank · shards + shard). */
  insertNumbered(runId: number, chunkNos: readonly number[], sizes: readonly number[]): Sql {
    return {
      text: `INSERT INTO batch_chunks (run_id, chunk_no, users)
             SELECT $1::bigint, chunk_no, users FROM unnest($2::int[], $3::int[]) AS c (chunk_no, users)
             ON CONFLICT DO NOTHING`,
      values: [runId, chunkNos, sizes],
    };
  },
  isDone(runId: number, chunkNo: number): Sql {
    return { text: `SELECT done_at IS NOT NULL AS done FROM batch_chunks WHERE run_id = $1 AND chunk_no = $2`, values: [runId, chunkNo] };
  },
  /** Locks an unfinished chunk's row until the transaction ends; no row: the chunk is done. */
  lockUndone(runId: number, chunkNo: number): Sql {
    return { text: `SELECT 1 FROM batch_chunks WHERE run_id = $1 AND chunk_no = $2 AND done_at IS NULL FOR UPDATE`, values: [runId, chunkNo] };
  },
  undone(runId: number): Sql {
    return { text: `SELECT chunk_no, users FROM batch_chunks WHERE run_id = $1 AND done_at IS NULL ORDER BY chunk_no`, values: [runId] };
  },
  /**
   * Records one chunk's outcome and folds it into the run's counters, once: the chunk row's
   * `done_at IS NULL` guard makes a retried or duplicated chunk a no-op (a concurrent duplicate
   * waits on the row lock, then finds it done). The run completes in the same statement when its
   * last chunk lands; under READ COMMITTED concurrent chunks of one run serialise on the run's
   * row and each sees the others' increments.
   */
  complete(args: { runId: number; chunkNo: number; at: Date; precomputed: number; failed: number; computeMs: number; error: string | null }): Sql {
    const last = `b.status = 'running' AND b.chunks_done + 1 >= b.chunks_total`;
    return {
      text: `WITH chunk AS (
               UPDATE batch_chunks SET done_at = $3, precomputed = $4, failed = $5, compute_ms = $6, error = $7
                WHERE run_id = $1 AND chunk_no = $2 AND done_at IS NULL
                RETURNING run_id, precomputed, failed, compute_ms
             )
             UPDATE batch_runs b SET
               precomputed = b.precomputed + c.precomputed,
               failed = b.failed + c.failed,
               compute_ms = b.compute_ms + c.compute_ms,
               chunks_done = b.chunks_done + 1,
               status = CASE WHEN ${last} THEN ${finalStatus('b.precomputed + c.precomputed', 'b.failed + c.failed')} ELSE b.status END,
               finished_at = CASE WHEN ${last} THEN $3::timestamptz ELSE b.finished_at END
             FROM chunk c
             WHERE b.id = c.run_id
             RETURNING b.status, b.chunks_done, b.chunks_total`,
      values: [args.runId, args.chunkNo, args.at.toISOString(), args.precomputed, args.failed, args.computeMs, args.error?.slice(0, 2000) ?? null],
    };
  },
};

export interface PredictionRows {
  userIds: string[];
  ps: number[];
  selected: boolean[];
  holdout: boolean[];
  chunkNos: (number | null)[];
}

export const predictionSql = {
  /**
   * Every score of the run, by binary COPY of `encode`'s output: 100 000 rows take ≈0.6 s, against
   * ≈1 s as unnest() arrays, and planning delays the whole run. A plain COPY has no ON CONFLICT;
   * the run's lock (runSql.lockForPlanning) keeps a second planner from getting here.
   */
  copy: `COPY predictions (run_id, user_id, p, selected, holdout, chunk_no) FROM STDIN WITH (FORMAT binary)`,
  encode(runId: number, rows: PredictionRows): Buffer {
    const writer = new BinaryCopyWriter(rows.userIds.length * 48);
    for (let n = 0; n < rows.userIds.length; n++) {
      writer
        .row(6)
        .int8(runId)
        .text(rows.userIds[n] as string)
        .float4(rows.ps[n] as number)
        .bool(rows.selected[n] as boolean)
        .bool(rows.holdout[n] as boolean);
      const chunkNo = rows.chunkNos[n];
      if (chunkNo === null || chunkNo === undefined) writer.null();
      else writer.int4(chunkNo);
    }
    return writer.finish();
  },
  /**
   * The rows a sharded plan keeps: every selected and holdout user (weight 1) and a sample of
   * the others, each weighing 1 / the sampling rate, so that weighted sums over predictions
   * estimate sums over every candidate (calibration_by_decile).
   */
  copyWeighted: `COPY predictions (run_id, user_id, p, selected, holdout, chunk_no, weight) FROM STDIN WITH (FORMAT binary)`,
  encodeWeighted(runId: number, rows: readonly { userId: string; p: number }[], weight: number): Buffer {
    const writer = new BinaryCopyWriter(rows.length * 52);
    for (const row of rows) writer.row(7).int8(runId).text(row.userId).float4(row.p).bool(false).bool(false).null().float4(weight);
    return writer.finish();
  },
  encodePlanned(runId: number, rows: readonly { userId: string; p: number; selected: boolean; holdout: boolean; chunkNo: number }[]): Buffer {
    const writer = new BinaryCopyWriter(rows.length * 52);
    for (const row of rows) writer.row(7).int8(runId).text(row.userId).float4(row.p).bool(row.selected).bool(row.holdout).int4(row.chunkNo).float4(1);
    return writer.finish();
  },
  /** The users of some chunks, as the plan recorded them (to re-enqueue lost jobs). */
  chunkUsers(runId: number, chunkNos: readonly number[]): Sql {
    return {
      text: `SELECT chunk_no, user_id, p, holdout FROM predictions
              WHERE run_id = $1 AND chunk_no = ANY($2::int[])
              ORDER BY chunk_no, p DESC, user_id`,
      values: [runId, chunkNos],
    };
  },
};

/**
 * A shard's select stages its selected and holdout users in a temporary table (its transaction's
 * own, dropped at commit) and lets Postgres rank them into chunks, so that the planner never holds
 * a shard's selection in memory. p is staged as float4, as predictions records it: chunks follow
 * the ranking by (p, user id) up to float4 precision, which is the order a re-enqueue reads back.
 */
export const selectStageSql = {
  create: `CREATE TEMP TABLE plan_select (user_id text NOT NULL, p real NOT NULL, holdout boolean NOT NULL) ON COMMIT DROP`,
  copy: `COPY plan_select (user_id, p, holdout) FROM STDIN WITH (FORMAT binary)`,
  encode(rows: readonly { userId: string; p: number; holdout: boolean }[]): Buffer {
    const writer = new BinaryCopyWriter(rows.length * 40);
    for (const row of rows) writer.row(3).text(row.userId).float4(row.p).bool(row.holdout);
    return writer.finish();
  },
  /**
   * The staged users into predictions, numbered into chunks of `chunkSize` by rank (p, then user
   * id byte-wise, as JavaScript compares ASCII ids): chunk rank · shards + shard. Inserted in
   * user id order, the order of the primary key: 300 000 rows took 3.5 s instead of 8.9 s in
   * rank order (random index insertions), besides ≈ 3 s of foreign-key checks either way.
   */
  insertPredictions(runId: number, chunkSize: number, shards: number, shard: number): Sql {
    return {
      text: `INSERT INTO predictions (run_id, user_id, p, selected, holdout, chunk_no, weight)
             SELECT $1::bigint, user_id, p, NOT holdout, holdout, chunk_no, 1
               FROM (SELECT user_id, p, holdout,
                            ((row_number() OVER (ORDER BY p DESC, user_id COLLATE "C") - 1) / $2::int)::int * $3::int + $4::int AS chunk_no
                       FROM plan_select) ranked
              ORDER BY user_id`,
      values: [runId, chunkSize, shards, shard],
    };
  },
};

/**
 * A cursor over the users of a run's recorded chunks, in chunk order, read a slice at a time
 * (inside a read-only transaction) to enqueue them: after a select, on a resume and in the sweep.
 */
export const chunkCursorSql = {
  /** `chunkNos`: only these chunks; `shard` of `shards`: only that shard's; neither: every chunk. */
  declare(runId: number, only: { chunkNos?: readonly number[]; shard?: { index: number; count: number } }): Sql {
    return {
      text: `DECLARE plan_chunk_users NO SCROLL CURSOR FOR
             SELECT chunk_no, user_id, holdout FROM predictions
              WHERE run_id = $1 AND chunk_no IS NOT NULL
                AND ($2::int[] IS NULL OR chunk_no = ANY($2::int[]))
                AND ($3::int IS NULL OR chunk_no % $3::int = $4::int)
              ORDER BY chunk_no, p DESC, user_id COLLATE "C"`,
      values: [runId, only.chunkNos ?? null, only.shard?.count ?? null, only.shard?.index ?? null],
    };
  },
  /** The next slice: 10 000 users, a few MB of job data at most. */
  fetch: `FETCH 10000 FROM plan_chunk_users`,
};

/** Results of a run's planning phases, one row per (run, step, shard): see shard-plan.ts. */
export const planShardSql = {
  result(runId: number, step: string, shard: number): Sql {
    return { text: `SELECT result FROM plan_shards WHERE run_id = $1 AND step = $2 AND shard = $3 AND done_at IS NOT NULL`, values: [runId, step, shard] };
  },
  /** Every finished shard of a step. */
  results(runId: number, step: string): Sql {
    return { text: `SELECT shard, result FROM plan_shards WHERE run_id = $1 AND step = $2 AND done_at IS NOT NULL ORDER BY shard`, values: [runId, step] };
  },
  /** A deterministic phase's result: the first one recorded stays. */
  record(runId: number, step: string, shard: number, result: unknown, at: Date): Sql {
    return {
      text: `INSERT INTO plan_shards (run_id, step, shard, result, done_at) VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT DO NOTHING`,
      values: [runId, step, shard, JSON.stringify(result), at.toISOString()],
    };
  },
  /** Claims a select inside its transaction; no row: another job holds or finished it. */
  claim(runId: number, step: string, shard: number, at: Date): Sql {
    return {
      text: `INSERT INTO plan_shards (run_id, step, shard, started_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING shard`,
      values: [runId, step, shard, at.toISOString()],
    };
  },
  finish(runId: number, step: string, shard: number, result: unknown, at: Date): Sql {
    return {
      text: `UPDATE plan_shards SET result = $4::jsonb, done_at = $5 WHERE run_id = $1 AND step = $2 AND shard = $3`,
      values: [runId, step, shard, JSON.stringify(result), at.toISOString()],
    };
  },
  /** The version and shards a run plans with, fixed by its first planning attempt. */
  pinPlan(runId: number, version: string, shards: number): Sql {
    return {
      text: `UPDATE batch_runs SET shards = CASE WHEN model_version IS NULL THEN $3 ELSE shards END, model_version = coalesce(model_version, $2)
              WHERE id = $1 RETURNING model_version, shards`,
      values: [runId, version, shards],
    };
  },
  recordWrites(runId: number, sampleRate: number, written: number): Sql {
    return { text: `UPDATE batch_runs SET prediction_sample_rate = $2, predictions_written = $3 WHERE id = $1`, values: [runId, sampleRate, written] };
  },
  /** A cheap estimate of the known users (planner statistics), to size shards. */
  estimateUsers(): Sql {
    return { text: `SELECT greatest(reltuples, 0)::float8 AS n FROM pg_class WHERE oid = 'user_activity'::regclass` };
  },
};
