import { Queue, type ConnectionOptions, type DefaultJobOptions, type JobsOptions } from 'bullmq';
import { throttledErrorLog, type Logger } from '../log.ts';
import { MAX_PRIORITY } from '../planner/windows.ts';

/** The BullMQ queue precompute chunks travel on. */
export const PRECOMPUTE_QUEUE = 'precompute';

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

export interface PrecomputeQueueOptions {
  /** An ioredis instance (shared) or connection options. */
  connection: ConnectionOptions;
  /** Key prefix (PREWARM_QUEUE_PREFIX); tests give each test its own. Use `{name}` for Redis Cluster. */
  prefix: string;
  log: Logger;
  /** Overrides of DEFAULT_CHUNK_JOB_OPTIONS (tests shorten the backoff). */
  jobOptions?: DefaultJobOptions;
}

/**
 * Chunks are retried with exponential backoff; finished jobs are kept a while so that their ids
 * still deduplicate re-enqueues, then trimmed. Postgres remains the record of what was done.
 */
export const DEFAULT_CHUNK_JOB_OPTIONS: DefaultJobOptions = Object.freeze({
  attempts: 5,
  backoff: { type: 'exponential', delay: 2_000 },
  removeOnComplete: { age: 7 * 86_400, count: 50_000 },
  removeOnFail: { age: 14 * 86_400, count: 50_000 },
});

export function createPrecomputeQueue({ connection, prefix, log, jobOptions }: PrecomputeQueueOptions): Queue<PrecomputeJobData, PrecomputeJobResult> {
  const queue = new Queue<PrecomputeJobData, PrecomputeJobResult>(PRECOMPUTE_QUEUE, {
    connection,
    prefix,
    defaultJobOptions: { ...DEFAULT_CHUNK_JOB_OPTIONS, ...jobOptions },
  });
  // While Redis is away BullMQ reports every reconnection attempt: one line per interval.
  queue.on('error', throttledErrorLog(log, 'precompute queue error'));
  return queue;
}

export function chunkJob(data: PrecomputeJobData, windowPriority: number): { name: string; data: PrecomputeJobData; opts: JobsOptions } {
  return {
    name: chunkJobName(data.runId, data.chunkNo),
    data,
    opts: { jobId: chunkJobId(data.runId, data.chunkNo), priority: chunkPriority(windowPriority, data.chunkNo) },
  };
}
