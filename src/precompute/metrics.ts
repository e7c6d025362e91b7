import { Counter, Histogram, Registry } from 'prom-client';
import type { Logger } from '../log.ts';
import type { PrecomputeJobResult } from '../planner/chunk-jobs.ts';
import { registerDefaultMetrics } from '../metrics/default-metrics.ts';
import { registerQueueJobsGauge, type CountableQueue } from '../metrics/queue-jobs.ts';

/** Chunk durations: a few users' recommendations to thousands'. */
const CHUNK_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/**
 * Prometheus metrics of one precompute worker process, in a registry of its own: chunks by
 * outcome, users precomputed and failed, chunk and recommender durations (seconds), all by
 * window; the precompute queue's job counts; Node's default metrics.
 */
export function createPrecomputeMetrics(options: { queue?: CountableQueue; log: Logger; defaultMetrics?: boolean }) {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) registerDefaultMetrics(registry);
  const chunks = new Counter({
    name: 'prewarm_chunks_total',
    help: 'Chunks processed by this worker, by window and outcome (done; failed: for good, or expired before computed; skipped: already recorded)',
    labelNames: ['window', 'outcome'] as const,
    registers: [registry],
  });
  const usersPrecomputed = new Counter({
    name: 'prewarm_users_precomputed_total',
    help: 'Users whose set this worker precomputed and stored, by window',
    labelNames: ['window'] as const,
    registers: [registry],
  });
  const usersFailed = new Counter({
    name: 'prewarm_users_failed_total',
    help: 'Users of chunks this worker recorded without a set (missing from the answer, chunk failed or expired), by window',
    labelNames: ['window'] as const,
    registers: [registry],
  });
  const chunkDuration = new Histogram({
    name: 'prewarm_chunk_duration_seconds',
    help: 'Time to process a chunk (every attempt that ends it), by window',
    labelNames: ['window'] as const,
    buckets: CHUNK_BUCKETS,
    registers: [registry],
  });
  const recommenderDuration = new Histogram({
    name: 'prewarm_chunk_recommender_duration_seconds',
    help: "Time of a chunk's recommender call, by window",
    labelNames: ['window'] as const,
    buckets: CHUNK_BUCKETS,
    registers: [registry],
  });
  if (options.queue) registerQueueJobsGauge(registry, [options.queue], options.log);
  return {
    registry,
    /** A chunk's attempt that ended it: computed, found already done, or expired. */
    chunkFinished(window: string, result: PrecomputeJobResult, seconds: number) {
      const outcome = result.skipped ? 'skipped' : result.precomputed === 0 && result.failed > 0 ? 'failed' : 'done';
      chunks.inc({ window, outcome });
      if (result.precomputed > 0) usersPrecomputed.inc({ window }, result.precomputed);
      if (result.failed > 0) usersFailed.inc({ window }, result.failed);
      if (result.computeMs > 0) recommenderDuration.observe({ window }, result.computeMs / 1000);
      chunkDuration.observe({ window }, seconds);
    },
    /** A chunk's last attempt threw: its users are recorded as failed. */
    chunkFailed(window: string, users: number, seconds: number) {
      chunks.inc({ window, outcome: 'failed' });
      usersFailed.inc({ window }, users);
      chunkDuration.observe({ window }, seconds);
    },
  };
}

export type PrecomputeMetrics = ReturnType<typeof createPrecomputeMetrics>;
