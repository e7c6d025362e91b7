import { performance } from 'node:perf_hooks';
import { UnrecoverableError, Worker, type ConnectionOptions, type Job, type WorkerOptions } from 'bullmq';
import type { Clock } from '../clock.ts';
import { withTransaction, type Pool } from '../db/pool.ts';
import { toError } from '../errors.ts';
import { throttledErrorLog, type Logger } from '../log.ts';
import { createRunStore } from '../planner/runs.ts';
import type { Recommender, UserRecommendations } from '../recommender/types.ts';
import type { EncodedEntries, RecommendationCache } from '../sets/cache.ts';
import { batchSetId, storedScore, type RecommendationSet } from '../sets/set.ts';
import type { RecommendationStore } from '../sets/store.ts';
import type { PrecomputeJobData, PrecomputeJobResult } from '../planner/chunk-jobs.ts';
import type { PrecomputeMetrics } from './metrics.ts';
import { PRECOMPUTE_QUEUE } from './queue.ts';

export interface PrecomputeWorkerDeps {
  /** Redis for the queue: an ioredis instance with `maxRetriesPerRequest: null`, or its options. */
  connection: ConnectionOptions;
  /** Queue key prefix; must match the planner's. */
  prefix: string;
  pool: Pool;
  recommender: Recommender;
  store: RecommendationStore;
  cache: RecommendationCache;
  clock: Clock;
  log: Logger;
  /** Chunks processed at once by this process. */
  concurrency: number;
  /**
   * More BullMQ Worker options. Defaults here: maxStalledCount 3 (a chunk survives up to three
   * crashed workers); BullMQ's lockDuration and stalledInterval (30 s), which tests shorten.
   */
  workerOptions?: Partial<Omit<WorkerOptions, 'connection' | 'prefix' | 'concurrency'>>;
  /** Observes every chunk that ends (the process's Prometheus metrics). Default: none. */
  metrics?: Pick<PrecomputeMetrics, 'chunkFinished' | 'chunkFailed'>;
}

export interface PrecomputeWorker {
  readonly worker: Worker<PrecomputeJobData, PrecomputeJobResult>;
  /** Processes one chunk (the BullMQ processor), exposed for tests and the benchmark. */
  process(job: Pick<Job<PrecomputeJobData>, 'data' | 'attemptsMade' | 'opts' | 'id'>): Promise<PrecomputeJobResult>;
  /** Stops taking jobs and waits for the active ones to finish. Idempotent. */
  close(): Promise<void>;
}

/**
 * A precompute worker: computes a chunk of users with one recommender call, writes the sets to
 * Postgres in one COPY together with the chunk's completion, then to the Redis cache in a few
 * script calls (TTL = remaining freshness).
 *
 * Exactly once, whatever BullMQ redelivers: the transaction that writes a chunk's sets first locks
 * the chunk's row if it is not done, and marks it done before it commits; the chunk is folded into
 * the run's counters by that same transaction. A duplicate running at once waits on the lock and
 * then finds the chunk done; a retry after completion finds it done. The lock is the guarantee:
 * set ids derive from (run, user), but since `recommendations` is partitioned by day its key is
 * (id, computed_at), which a duplicate computed later would not collide with (migration 0008).
 * A chunk that fails its last attempt is recorded as failed so the run completes.
 */
export function createPrecomputeWorker(deps: PrecomputeWorkerDeps): PrecomputeWorker {
  const { connection, prefix, pool, recommender, store, cache, clock, log, concurrency } = deps;
  const runs = createRunStore({ pool });

  async function recordFailure(data: PrecomputeJobData, error: string): Promise<void> {
    await runs.completeChunk(pool, {
      runId: data.runId,
      chunkNo: data.chunkNo,
      at: clock.now(),
      precomputed: 0,
      failed: data.userIds.length,
      computeMs: 0,
      error,
    });
  }

  async function compute(data: PrecomputeJobData): Promise<PrecomputeJobResult> {
    if (await runs.isChunkDone(data.runId, data.chunkNo)) return { skipped: true, precomputed: 0, failed: 0, computeMs: 0 };
    const expiresAt = new Date(data.expiresAt);
    const at = clock.now();
    if (at.getTime() >= expiresAt.getTime()) {
      // Sets born stale would only be waste; the run still completes, counting them as failed.
      await recordFailure(data, 'run expired before the chunk was computed');
      return { skipped: false, precomputed: 0, failed: data.userIds.length, computeMs: 0 };
    }
    const modelVersion = recommender.modelVersion();
    const started = performance.now();
    const results = await recommender.recommend(data.userIds, at, data.itemsPerUser);
    const computeMs = performance.now() - started;
    const perUserMs = data.userIds.length > 0 ? computeMs / data.userIds.length : 0;

    const chunk = encodeChunk(data, results, at, expiresAt, modelVersion, perUserMs);
    const recorded = await withTransaction(pool, async (client) => {
      // The chunk's lock makes its set ids new: they derive from (run, user), and a user is in
      // one chunk of a run. So the sets go straight in, without an ON CONFLICT detour.
      if (!(await runs.claimChunk(client, data.runId, data.chunkNo))) return false;
      await store.insertNew(client, chunk.rows);
      return runs.completeChunk(client, {
        runId: data.runId,
        chunkNo: data.chunkNo,
        at: clock.now(),
        precomputed: chunk.rows.count,
        failed: chunk.failed,
        computeMs,
        error: chunk.failed > 0 ? `${chunk.failed} users missing from the recommender's answer` : null,
      });
    });
    // A duplicate finished first: its sets (same ids, its computedAt) are the ones stored and cached.
    if (!recorded) return { skipped: true, precomputed: 0, failed: 0, computeMs };
    // After the commit: a cached set always has its row, which serves reference. A cache write
    // that fails is not retried — the login path finds the set in Postgres and re-caches it.
    await cache.setEncoded(chunk.entries, clock.now()).catch((error) => log.warn({ err: error, runId: data.runId, chunkNo: data.chunkNo }, 'caching precomputed sets failed'));
    return { skipped: false, precomputed: chunk.rows.count, failed: chunk.failed, computeMs };
  }

  /**
   * The chunk's sets, encoded for Postgres and for Redis one user at a time: each set is written
   * to both encodings as soon as it is built, and its two item arrays (the recommender's items,
   * scores rounded as `storedItems` does) are the same scratch arrays for every user, which both
   * encoders read at once. No set outlives this call: held across the writes' awaits, 500 sets
   * would survive young-generation collections and be copied and promoted. Against building the
   * chunk's 500 sets first and encoding them after: ≈2 µs less CPU per 100-item set (≈20 → ≈18).
   */
  function encodeChunk(data: PrecomputeJobData, results: Map<string, UserRecommendations>, at: Date, expiresAt: Date, modelVersion: string, perUserMs: number) {
    const holdout = new Set(data.holdoutUserIds);
    const rows = store.encoder(data.userIds.length);
    const entries: EncodedEntries = { keys: [], values: [], expiresAt: [] };
    const itemIds: string[] = [];
    const scores: number[] = [];
    let failed = 0;
    for (const userId of data.userIds) {
      const result = results.get(userId);
      if (!result) {
        failed++;
        continue;
      }
      const items = result.items;
      itemIds.length = items.length;
      scores.length = items.length;
      for (let n = 0; n < items.length; n++) {
        const item = items[n]!;
        itemIds[n] = item.itemId;
        scores[n] = storedScore(item.score);
      }
      const set: RecommendationSet = {
        id: batchSetId(data.runId, userId),
        userId,
        source: 'batch',
        runId: data.runId,
        holdout: holdout.has(userId),
        computedAt: at,
        expiresAt,
        itemIds,
        scores,
        modelVersion,
        computeMs: perUserMs,
      };
      rows.add(set);
      const entry = cache.encode([set]);
      entries.keys.push(entry.keys[0]!);
      entries.values.push(entry.values[0]!);
      entries.expiresAt.push(entry.expiresAt[0]!);
    }
    return { rows: rows.finish(), entries, failed };
  }

  const { metrics } = deps;
  const process: PrecomputeWorker['process'] = async (job) => {
    const started = performance.now();
    try {
      const result = await compute(job.data);
      metrics?.chunkFinished(job.data.window, result, (performance.now() - started) / 1000);
      return result;
    } catch (thrown) {
      const error = toError(thrown);
      const attempts = job.opts.attempts ?? 1;
      const last = error instanceof UnrecoverableError || job.attemptsMade + 1 >= attempts;
      log.warn({ err: error, runId: job.data.runId, chunkNo: job.data.chunkNo, attempt: job.attemptsMade + 1, attempts }, last ? 'chunk failed for good' : 'chunk failed; retrying with backoff');
      if (last) {
        metrics?.chunkFailed(job.data.window, job.data.userIds.length, (performance.now() - started) / 1000);
        await recordFailure(job.data, error.message).catch((recordError) =>
          // The scheduler's sweep records it later from the failed job.
          log.error({ err: recordError, runId: job.data.runId, chunkNo: job.data.chunkNo }, 'recording a failed chunk failed'),
        );
      }
      throw error;
    }
  };

  const worker = new Worker<PrecomputeJobData, PrecomputeJobResult>(PRECOMPUTE_QUEUE, (job) => process(job), {
    maxStalledCount: 3,
    ...deps.workerOptions,
    connection,
    prefix,
    concurrency,
  });
  worker.on('error', throttledErrorLog(log, 'precompute worker error'));
  worker.on('stalled', (jobId) => log.warn({ jobId }, 'precompute chunk stalled (its worker died or hung); it runs again'));

  let closing: Promise<void> | undefined;
  return {
    worker,
    process,
    close() {
      closing ??= worker.close().catch((error) => log.error({ err: error }, 'closing the precompute worker failed'));
      return closing;
    },
  };
}
