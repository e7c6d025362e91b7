// The batch half of prewarm as real processes, for fault tests: a `prewarm scheduler` and
// precompute worker processes (the production wiring with a slow deterministic recommender, so a
// fault lands mid-run), and the counts that show a run lost or duplicated nothing.
import { fileURLToPath } from 'node:url';
import { recordLogins } from '../../src/activity/user-activity.ts';
import { systemClock } from '../../src/clock.ts';
import type { Pool } from '../../src/db/pool.ts';
import { createWindowStore, type WindowSettings } from '../../src/planner/windows.ts';
import { recencyPopulation } from '../fixtures/precompute-harness.ts';
import { spawnNodeScript, spawnPrewarm, type PrewarmProcess } from './prewarm-process.ts';

const WORKER_CHILD = fileURLToPath(new URL('../fixtures/precompute-worker-child.ts', import.meta.url));

/** Known users u0001…u<count> (recent logins) and one enabled window, planned in real time. */
export async function seedBatch(pool: Pool, options: { users: number; window: string; settings: WindowSettings }): Promise<void> {
  const population = recencyPopulation(Date.now(), options.users);
  const rows = Object.entries(population).flatMap(([userId, ats]) => ats.map((at) => ({ userId, at })));
  await recordLogins(pool, rows);
  await createWindowStore({ pool, clock: systemClock }).set(options.window, options.settings);
}

/** `prewarm scheduler`, sweeping every `sweep` (a duration) so that lost chunks come back quickly. */
export function spawnScheduler(env: Record<string, string>, sweep = '2s'): PrewarmProcess {
  return spawnPrewarm(['scheduler'], { PREWARM_SWEEP_INTERVAL: sweep, ...env });
}

/**
 * A precompute worker process: workers/precompute.ts's wiring with a recommender that takes
 * `delayMs` per chunk, and BullMQ locks of `lockMs` (a stalled chunk is taken back after ≈ that).
 */
export function spawnWorker(env: Record<string, string>, options: { delayMs: number; lockMs: number; concurrency: number }): PrewarmProcess {
  return spawnNodeScript(WORKER_CHILD, {
    PREWARM_WORKER_CONCURRENCY: String(options.concurrency),
    TEST_DELAY_MS: String(options.delayMs),
    TEST_LOCK_MS: String(options.lockMs),
    ...env,
  });
}

export interface RunCounts {
  id: number;
  scheduledFor: Date;
  status: string;
  /** Users the run must precompute: selected + holdout. */
  planned: number;
  precomputed: number;
  failed: number;
  chunksTotal: number;
  chunksDone: number;
  /** Rows in recommendations for the run. */
  sets: number;
  /** Distinct users among them. */
  usersWithSets: number;
  /** Planned users (predictions) without a set. */
  missing: number;
  /** Chunk rows not done, and the sum of their `precomputed`. */
  undoneChunks: number;
  chunkPrecomputed: number;
}

/** Every run of the schema with the counts that show what was computed, once each. */
export async function runCounts(pool: Pool): Promise<RunCounts[]> {
  const result = await pool.query<RunCounts>(
    `SELECT r.id, r.scheduled_for AS "scheduledFor", r.status, (r.selected + r.holdout) AS planned, r.precomputed, r.failed,
            r.chunks_total AS "chunksTotal", r.chunks_done AS "chunksDone",
            (SELECT count(*)::int FROM recommendations s WHERE s.run_id = r.id) AS sets,
            (SELECT count(DISTINCT user_id)::int FROM recommendations s WHERE s.run_id = r.id) AS "usersWithSets",
            (SELECT count(*)::int FROM predictions p WHERE p.run_id = r.id AND (p.selected OR p.holdout)
                AND NOT EXISTS (SELECT 1 FROM recommendations s WHERE s.run_id = r.id AND s.user_id = p.user_id)) AS missing,
            (SELECT count(*)::int FROM batch_chunks c WHERE c.run_id = r.id AND c.done_at IS NULL) AS "undoneChunks",
            (SELECT coalesce(sum(precomputed), 0)::int FROM batch_chunks c WHERE c.run_id = r.id) AS "chunkPrecomputed"
       FROM batch_runs r ORDER BY r.scheduled_for`,
  );
  return result.rows;
}

/** Polls until `done(runs)` holds; throws with the runs as they are after `timeoutMs`. */
export async function waitForRuns(pool: Pool, done: (runs: RunCounts[]) => boolean, timeoutMs: number): Promise<RunCounts[]> {
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    const runs = await runCounts(pool);
    if (done(runs)) return runs;
    if (Date.now() > giveUpAt) throw new Error(`runs not as expected after ${timeoutMs} ms: ${JSON.stringify(runs)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export const finished = (run: RunCounts) => run.status === 'completed' || run.status === 'failed';

/** One line per run for the test output. */
export function describeRuns(runs: readonly RunCounts[]): string {
  return runs
    .map(
      (r) =>
        `run ${r.id} @${r.scheduledFor.toISOString().slice(11, 19)} ${r.status}: planned ${r.planned}, precomputed ${r.precomputed}, failed ${r.failed}, ` +
        `chunks ${r.chunksDone}/${r.chunksTotal}, sets ${r.sets} (${r.usersWithSets} users, ${r.missing} missing)`,
    )
    .join('\n');
}
