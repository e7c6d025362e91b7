import type { JobsOptions, Queue } from 'bullmq';
import type { Pool } from '../db/pool.ts';
import { chunkCursorSql } from './sql.ts';
import { timedRunSql, type RunGateRow } from './timing-sql.ts';
import { timedExpiry } from './timing-expiry.ts';
import { MAX_PRIORITY } from './windows.ts';

// The precompute job format: what the planner puts on the queue and a worker takes off it. It
// belongs to planning (a run is cut into these chunks); src/precompute only consumes it.

/** One chunk of a run: the users to precompute for, best propensity first. */
export interface PrecomputeJobData {
  runId: number;
  chunkNo: number;
  window: string;
  /** ISO instant of the occurrence. */
  scheduledFor: string;
  /** ISO instant the sets stop being fresh (scheduled_for + ttl). */
  expiresAt: string;
  userIds: string[];
  /** The subset of userIds precomputed as holdout (not selected by the policy). */
  holdoutUserIds: string[];
  /** Items per set. */
  itemsPerUser: number;
}

export interface PrecomputeJobResult {
  /** True when the chunk had already been recorded (a retry or a duplicate). */
  skipped: boolean;
  precomputed: number;
  failed: number;
  computeMs: number;
}

/**
 * BullMQ refuses ':' in custom ids, so the id spells the same pair with '-'; the job's *name* is
 * `${runId}:${chunkNo}`. Being derived from the run and chunk, adding a chunk twice (a planner
 * replica taking over, a re-enqueue) is a no-op while the job exists.
 */
export function chunkJobId(runId: number, chunkNo: number): string {
  return `run-${runId}-chunk-${chunkNo}`;
}

export function chunkJobName(runId: number, chunkNo: number): string {
  return `${runId}:${chunkNo}`;
}

// BullMQ priorities run from 1 (first) to 2^21 − 1; 0 means "no priority" and jumps the others.
const CHUNK_SLOTS = 20_000;

/**
 * BullMQ priority of a chunk: windows with a higher `priority` first, then a run's chunks in
 * propensity order (chunk 0 holds the most likely users). Chunks past 20 000 share the last slot.
 */
export function chunkPriority(windowPriority: number, chunkNo: number): number {
  const band = MAX_PRIORITY - Math.min(MAX_PRIORITY, Math.max(0, windowPriority));
  return band * CHUNK_SLOTS + Math.min(chunkNo, CHUNK_SLOTS - 1) + 1;
}

/**
 * `rank`: the chunk's place in its shard's propensity order (default its number: one shard).
 * Chunks of a sharded run are numbered rank · shards + shard, so equal ranks share a priority.
 */
export function chunkJob(data: PrecomputeJobData, windowPriority: number, rank = data.chunkNo): { name: string; data: PrecomputeJobData; opts: JobsOptions } {
  return {
    name: chunkJobName(data.runId, data.chunkNo),
    data,
    opts: { jobId: chunkJobId(data.runId, data.chunkNo), priority: chunkPriority(windowPriority, rank) },
  };
}

/** A run as its chunk jobs need it. */
export interface RecordedRun {
  id: number;
  window: string;
  scheduledFor: Date;
  expiresAt: Date;
  /** The run's shard count: a chunk's rank is chunkNo / shards, rounded down. */
  shards: number;
}

/** Jobs per addBulk call (or fewer, once they hold ENQUEUE_USERS users). */
const ENQUEUE_JOBS = 1_000;
const ENQUEUE_USERS = 20_000;

/**
 * Enqueues a run's chunks as its predictions recorded them, read through a cursor a slice at a
 * time, so memory holds one slice of users whatever the size of the run. Each job gets the
 * priority of its rank in its shard. Idempotent: job ids derive from (run, chunk), and a worker
 * skips a chunk already done. Returns the jobs added.
 *
 * A timed run's chunks (timing.ts) are enqueued only once a dispatcher released them at their
 * compute time, and none before the run is cut by compute time: whoever calls this (a shard's
 * select, a resume, the sweep) cannot enqueue a set early.
 */
export async function enqueueRecordedChunks(
  deps: { pool: Pool; queue: Queue<PrecomputeJobData, PrecomputeJobResult> },
  run: RecordedRun,
  options: { windowPriority: number; itemsPerUser: number; chunkNos?: readonly number[]; shard?: { index: number; count: number } },
): Promise<number> {
  if (options.chunkNos?.length === 0) return 0;
  const gate = (await deps.pool.query<RunGateRow>(timedRunSql.gate(run.id, options.chunkNos ?? null))).rows[0];
  if (gate?.timed && (!gate.prepared || !gate.released || gate.released.length === 0)) return 0;
  const only = gate?.timed ? { ...options, chunkNos: gate.released as number[] } : options;
  // A timed run's sets chain past the run's end, whoever enqueues them (the dispatcher, a resume, the sweep).
  const expiresAt = gate?.timed ? timedExpiry(gate.expires_at, Number(gate.horizon_ms)) : run.expiresAt;
  const shards = Math.max(1, run.shards);
  let jobs: ReturnType<typeof chunkJob>[] = [];
  let pendingUsers = 0;
  let added = 0;
  let current: PrecomputeJobData | undefined;
  const flush = async () => {
    if (jobs.length === 0) return;
    await deps.queue.addBulk(jobs);
    added += jobs.length;
    jobs = [];
    pendingUsers = 0;
  };
  const close = async () => {
    if (!current) return;
    jobs.push(chunkJob(current, options.windowPriority, Math.floor(current.chunkNo / shards)));
    pendingUsers += current.userIds.length;
    current = undefined;
    if (jobs.length >= ENQUEUE_JOBS || pendingUsers >= ENQUEUE_USERS) await flush();
  };
  const client = await deps.pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN READ ONLY');
    await client.query(chunkCursorSql.declare(run.id, only));
    for (;;) {
      const slice = await client.query<{ chunk_no: number; user_id: string; holdout: boolean }>(chunkCursorSql.fetch);
      for (const row of slice.rows) {
        if (current && current.chunkNo !== row.chunk_no) await close();
        current ??= {
          runId: run.id,
          chunkNo: row.chunk_no,
          window: run.window,
          scheduledFor: run.scheduledFor.toISOString(),
          expiresAt: expiresAt.toISOString(),
          userIds: [],
          holdoutUserIds: [],
          itemsPerUser: options.itemsPerUser,
        };
        current.userIds.push(row.user_id);
        if (row.holdout) current.holdoutUserIds.push(row.user_id);
      }
      if (slice.rows.length === 0) break;
    }
    await close();
    await flush();
    await client.query('COMMIT');
  } catch (error) {
    // A connection that cannot even roll back is not given back to the pool.
    await client.query('ROLLBACK').catch((rollback: unknown) => (broken = rollback instanceof Error ? rollback : new Error(String(rollback))));
    throw error;
  } finally {
    client.release(broken);
  }
  return added;
}
