import type { Queue } from 'bullmq';
import { z } from 'zod';
import { copyIn } from '../db/copy-binary.ts';
import type { Pool } from '../db/pool.ts';
import { PrewarmError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { enqueueRecordedChunks, type PrecomputeJobData, type PrecomputeJobResult } from './chunk-jobs.ts';
import { parsePolicy, type Policy } from './policy.ts';
import type { StreamingScorer } from './scorer.ts';
import { inCut, SummaryBuilder, zoomPosition, type Cut, type ShardSummary } from './summary.ts';
import { chunkSql, planShardSql, predictionSql, selectStageSql } from './sql.ts';

/**
 * One shard's part of planning a run, the same code whether the planner runs it in its own
 * process or a `prewarm worker` takes it off the plan-shard queue. A run's phases, each over
 * every shard: `population` (what model features need from everyone), `summarize` (a histogram
 * of propensities, summary.ts), `collect` (the users of the bin a global policy's cut falls
 * in), `select` (selects, draws holdout, writes predictions and chunks in one transaction, then
 * enqueues the chunks). Each phase's result is recorded once per (run, phase, shard) in
 * `plan_shards`: a duplicate or retried job finds it and does nothing more (a `select` only
 * re-enqueues its chunks, which is idempotent).
 */

export const PLAN_SHARD_QUEUE = 'plan-shard';

const zoomLevel = z.object({ lo: z.number(), hi: z.number(), bin: z.number().int().min(0) });
const cutSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('rule') }),
  z.object({ kind: z.literal('all') }),
  z.object({ kind: z.literal('none') }),
  z.object({ kind: z.literal('prefix'), zoom: z.array(zoomLevel), last: z.object({ p: z.number(), userId: z.string() }).nullable() }),
]);

export const shardJobSchema = z
  .object({
    runId: z.number().int().positive().nullable(),
    phase: z.enum(['population', 'summarize', 'collect', 'select']),
    /** Key of the phase in plan_shards (`summarize-1` for the second zoom). */
    step: z.string().min(1).max(40),
    shard: z.number().int().min(0),
    shards: z.number().int().min(1).max(100_000),
    windowStart: z.string().datetime({ offset: true }),
    horizonMs: z.number().int().positive(),
    version: z.string().min(1),
    policy: z.string().min(1),
    population: z.unknown(),
    zoom: z.array(zoomLevel).default([]),
    batchSize: z.number().int().positive().max(1_000_000).default(20_000),
    select: z
      .object({
        cut: cutSchema,
        window: z.string().min(1),
        scheduledFor: z.string().datetime({ offset: true }),
        expiresAt: z.string().datetime({ offset: true }),
        holdoutRate: z.number().min(0).max(1),
        sampleRate: z.number().min(0).max(1),
        chunkSize: z.number().int().positive(),
        priority: z.number().int(),
        itemsPerUser: z.number().int().positive(),
      })
      .optional(),
  })
  .refine((job) => job.shard < job.shards, { message: 'shard must be below shards' })
  .refine((job) => job.phase !== 'select' || (job.select !== undefined && job.runId !== null), { message: 'a select job needs runId and select' });

export type ShardJobData = z.input<typeof shardJobSchema>;
type ShardJob = z.output<typeof shardJobSchema>;

export interface SelectResult {
  candidates: number;
  selected: number;
  selectedSum: number;
  holdout: number;
  /** predictions rows written. */
  written: number;
  /** Chunks of this shard: numbers shard, shard + shards, shard + 2·shards, … */
  chunks: number;
}
export type ShardResult = unknown;

/** Validates a shard job's payload: a malformed one is refused before anything is read or written. */
export function parseShardJob(data: unknown): ShardJob {
  const parsed = shardJobSchema.safeParse(data);
  if (!parsed.success) {
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `malformed plan-shard job: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(payload)'}: ${i.message}`).join('; ')}`);
  }
  try {
    parsePolicy(parsed.data.policy);
  } catch (error) {
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `malformed plan-shard job: ${(error as Error).message}`, { cause: error });
  }
  return parsed.data;
}

export interface ShardPhaseDeps {
  pool: Pool;
  scorer: StreamingScorer;
  /**
   * Where a select phase enqueues its chunks once they are recorded. Absent: the caller enqueues
   * them (the in-process planner does, once the run is recorded as planned).
   */
  chunkQueue?: Queue<PrecomputeJobData, PrecomputeJobResult>;
  log: Logger;
  /** The holdout draw (planner.ts holdoutDraw by default). */
  draw: (runId: number, userId: string) => number;
  /** Instant recorded as the phase's completion. */
  now: () => Date;
}

/** FNV-1a of `run:user:sample`: whether an unselected user's prediction is kept. */
export function sampleDraw(runId: number, userId: string): number {
  const text = `${runId}:${userId}:sample`;
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) / 4_294_967_296;
}

function locallySelected(policy: Policy, p: number, lastLoginAt: number, windowStart: number, horizonMs: number): boolean {
  switch (policy.kind) {
    case 'threshold':
      return p >= policy.p;
    case 'cost':
      return p * policy.ratio > 1;
    case 'recent':
      return lastLoginAt >= windowStart - policy.k * horizonMs && lastLoginAt < windowStart;
    case 'all':
      return true;
    default:
      return false;
  }
}

export async function executeShardPhase(deps: ShardPhaseDeps, data: unknown): Promise<ShardResult> {
  const job = parseShardJob(data);
  if (job.runId !== null && job.phase !== 'select') {
    const done = await deps.pool.query<{ result: unknown }>(planShardSql.result(job.runId, job.step, job.shard));
    if (done.rows[0]) return done.rows[0].result;
  }
  const request = {
    windowStart: new Date(job.windowStart),
    horizonMs: job.horizonMs,
    shard: { index: job.shard, count: job.shards },
    version: job.version,
    batchSize: job.batchSize,
  };
  const policy = parsePolicy(job.policy);
  const start = request.windowStart.getTime();
  let result: unknown;
  switch (job.phase) {
    case 'population':
      result = await deps.scorer.population(request);
      break;
    case 'summarize': {
      const builder = new SummaryBuilder(job.zoom);
      for await (const batch of deps.scorer.scoreShard({ ...request, population: job.population ?? null })) {
        for (let i = 0; i < batch.size; i++) {
          const p = batch.p[i] as number;
          builder.add(p, locallySelected(policy, p, batch.lastLoginAt[i] as number, start, job.horizonMs));
        }
      }
      result = builder.result() satisfies ShardSummary;
      break;
    }
    case 'collect': {
      const entries: [string, number][] = [];
      for await (const batch of deps.scorer.scoreShard({ ...request, population: job.population ?? null })) {
        for (let i = 0; i < batch.size; i++) {
          const p = batch.p[i] as number;
          if (zoomPosition(p, job.zoom) === 0) entries.push([batch.userIds[i] as string, p]);
        }
      }
      result = { entries };
      break;
    }
    case 'select':
      return select(deps, job, policy);
  }
  if (job.runId !== null) await deps.pool.query(planShardSql.record(job.runId, job.step, job.shard, result ?? null, deps.now()));
  return result;
}

async function select(deps: ShardPhaseDeps, job: ShardJob, policy: Policy): Promise<SelectResult> {
  const runId = job.runId as number;
  const options = job.select!;
  const cut = options.cut as Cut;
  const start = new Date(job.windowStart).getTime();
  const client = await deps.pool.connect();
  let failed: Error | undefined;
  let result: SelectResult;
  try {
    await client.query('BEGIN');
    // The shard's claim: a concurrent duplicate waits here until this transaction ends, then
    // finds the row (committed: done) or takes over (rolled back: a crash).
    const claimed = await client.query(planShardSql.claim(runId, job.step, job.shard, deps.now()));
    if (claimed.rowCount === 0) {
      await client.query('ROLLBACK');
      const done = await deps.pool.query<{ result: SelectResult }>(planShardSql.result(runId, job.step, job.shard));
      result = done.rows[0]!.result;
    } else {
      result = { candidates: 0, selected: 0, selectedSum: 0, holdout: 0, written: 0, chunks: 0 };
      const weight = options.sampleRate > 0 ? 1 / options.sampleRate : 0;
      // Selected and holdout users go batch by batch to a staging table, where Postgres ranks
      // them into chunks: memory holds one batch, whatever the shard's size.
      await client.query(selectStageSql.create);
      for await (const batch of deps.scorer.scoreShard({
        windowStart: new Date(job.windowStart),
        horizonMs: job.horizonMs,
        shard: { index: job.shard, count: job.shards },
        version: job.version,
        population: job.population ?? null,
        batchSize: job.batchSize,
      })) {
        const staged: { userId: string; p: number; holdout: boolean }[] = [];
        const sampled: { userId: string; p: number }[] = [];
        for (let i = 0; i < batch.size; i++) {
          const userId = batch.userIds[i] as string;
          const p = batch.p[i] as number;
          result.candidates++;
          const chosen = inCut(cut, p, userId) ?? locallySelected(policy, p, batch.lastLoginAt[i] as number, start, job.horizonMs);
          if (chosen) {
            result.selected++;
            result.selectedSum += p;
            staged.push({ userId, p, holdout: false });
          } else if (options.holdoutRate > 0 && deps.draw(runId, userId) < options.holdoutRate) {
            result.holdout++;
            staged.push({ userId, p, holdout: true });
          } else if (options.sampleRate >= 1 || sampleDraw(runId, userId) < options.sampleRate) {
            sampled.push({ userId, p });
          }
        }
        if (staged.length > 0) await copyIn(client, selectStageSql.copy, selectStageSql.encode(staged));
        if (sampled.length > 0) {
          await copyIn(client, predictionSql.copyWeighted, predictionSql.encodeWeighted(runId, sampled, weight));
          result.written += sampled.length;
        }
      }
      // One ranking for selected and holdout users: this shard's first chunk holds its most likely logins.
      const precompute = result.selected + result.holdout;
      if (precompute > 0) await client.query(selectStageSql.insertPredictions(runId, options.chunkSize, job.shards, job.shard));
      result.written += precompute;
      result.chunks = Math.ceil(precompute / options.chunkSize);
      const numbers = Array.from({ length: result.chunks }, (_v, rank) => rank * job.shards + job.shard);
      const sizes = numbers.map((_n, rank) => Math.min(options.chunkSize, precompute - rank * options.chunkSize));
      await client.query(chunkSql.insertNumbered(runId, numbers, sizes));
      await client.query(planShardSql.finish(runId, job.step, job.shard, result, deps.now()));
      await client.query('COMMIT');
    }
  } catch (error) {
    failed = error instanceof Error ? error : new Error(String(error));
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release(failed);
  }
  // After the commit, so that a worker always finds the chunk's row; a retried or duplicated
  // select enqueues the same job ids again, which is a no-op.
  if (deps.chunkQueue && result.chunks > 0) {
    await enqueueRecordedChunks(
      { pool: deps.pool, queue: deps.chunkQueue },
      { id: runId, window: options.window, scheduledFor: new Date(options.scheduledFor), expiresAt: new Date(options.expiresAt), shards: job.shards },
      { windowPriority: options.priority, itemsPerUser: options.itemsPerUser, shard: { index: job.shard, count: job.shards } },
    );
  }
  return result;
}
