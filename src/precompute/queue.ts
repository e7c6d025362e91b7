import { Queue, type ConnectionOptions, type DefaultJobOptions } from 'bullmq';
import { throttledErrorLog, type Logger } from '../log.ts';
import type { PrecomputeJobData, PrecomputeJobResult } from '../planner/chunk-jobs.ts';
import { PLAN_SHARD_QUEUE, type ShardJobData } from '../planner/shard-plan.ts';

/** The BullMQ queue precompute chunks travel on. */
export const PRECOMPUTE_QUEUE = 'precompute';

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

/**
 * The queue of planning shards (src/planner/shard-plan.ts), consumed by every `prewarm worker`.
 * A shard job is retried a few times; its result lives in Postgres (plan_shards), not in Redis.
 */
export function createPlanShardQueue({ connection, prefix, log }: Omit<PrecomputeQueueOptions, 'jobOptions'>): Queue<ShardJobData, unknown> {
  const queue = new Queue<ShardJobData, unknown>(PLAN_SHARD_QUEUE, {
    connection,
    prefix,
    defaultJobOptions: { attempts: 3, backoff: { type: 'exponential', delay: 1_000 }, removeOnComplete: { age: 86_400, count: 10_000 }, removeOnFail: { age: 7 * 86_400 } },
  });
  queue.on('error', throttledErrorLog(log, 'plan-shard queue error'));
  return queue;
}
