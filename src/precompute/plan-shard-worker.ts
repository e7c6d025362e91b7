import { UnrecoverableError, Worker, type ConnectionOptions, type Queue } from 'bullmq';
import type { Clock } from '../clock.ts';
import type { Pool } from '../db/pool.ts';
import { PrewarmError } from '../errors.ts';
import { throttledErrorLog, type Logger } from '../log.ts';
import type { PrecomputeJobData, PrecomputeJobResult } from '../planner/chunk-jobs.ts';
import { holdoutDraw } from '../planner/planner.ts';
import type { PropensityScorer } from '../planner/scorer.ts';
import { streamingScorer } from '../planner/scorer.ts';
import { executeShardPhase, PLAN_SHARD_QUEUE, type ShardJobData } from '../planner/shard-plan.ts';

export interface PlanShardWorkerDeps {
  connection: ConnectionOptions;
  prefix: string;
  pool: Pool;
  scorer: PropensityScorer;
  /** Where a shard's select enqueues its precompute chunks. */
  chunkQueue: Queue<PrecomputeJobData, PrecomputeJobResult>;
  clock: Clock;
  log: Logger;
  /** Shards scored at once by this process. Default 1 (scoring is CPU-bound). */
  concurrency?: number;
}

/**
 * Takes planning shards off the plan-shard queue (every `prewarm worker` runs one), so that a
 * run is scored by as many processes as there are workers. A malformed payload fails the job for
 * good (UnrecoverableError) before anything is read or written.
 */
export function createPlanShardWorker(deps: PlanShardWorkerDeps): Worker<ShardJobData, unknown> {
  const { pool, chunkQueue, clock, log } = deps;
  const scorer = streamingScorer(deps.scorer);
  const worker = new Worker<ShardJobData, unknown>(
    PLAN_SHARD_QUEUE,
    async (job) => {
      try {
        return await executeShardPhase({ pool, scorer, chunkQueue, log, draw: holdoutDraw, now: () => clock.now() }, job.data);
      } catch (error) {
        if (error instanceof PrewarmError && error.code === 'PREWARM_ERR_BAD_INPUT') {
          log.error({ jobId: job.id, err: error }, 'plan-shard job refused');
          throw new UnrecoverableError(error.message);
        }
        throw error;
      }
    },
    { connection: deps.connection, prefix: deps.prefix, concurrency: deps.concurrency ?? 1, maxStalledCount: 3 },
  );
  worker.on('error', throttledErrorLog(log, 'plan-shard worker error'));
  worker.on('failed', (job, error) => log.warn({ jobId: job?.id, err: error }, 'plan-shard job failed'));
  return worker;
}
