import type { Queryable } from '../db/pool.ts';
import { chunkSql, runOutcomeSql, runSql, type RunRow } from './sql.ts';

/** One window occurrence (`batch_runs`), as planned and as progressed by the workers. */
export interface BatchRun {
  id: number;
  window: string;
  scheduledFor: Date;
  startedAt: Date;
  finishedAt: Date | null;
  expiresAt: Date;
  modelVersion: string | null;
  policy: string;
  candidates: number;
  selected: number;
  holdout: number;
  precomputed: number;
  failed: number;
  chunksTotal: number;
  chunksDone: number;
  status: RunRow['status'];
  plannedAt: Date | null;
  expectedCoverage: number | null;
  expectedWaste: number | null;
  computeMs: number;
  error: string | null;
}

/** The `batch_runs` columns a BatchRun is read from (other queries select more). */
export type BatchRunColumns = Pick<
  RunRow,
  | 'id'
  | 'window_name'
  | 'scheduled_for'
  | 'started_at'
  | 'finished_at'
  | 'expires_at'
  | 'model_version'
  | 'policy'
  | 'candidates'
  | 'selected'
  | 'holdout'
  | 'precomputed'
  | 'failed'
  | 'chunks_total'
  | 'chunks_done'
  | 'status'
  | 'planned_at'
  | 'expected_coverage'
  | 'expected_waste'
  | 'compute_ms'
  | 'error'
>;

export function toRun(row: BatchRunColumns): BatchRun {
  return {
    id: row.id,
    window: row.window_name,
    scheduledFor: row.scheduled_for,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    expiresAt: row.expires_at,
    modelVersion: row.model_version,
    policy: row.policy,
    candidates: row.candidates,
    selected: row.selected,
    holdout: row.holdout,
    precomputed: row.precomputed,
    failed: row.failed,
    chunksTotal: row.chunks_total,
    chunksDone: row.chunks_done,
    status: row.status,
    plannedAt: row.planned_at,
    expectedCoverage: row.expected_coverage,
    expectedWaste: row.expected_waste,
    computeMs: row.compute_ms,
    error: row.error,
  };
}

/** A window's last finished run, as the scheduler's /metrics shows it. */
export interface LastRunOutcome {
  window: string;
  status: string;
  precomputed: number;
  failed: number;
  durationSeconds: number;
  /** Policy sets whose life ended unserved; null until one has ended. */
  wasted: number | null;
}

export interface ChunkOutcome {
  runId: number;
  chunkNo: number;
  at: Date;
  precomputed: number;
  failed: number;
  computeMs: number;
  error: string | null;
}

export interface RunStore {
  get(id: number): Promise<BatchRun | undefined>;
  /** Newest first. */
  list(options?: { window?: string; limit?: number }): Promise<BatchRun[]>;
  /** The newest run of each window that has one. */
  latestPerWindow(): Promise<Map<string, BatchRun>>;
  /** Each window's newest finished run: outcome, counts, duration, sets wasted so far (metrics). */
  lastOutcomes(): Promise<LastRunOutcome[]>;
  /** Whether any run exists for the occurrence (claimed by some replica at some point). */
  exists(window: string, scheduledFor: Date): Promise<boolean>;
  isChunkDone(runId: number, chunkNo: number): Promise<boolean>;
  /**
   * Inside a transaction: locks the chunk for it, if not done yet. A duplicate of the chunk
   * waits here until the holder commits, then finds it done (false).
   */
  claimChunk(client: Queryable, runId: number, chunkNo: number): Promise<boolean>;
  /**
   * Records a chunk's outcome once (idempotent) and completes the run when it was the last one.
   * Returns false when the chunk had already been recorded. Pass a transaction client to commit
   * it with the chunk's sets.
   */
  completeChunk(db: Queryable, outcome: ChunkOutcome): Promise<boolean>;
}

export function createRunStore({ pool }: { pool: Queryable }): RunStore {
  return {
    async get(id) {
      const row = (await pool.query<RunRow>(runSql.get(id))).rows[0];
      return row ? toRun(row) : undefined;
    },
    async list(options = {}) {
      const result = await pool.query<RunRow>(runSql.list(options.window ?? null, options.limit ?? 20));
      return result.rows.map(toRun);
    },
    async lastOutcomes() {
      const runs = (
        await pool.query<{ window_name: string; id: number; status: string; precomputed: number; failed: number; duration_seconds: number }>(
          runOutcomeSql.lastFinishedPerWindow(),
        )
      ).rows;
      if (runs.length === 0) return [];
      const waste = await pool.query<{ run_id: number; wasted: number; ended: number }>(runOutcomeSql.wasted(runs.map((run) => run.id)));
      const wastedByRun = new Map(waste.rows.map((row) => [Number(row.run_id), row.ended > 0 ? row.wasted : null]));
      return runs.map((run) => ({
        window: run.window_name,
        status: run.status,
        precomputed: run.precomputed,
        failed: run.failed,
        durationSeconds: run.duration_seconds,
        wasted: wastedByRun.get(Number(run.id)) ?? null,
      }));
    },
    async latestPerWindow() {
      const result = await pool.query<RunRow>(runSql.latestPerWindow());
      return new Map(result.rows.map((row) => [row.window_name, toRun(row)]));
    },
    async exists(window, scheduledFor) {
      return ((await pool.query(runSql.exists(window, scheduledFor))).rowCount ?? 0) > 0;
    },
    async isChunkDone(runId, chunkNo) {
      const result = await pool.query<{ done: boolean }>(chunkSql.isDone(runId, chunkNo));
      return result.rows[0]?.done ?? false;
    },
    async claimChunk(client, runId, chunkNo) {
      const result = await client.query(chunkSql.lockUndone(runId, chunkNo));
      return (result.rowCount ?? 0) > 0;
    },
    async completeChunk(db, outcome) {
      const result = await db.query(chunkSql.complete(outcome));
      return (result.rowCount ?? 0) > 0;
    },
  };
}
