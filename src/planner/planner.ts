import { performance } from 'node:perf_hooks';
import type { Queue } from 'bullmq';
import type { Clock } from '../clock.ts';
import { withTransaction, type Pool } from '../db/pool.ts';
import { toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { chunkJobId, enqueueRecordedChunks, type PrecomputeJobData, type PrecomputeJobResult } from './chunk-jobs.ts';
import { coldStartPolicy, isColdStart } from '../propensity/cold-start.ts';
import { createScaleMapper } from '../propensity/scale-map.ts';
import { DEFAULT_FEEDBACK, resolveHeldPolicy, type ScaleMapper } from './feedback.ts';
import { formatPolicy } from './policy.ts';
import { createRunStore, type BatchRun } from './runs.ts';
import { streamingScorer, type PropensityScorer } from './scorer.ts';
import { executeShardPhase, type SelectResult, type ShardJobData, type ShardPhaseDeps } from './shard-plan.ts';
import { chunkSql, planShardSql, runSql, type RunRow } from './sql.ts';
import { createTiming, heldChunks } from './timing.ts';
import {
  BOUNDARY_LIMIT,
  isGlobalPolicy,
  locateCut,
  MAX_ZOOM_LEVELS,
  mergeSummaries,
  resolveCut,
  zoomRange,
  type Cut,
  type ShardSummary,
  type Tally,
  type ZoomLevel,
} from './summary.ts';
import { MAX_PRIORITY, type Window } from './windows.ts';

export interface PlannerDeps {
  pool: Pool;
  queue: Queue<PrecomputeJobData, PrecomputeJobResult>;
  scorer: PropensityScorer;
  clock: Clock;
  log: Logger;
  /**
   * The holdout draw for a (run, user), uniform in [0, 1); a user is holdout when unselected and
   * the draw is below the window's holdout rate. Default: a hash of run id and user id, so every
   * replica (and a re-plan) draws the same users.
   */
  random?: (runId: number, userId: string) => number;
  /** Items per precomputed set. Default 100 (the serving path's largest limit). */
  itemsPerUser?: number;
  /** How long a claim is held while planning before another replica may take it over. Default 10 min. */
  planLeaseMs?: number;
  /** Delay before a failed planning is retried by a later tick. Default 60 s. */
  planRetryMs?: number;
  /** Planning attempts before the run is marked failed. Default 3. */
  maxPlanAttempts?: number;
  /**
   * The plan-shard queue: when given, a run's shards are scored by whichever `prewarm worker`
   * takes them (dry runs stay in this process). Default: every shard in this process, in turn.
   */
  shardQueue?: Queue<ShardJobData, unknown>;
  /** Shards of a run (on the queue at least: more when a shard would exceed maxShardUsers). Default 1, or 4 with a shardQueue. */
  shards?: number;
  /** On the queue: known users per shard job at most (from the table statistics). Default 2 000 000. */
  maxShardUsers?: number;
  /** Users scored per batch of the stream. Default 20 000. */
  batchSize?: number;
  /**
   * Predictions rows kept per run for unselected, non-holdout users (a uniform sample, weighted;
   * PREWARM_PLAN_PREDICTION_SAMPLE). Default 100 000.
   */
  unselectedSample?: number;
  /**
   * Puts a held target's pooled runs' scores on the serving model's scale (`resolveHeldPolicy`).
   * Default: from the stored models (src/propensity/scale-map.ts); null: pooled as recorded.
   */
  scaleMapper?: ScaleMapper | null;
}

const DEFAULT_QUEUE_SHARDS = 4;

export interface PlanResult {
  run: BatchRun;
  /** Chunks enqueued by this call (0 when another replica had already planned and enqueued). */
  enqueued: number;
  planMs: number;
}

/** What `prewarm plan NAME --dry-run` prints (the first five keys are the contract of docs/design.md). */
export interface DryRunResult {
  window: string;
  candidates: number;
  selected: number;
  expectedCoverage: number;
  expectedWaste: number;
  policy: string;
  /** Expected holdout users: unselected × holdout rate. */
  expectedHoldout: number;
  windowStart: string;
  horizonMs: number;
}

export interface SweepResult {
  /** Chunks whose job was lost (Redis flushed, trimmed) and were enqueued again. */
  requeued: number;
  /** Chunks recorded as failed: their job failed for good, or the run expired first. */
  failed: number;
}

export interface Planner {
  /**
   * Claims the occurrence (window, scheduledFor) and plans it: scores, selects, writes the run and
   * its predictions, enqueues the chunks. Undefined when another planner holds the claim.
   */
  planRun(window: Window, scheduledFor: Date): Promise<PlanResult | undefined>;
  /** Scores and selects as if the window started now; writes and enqueues nothing. */
  dryRun(window: Window): Promise<DryRunResult>;
  /**
   * Finds chunks of running runs that no job will ever complete (the job failed after its last
   * attempt or stalled too often, or Redis lost it) and re-enqueues or fails them, so that every
   * run terminates. Safe in every replica at once.
   */
  sweep(): Promise<SweepResult>;
  /** Enqueues the chunks of timed runs (timing.ts) that are due by `now`; returns the jobs added. */
  dispatch?(now: Date): Promise<number>;
}

/**
 * Scores and selects as if the window started now, without writing or enqueueing anything (it
 * needs no queue: `prewarm plan --dry-run` works without Redis).
 */
export function dryRunWindow(deps: Omit<PlannerDeps, 'queue' | 'shardQueue'>, window: Window): Promise<DryRunResult> {
  const noQueue = new Proxy({}, { get: () => () => Promise.reject(new Error('a dry run enqueues nothing')) }) as PlannerDeps['queue'];
  return createPlanner({ ...deps, queue: noQueue }).dryRun(window);
}

/** FNV-1a over `run:user`, as a fraction of 2^32: the default holdout draw. */
export function holdoutDraw(runId: number, userId: string): number {
  const text = `${runId}:${userId}`;
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) / 4_294_967_296;
}

export function createPlanner(deps: PlannerDeps): Planner {
  const { pool, queue, scorer, clock, log } = deps;
  const draw = deps.random ?? holdoutDraw;
  const itemsPerUser = deps.itemsPerUser ?? 100;
  const planLeaseMs = deps.planLeaseMs ?? 600_000;
  const planRetryMs = deps.planRetryMs ?? 60_000;
  const maxPlanAttempts = deps.maxPlanAttempts ?? 3;
  const runs = createRunStore({ pool });
  const shardQueue = deps.shardQueue;
  const batchSize = deps.batchSize ?? 20_000;
  const maxShardUsers = deps.maxShardUsers ?? 2_000_000;
  const unselectedSample = deps.unselectedSample ?? 100_000;
  const scaleMapper = deps.scaleMapper === undefined ? createScaleMapper({ pool, log }) : deps.scaleMapper;
  const streaming = streamingScorer(scorer);
  const timing = createTiming({ pool, queue, log, itemsPerUser });
  // No chunk queue: in this process, a run's chunks are enqueued once it is recorded as planned.
  const phaseDeps: ShardPhaseDeps = { pool, scorer: streaming, log, draw, now: () => clock.now() };

  async function claim(window: Window, scheduledFor: Date): Promise<RunRow | undefined> {
    const now = clock.now();
    const leaseUntil = new Date(now.getTime() + planLeaseMs);
    const claimed = await pool.query<RunRow>(
      runSql.claim({
        window: window.name,
        scheduledFor,
        startedAt: now,
        expiresAt: new Date(scheduledFor.getTime() + window.ttlMs),
        horizonMs: window.horizonMs,
        policy: formatPolicy(window.policy),
        leaseUntil,
      }),
    );
    if (claimed.rows[0]) return claimed.rows[0];
    const taken = await pool.query<RunRow>(runSql.takeOver({ window: window.name, scheduledFor, now, leaseUntil }));
    if (taken.rows[0]) log.warn({ window: window.name, runId: taken.rows[0].id, scheduledFor }, 'taking over a run whose planner did not finish');
    return taken.rows[0];
  }

  /**
   * Enqueues a run's recorded chunks (those in `chunkNos`, or all), read back from its
   * predictions a slice at a time, each with the priority of its rank in its shard.
   */
  function enqueueChunks(run: RunRow, windowPriority: number, chunkNos?: readonly number[]): Promise<number> {
    return enqueueRecordedChunks(
      { pool, queue },
      { id: run.id, window: run.window_name, scheduledFor: run.scheduled_for, expiresAt: run.expires_at, shards: run.shards },
      { windowPriority, itemsPerUser, ...(chunkNos ? { chunkNos } : {}) },
    );
  }

  async function finish(run: RunRow, enqueued: number, started: number): Promise<PlanResult> {
    await pool.query(runSql.markRunning(run.id, clock.now()));
    const fresh = (await runs.get(run.id)) as BatchRun;
    return { run: fresh, enqueued, planMs: performance.now() - started };
  }

  async function plan(run: RunRow, window: Window, started: number): Promise<PlanResult> {
    const scheduledFor = run.scheduled_for;
    // Before any shard selects: a timed run's chunks wait for their compute time.
    if (window.timing.mode === 'predicted') await timing.markRun(run.id, window.timing);
    const prepared = await streaming.prepare(scheduledFor, window.horizonMs);
    // A re-plan (a replica taking over) scores with the version and shards the first attempt fixed.
    const pinned = (await pool.query<{ model_version: string; shards: number }>(planShardSql.pinPlan(run.id, prepared.version, await shardCount()))).rows[0];
    if (!pinned) throw new Error(`run ${run.id} vanished while planning`);
    const shards = pinned.shards;
    // Cold start (no model yet): a coverage or waste goal selects by the recency rule that backtests best.
    const coldStart = { id: run.id, window: window.name, at: scheduledFor, horizonMs: window.horizonMs, coldStart: isColdStart(prepared) && pinned.model_version === prepared.version };
    const applied = { ...window, policy: await coldStartPolicy({ pool, log }, coldStart, window.policy) };
    const staged = await stages({ runId: run.id, window: applied, windowStart: scheduledFor, version: pinned.model_version, shards });
    return select({ ...run, shards }, applied, started, staged, pinned.model_version, shards);
  }

  async function select(
    run: RunRow,
    window: Window,
    started: number,
    staged: Awaited<ReturnType<typeof stages>>,
    modelVersion: string,
    shards: number,
  ): Promise<PlanResult> {
    const scheduledFor = run.scheduled_for;
    const unselected = staged.total.count - staged.selected.count;
    const sampleRate = unselected <= 0 ? 1 : Math.min(1, unselectedSample / unselected);
    const results = (await staged.runPhase('select', 'select', {
      select: {
        cut: staged.cut,
        window: window.name,
        scheduledFor: scheduledFor.toISOString(),
        expiresAt: run.expires_at.toISOString(),
        holdoutRate: window.holdoutRate,
        sampleRate,
        chunkSize: window.chunkSize,
        priority: window.priority,
        itemsPerUser,
      },
    })) as SelectResult[];
    const totals = { selected: 0, holdout: 0, chunks: 0, written: 0 };
    for (const r of results) {
      totals.selected += r.selected;
      totals.holdout += r.holdout;
      totals.chunks += r.chunks;
      totals.written += r.written;
    }
    if (window.timing.mode === 'predicted') totals.chunks = await timing.cut(run.id, window.chunkSize, clock.now());
    const expectedCoverage = staged.total.sum > 0 ? staged.selected.sum / staged.total.sum : 0;
    const expectedWaste = staged.selected.count > 0 ? 1 - staged.selected.sum / staged.selected.count : 0;
    const marked = await withTransaction(pool, async (client) => {
      const done = await client.query(
        runSql.markPlanned({
          id: run.id,
          plannedAt: clock.now(),
          modelVersion,
          candidates: staged.total.count,
          selected: totals.selected,
          holdout: totals.holdout,
          chunksTotal: totals.chunks,
          expectedCoverage,
          expectedWaste,
        }),
      );
      await client.query(planShardSql.recordWrites(run.id, sampleRate, totals.written));
      return (done.rowCount ?? 0) > 0;
    });
    if (!marked) return resume(run, window, started);
    // On the queue, each shard enqueued its chunks once recorded; here they are read back now.
    const enqueued =
      window.timing.mode === 'predicted' ? await timing.dispatch(clock.now(), run.id) : shardQueue ? totals.chunks : await enqueueChunks(run, window.priority);
    const result = await finish(run, enqueued, started);
    log.info(
      {
        window: window.name,
        runId: run.id,
        scheduledFor,
        shards,
        candidates: staged.total.count,
        selected: totals.selected,
        holdout: totals.holdout,
        chunks: totals.chunks,
        predictionsWritten: totals.written,
        expectedCoverage,
        expectedWaste,
        planMs: Math.round(result.planMs),
      },
      'run planned',
    );
    return result;
  }

  /**
   * Shards of a new run. In this process: as configured, default 1 — a shard's memory no longer
   * grows with its users, and every shard is one more scan of the state table per pass. On the
   * queue: as configured, and enough to keep each job within maxShardUsers (a job's duration).
   */
  async function shardCount(): Promise<number> {
    if (!shardQueue) return Math.max(deps.shards ?? 1, 1);
    const estimate = (await pool.query<{ n: number }>(planShardSql.estimateUsers())).rows[0]?.n ?? 0;
    return Math.max(deps.shards ?? DEFAULT_QUEUE_SHARDS, Math.ceil(estimate / maxShardUsers), 1);
  }

  /**
   * Population, summary and (for budget, coverage, waste) the zoom into the bin of the cut:
   * everything up to the cut, in memory bounded by the histogram and BOUNDARY_LIMIT users.
   */
  async function stages(args: { runId: number | null; window: Window; windowStart: Date; version: string; shards: number }) {
    const { runId, window, windowStart, version, shards } = args;
    const base = {
      runId,
      shards,
      windowStart: windowStart.toISOString(),
      horizonMs: window.horizonMs,
      version,
      policy: formatPolicy(window.policy),
      batchSize,
    };
    let population: unknown = null;
    const runPhase = async (phase: ShardJobData['phase'], step: string, extra: Partial<ShardJobData>): Promise<unknown[]> => {
      const jobs: ShardJobData[] = Array.from({ length: shards }, (_v, shard) => ({ ...base, phase, step, shard, population, ...extra }));
      const began = performance.now();
      let results: unknown[] = [];
      if (!shardQueue || runId === null) for (const job of jobs) results.push(await executeShardPhase(phaseDeps, job));
      else results = await runOnWorkers(runId, step, jobs);
      log.debug({ runId, window: window.name, step, shards, ms: Math.round(performance.now() - began) }, 'planning phase done');
      return results;
    };
    population = streaming.mergePopulation(await runPhase('population', 'population', {}));
    let zoom: ZoomLevel[] = [];
    let summary = mergeSummaries((await runPhase('summarize', 'summarize-0', { zoom })) as ShardSummary[]);
    const total = summary.total;
    const policy = window.policy;
    let cut: Cut = policy.kind === 'all' ? { kind: 'all' } : policy.kind === 'none' ? { kind: 'none' } : { kind: 'rule' };
    let selected: Tally = summary.local;
    if (isGlobalPolicy(policy)) {
      for (;;) {
        const step = locateCut(policy, summary, total);
        if ('done' in step) {
          cut = step.done;
          selected = step.selected;
          break;
        }
        zoom = [...zoom, { ...zoomRange(zoom), bin: step.zoomBin }];
        if (step.binCount <= BOUNDARY_LIMIT || zoom.length >= MAX_ZOOM_LEVELS) {
          const parts = (await runPhase('collect', `collect-${zoom.length}`, { zoom })) as { entries: [string, number][] }[];
          const entries = parts.flatMap((part) => part.entries.map(([userId, p]) => ({ userId, p })));
          ({ cut, selected } = resolveCut(policy, zoom, entries, step.above, total));
          break;
        }
        summary = mergeSummaries((await runPhase('summarize', `summarize-${zoom.length}`, { zoom })) as ShardSummary[]);
      }
    }
    return { cut, selected, total, runPhase };
  }

  /** Puts a phase's shard jobs on the plan-shard queue and waits for every shard's result in Postgres. */
  async function runOnWorkers(runId: number, step: string, jobs: ShardJobData[]): Promise<unknown[]> {
    const queue = shardQueue as Queue<ShardJobData, unknown>;
    const id = (shard: number) => `plan-${runId}-${step}-${shard}`;
    await queue.addBulk(jobs.map((job) => ({ name: `${runId}:${step}:${job.shard}`, data: job, opts: { jobId: id(job.shard) } })));
    const deadline = Date.now() + planLeaseMs;
    for (let poll = 0; ; poll++) {
      const rows = (await pool.query<{ shard: number; result: unknown }>(planShardSql.results(runId, step))).rows;
      if (rows.length >= jobs.length) return rows.map((row) => row.result);
      if (poll % 10 === 9) {
        const done = new Set(rows.map((row) => row.shard));
        for (const job of jobs) {
          if (done.has(job.shard)) continue;
          const shardJob = await queue.getJob(id(job.shard));
          if (shardJob && (await shardJob.getState()) === 'failed') {
            // Removed, so that the next planning attempt enqueues it again.
            await shardJob.remove().catch(() => undefined);
            throw new Error(`plan shard ${step}/${job.shard} failed: ${shardJob.failedReason}`);
          }
        }
      }
      if (Date.now() > deadline) throw new Error(`plan shards of ${step} not done after ${planLeaseMs} ms: is a prewarm worker running?`);
      await new Promise((resolve) => setTimeout(resolve, poll < 20 ? 25 : 100));
    }
  }

  /** A run planned by a predecessor that died before enqueueing: enqueue what is not done. */
  async function resume(run: RunRow, window: Window, started: number): Promise<PlanResult> {
    const undone = (await pool.query<{ chunk_no: number }>(chunkSql.undone(run.id))).rows.map((row) => row.chunk_no);
    const fresh = (await pool.query<RunRow>(runSql.get(run.id))).rows[0] as RunRow;
    return finish(fresh, await enqueueChunks(fresh, window.priority, undone), started);
  }

  return {
    async planRun(configured, scheduledFor) {
      // A coverage or waste target is held from the window's finished runs; the run applies and records the held one.
      const window = { ...configured, policy: await resolveHeldPolicy(pool, configured, scheduledFor, DEFAULT_FEEDBACK, scaleMapper ?? undefined) };
      const run = await claim(window, scheduledFor);
      if (!run) return undefined;
      const started = performance.now();
      try {
        return run.planned_at ? await resume(run, window, started) : await plan(run, window, started);
      } catch (thrown) {
        const error = toError(thrown);
        const now = clock.now();
        const status = await pool
          .query<{ status: string }>(runSql.planningFailed(run.id, now, new Date(now.getTime() + planRetryMs), error.message, maxPlanAttempts))
          .then((result) => result.rows[0]?.status)
          .catch(() => undefined);
        log.error({ err: error, window: window.name, runId: run.id, status }, status === 'failed' ? 'planning failed for good' : 'planning failed; a later tick retries');
        throw error;
      }
    },

    async dryRun(window) {
      const windowStart = clock.now();
      const prepared = await streaming.prepare(windowStart, window.horizonMs);
      const staged = await stages({ runId: null, window, windowStart, version: prepared.version, shards: await shardCount() });
      return {
        window: window.name,
        candidates: staged.total.count,
        selected: staged.selected.count,
        expectedCoverage: staged.total.sum > 0 ? staged.selected.sum / staged.total.sum : 0,
        expectedWaste: staged.selected.count > 0 ? 1 - staged.selected.sum / staged.selected.count : 0,
        policy: formatPolicy(window.policy),
        expectedHoldout: Math.round((staged.total.count - staged.selected.count) * window.holdoutRate),
        windowStart: windowStart.toISOString(),
        horizonMs: window.horizonMs,
      };
    },

    async sweep() {
      const result: SweepResult = { requeued: 0, failed: 0 };
      const now = clock.now();
      const open = (await pool.query<RunRow>(runSql.running(100))).rows;
      for (const run of open) {
        const recorded = (await pool.query<{ chunk_no: number; users: number }>(chunkSql.undone(run.id))).rows;
        if (recorded.length === 0) continue;
        const failChunk = async (chunk: { chunk_no: number; users: number }, error: string) => {
          const recorded = await runs.completeChunk(pool, { runId: run.id, chunkNo: chunk.chunk_no, at: now, precomputed: 0, failed: chunk.users, computeMs: 0, error });
          if (recorded) result.failed++;
        };
        if (run.expires_at.getTime() <= now.getTime()) {
          // Computing now would only produce sets that are already stale.
          for (const chunk of recorded) await failChunk(chunk, 'run expired before the chunk was computed');
          continue;
        }
        // A timed run's chunks held for a later compute time have no job yet, on purpose.
        const held = await heldChunks(pool, run.id);
        const undone = held.size === 0 ? recorded : recorded.filter((chunk) => !held.has(chunk.chunk_no));
        const states = await Promise.all(undone.map((chunk) => queue.getJobState(chunkJobId(run.id, chunk.chunk_no))));
        const lost: number[] = [];
        for (let i = 0; i < undone.length; i++) {
          const chunk = undone[i] as { chunk_no: number; users: number };
          if (states[i] === 'unknown') lost.push(chunk.chunk_no);
          else if (states[i] === 'failed') {
            const job = await queue.getJob(chunkJobId(run.id, chunk.chunk_no));
            await failChunk(chunk, `job failed: ${job?.failedReason ?? 'unknown reason'}`);
          }
        }
        if (lost.length > 0) {
          // Lost chunks go ahead of new work (their run is older), in their rank's order.
          result.requeued += await enqueueChunks(run, MAX_PRIORITY, lost);
          log.warn({ runId: run.id, chunks: lost.length }, 're-enqueued chunks whose jobs were lost');
        }
      }
      return result;
    },

    dispatch: (now) => timing.dispatch(now),
  };
}

