import { performance } from 'node:perf_hooks';
import type { Queue } from 'bullmq';
import type { Clock } from '../clock.ts';
import { copyIn } from '../db/copy-binary.ts';
import { withTransaction, type Pool } from '../db/pool.ts';
import { toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { chunkJob, chunkJobId, type PrecomputeJobData, type PrecomputeJobResult } from './chunk-jobs.ts';
import { byPropensity, formatPolicy, selectUsers, type Candidate } from './policy.ts';
import { createRunStore, type BatchRun } from './runs.ts';
import type { PropensityScorer } from './scorer.ts';
import { chunkSql, predictionSql, runSql, type PredictionRows, type RunRow } from './sql.ts';
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
}

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
}

/**
 * Scores and selects as if the window started now, without writing or enqueueing anything (it
 * needs no queue: `prewarm plan --dry-run` works without Redis).
 */
export async function dryRunWindow({ scorer, clock }: { scorer: PropensityScorer; clock: Clock }, window: Window): Promise<DryRunResult> {
  const windowStart = clock.now();
  const candidates = await scorer.scoreKnownUsers(windowStart, window.horizonMs);
  const selection = selectUsers(candidates, window.policy, { windowStart: windowStart.getTime(), windowMs: window.horizonMs });
  return {
    window: window.name,
    candidates: candidates.length,
    selected: selection.selected.length,
    expectedCoverage: selection.expectedCoverage,
    expectedWaste: selection.expectedWaste,
    policy: formatPolicy(window.policy),
    expectedHoldout: Math.round((candidates.length - selection.selected.length) * window.holdoutRate),
    windowStart: windowStart.toISOString(),
    horizonMs: window.horizonMs,
  };
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

const ADD_BULK_SLICE = 1_000;

export function createPlanner(deps: PlannerDeps): Planner {
  const { pool, queue, scorer, clock, log } = deps;
  const draw = deps.random ?? holdoutDraw;
  const itemsPerUser = deps.itemsPerUser ?? 100;
  const planLeaseMs = deps.planLeaseMs ?? 600_000;
  const planRetryMs = deps.planRetryMs ?? 60_000;
  const maxPlanAttempts = deps.maxPlanAttempts ?? 3;
  const runs = createRunStore({ pool });

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

  function jobsFor(run: RunRow, windowPriority: number, chunks: Map<number, { userIds: string[]; holdoutUserIds: string[] }>) {
    const jobs = [];
    for (const [chunkNo, chunk] of chunks) {
      const data: PrecomputeJobData = {
        runId: run.id,
        chunkNo,
        window: run.window_name,
        scheduledFor: run.scheduled_for.toISOString(),
        expiresAt: run.expires_at.toISOString(),
        userIds: chunk.userIds,
        holdoutUserIds: chunk.holdoutUserIds,
        itemsPerUser,
      };
      jobs.push(chunkJob(data, windowPriority));
    }
    return jobs;
  }

  async function enqueue(jobs: ReturnType<typeof jobsFor>): Promise<void> {
    for (let i = 0; i < jobs.length; i += ADD_BULK_SLICE) await queue.addBulk(jobs.slice(i, i + ADD_BULK_SLICE));
  }

  /** The chunks of a run as its predictions recorded them. */
  async function chunksFromPredictions(runId: number, chunkNos: readonly number[]) {
    const chunks = new Map<number, { userIds: string[]; holdoutUserIds: string[] }>();
    if (chunkNos.length === 0) return chunks;
    const result = await pool.query<{ chunk_no: number; user_id: string; holdout: boolean }>(predictionSql.chunkUsers(runId, chunkNos));
    for (const row of result.rows) {
      let chunk = chunks.get(row.chunk_no);
      if (!chunk) chunks.set(row.chunk_no, (chunk = { userIds: [], holdoutUserIds: [] }));
      chunk.userIds.push(row.user_id);
      if (row.holdout) chunk.holdoutUserIds.push(row.user_id);
    }
    return chunks;
  }

  async function finish(run: RunRow, enqueued: number, started: number): Promise<PlanResult> {
    await pool.query(runSql.markRunning(run.id, clock.now()));
    const fresh = (await runs.get(run.id)) as BatchRun;
    return { run: fresh, enqueued, planMs: performance.now() - started };
  }

  async function plan(run: RunRow, window: Window, started: number): Promise<PlanResult> {
    const scheduledFor = run.scheduled_for;
    const candidates = await scorer.scoreKnownUsers(scheduledFor, window.horizonMs);
    const selection = selectUsers(candidates, window.policy, { windowStart: scheduledFor.getTime(), windowMs: window.horizonMs });
    const selectedIds = new Set(selection.selected.map((c) => c.userId));
    const holdout: Candidate[] = [];
    if (window.holdoutRate > 0) {
      for (const c of candidates) if (!selectedIds.has(c.userId) && draw(run.id, c.userId) < window.holdoutRate) holdout.push(c);
    }
    const holdoutIds = new Set(holdout.map((c) => c.userId));
    // One ranking for selected and holdout users: chunk 0 holds the most likely logins.
    const toPrecompute = [...selection.selected, ...holdout].sort(byPropensity);
    const chunkOf = new Map<string, number>();
    const chunks = new Map<number, { userIds: string[]; holdoutUserIds: string[] }>();
    toPrecompute.forEach((c, i) => {
      const chunkNo = Math.floor(i / window.chunkSize);
      chunkOf.set(c.userId, chunkNo);
      let chunk = chunks.get(chunkNo);
      if (!chunk) chunks.set(chunkNo, (chunk = { userIds: [], holdoutUserIds: [] }));
      chunk.userIds.push(c.userId);
      if (holdoutIds.has(c.userId)) chunk.holdoutUserIds.push(c.userId);
    });

    const rows: PredictionRows = { userIds: [], ps: [], selected: [], holdout: [], chunkNos: [] };
    for (const c of candidates) {
      rows.userIds.push(c.userId);
      rows.ps.push(c.p);
      rows.selected.push(selectedIds.has(c.userId));
      rows.holdout.push(holdoutIds.has(c.userId));
      rows.chunkNos.push(chunkOf.get(c.userId) ?? null);
    }
    const won = await withTransaction(pool, async (client) => {
      const locked = await client.query(runSql.lockForPlanning(run.id));
      if (locked.rowCount === 0) throw new PlannedElsewhere();
      await copyIn(client, predictionSql.copy, predictionSql.encode(run.id, rows));
      await client.query(chunkSql.insertMany(run.id, [...chunks.values()].map((chunk) => chunk.userIds.length)));
      const marked = await client.query(
        runSql.markPlanned({
          id: run.id,
          plannedAt: clock.now(),
          modelVersion: scorer.version,
          candidates: candidates.length,
          selected: selection.selected.length,
          holdout: holdout.length,
          chunksTotal: chunks.size,
          expectedCoverage: selection.expectedCoverage,
          expectedWaste: selection.expectedWaste,
        }),
      );
      if (marked.rowCount === 0) throw new PlannedElsewhere();
      return true;
    }).catch((error: unknown) => {
      if (error instanceof PlannedElsewhere) return false;
      throw error;
    });
    if (!won) return resume(run, window, started);
    const jobs = jobsFor(run, window.priority, chunks);
    await enqueue(jobs);
    const result = await finish(run, jobs.length, started);
    log.info(
      {
        window: window.name,
        runId: run.id,
        scheduledFor,
        candidates: candidates.length,
        selected: selection.selected.length,
        holdout: holdout.length,
        chunks: jobs.length,
        expectedCoverage: selection.expectedCoverage,
        expectedWaste: selection.expectedWaste,
        planMs: Math.round(result.planMs),
      },
      'run planned',
    );
    return result;
  }

  /** A run planned by a predecessor that died before enqueueing: enqueue what is not done. */
  async function resume(run: RunRow, window: Window, started: number): Promise<PlanResult> {
    const undone = (await pool.query<{ chunk_no: number }>(chunkSql.undone(run.id))).rows.map((row) => row.chunk_no);
    const fresh = (await pool.query<RunRow>(runSql.get(run.id))).rows[0] as RunRow;
    const jobs = jobsFor(fresh, window.priority, await chunksFromPredictions(run.id, undone));
    await enqueue(jobs);
    return finish(fresh, jobs.length, started);
  }

  return {
    async planRun(window, scheduledFor) {
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

    dryRun: (window) => dryRunWindow({ scorer, clock }, window),

    async sweep() {
      const result: SweepResult = { requeued: 0, failed: 0 };
      const now = clock.now();
      const open = (await pool.query<RunRow>(runSql.running(100))).rows;
      for (const run of open) {
        const undone = (await pool.query<{ chunk_no: number; users: number }>(chunkSql.undone(run.id))).rows;
        if (undone.length === 0) continue;
        const failChunk = async (chunk: { chunk_no: number; users: number }, error: string) => {
          const recorded = await runs.completeChunk(pool, { runId: run.id, chunkNo: chunk.chunk_no, at: now, precomputed: 0, failed: chunk.users, computeMs: 0, error });
          if (recorded) result.failed++;
        };
        if (run.expires_at.getTime() <= now.getTime()) {
          // Computing now would only produce sets that are already stale.
          for (const chunk of undone) await failChunk(chunk, 'run expired before the chunk was computed');
          continue;
        }
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
          // Lost chunks go ahead of new work: their run is older.
          const jobs = jobsFor(run, MAX_PRIORITY, await chunksFromPredictions(run.id, lost));
          await enqueue(jobs);
          result.requeued += jobs.length;
          log.warn({ runId: run.id, chunks: lost.length }, 're-enqueued chunks whose jobs were lost');
        }
      }
      return result;
    },
  };
}

class PlannedElsewhere extends Error {}
