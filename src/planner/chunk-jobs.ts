import type { JobsOptions } from 'bullmq';
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
