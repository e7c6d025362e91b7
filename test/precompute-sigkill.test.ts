import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { TEST_DATABASE_URL, TEST_REDIS_URL } from './helpers.ts';
import { createPlannerHarness, recencyPopulation, type PlannerHarness } from './fixtures/precompute-harness.ts';

const CHILD = fileURLToPath(new URL('./fixtures/precompute-worker-child.ts', import.meta.url));

interface Child {
  process: ChildProcess;
  chunkStarts: () => number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startChild(h: PlannerHarness): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    env: {
      ...process.env,
      DATABASE_URL: TEST_DATABASE_URL,
      REDIS_URL: TEST_REDIS_URL,
      PREWARM_DB_SCHEMA: h.db.schema,
      PREWARM_QUEUE_PREFIX: h.prefix,
      PREWARM_CACHE_PREFIX: h.cachePrefix,
      PREWARM_WORKER_CONCURRENCY: '2',
      PREWARM_LOG_LEVEL: 'warn',
      TEST_DELAY_MS: '400',
      TEST_LOCK_MS: '1000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let starts = 0;
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (text: string) => {
    starts += text.split('\n').filter((line) => line.startsWith('chunk-start')).length;
  });
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      if (code !== 0 && code !== null) process.stderr.write(`worker child exited ${code}: ${stderr}\n`);
      resolve({ code, signal });
    }),
  );
  return { process: child, chunkStarts: () => starts, exited };
}

describe('precompute worker killed with SIGKILL mid-run', () => {
  let h: PlannerHarness | undefined;
  const children: Child[] = [];
  afterEach(async () => {
    for (const child of children.splice(0)) {
      if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
      await child.exited;
    }
    await h?.close();
    h = undefined;
  });

  it('the run still completes and every selected user has exactly one set', async () => {
    // Worker processes read the system clock, so the run is planned in real time.
    const now = Math.floor(Date.now() / 1000) * 1000;
    h = await createPlannerHarness({ start: now });
    await h.seedLogins(recencyPopulation(now, 240));
    const { window } = await h.windows.set('nightly', { cron: '* * * * *', ttl: '1h', policy: 'budget:200', chunkSize: 20, holdoutRate: 0.1 });
    const run = (await h.planner.planRun(window, new Date(now)))!.run;
    const expectedUsers = run.selected + run.holdout;
    expect(run.chunksTotal).toBeGreaterThanOrEqual(10);

    const first = startChild(h);
    children.push(first);
    // Kill it while chunks are in flight: a few have started (and maybe finished), others are running.
    await expect.poll(first.chunkStarts, { timeout: 30_000, interval: 20 }).toBeGreaterThanOrEqual(3);
    first.process.kill('SIGKILL');
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });
    const midway = (await h.runs.get(run.id))!;
    expect(midway.status).toBe('running');
    expect(midway.chunksDone).toBeLessThan(run.chunksTotal);
    expect(await h.queue.getJobCountByTypes('active')).toBeGreaterThan(0);

    // A new worker recovers the stalled chunks once their locks expire, and finishes the run.
    const second = startChild(h);
    children.push(second);
    const done = await h.waitForRun(run.id, ['completed', 'failed'], 60_000);
    expect(done).toMatchObject({ status: 'completed', precomputed: expectedUsers, failed: 0, chunksDone: run.chunksTotal });

    const sets = await h.pool.query<{ user_id: string; n: number }>(
      'SELECT user_id, count(*)::int AS n FROM recommendations WHERE run_id = $1 GROUP BY user_id',
      [run.id],
    );
    expect(sets.rowCount).toBe(expectedUsers);
    expect(sets.rows.every((row) => row.n === 1)).toBe(true);
    const precomputed = await h.pool.query<{ user_id: string }>('SELECT user_id FROM predictions WHERE run_id = $1 AND (selected OR holdout)', [run.id]);
    expect(new Set(sets.rows.map((row) => row.user_id))).toEqual(new Set(precomputed.rows.map((row) => row.user_id)));
    const chunkRows = await h.pool.query('SELECT sum(precomputed)::int AS precomputed, count(*) FILTER (WHERE done_at IS NULL)::int AS undone FROM batch_chunks WHERE run_id = $1', [run.id]);
    expect(chunkRows.rows[0]).toEqual({ precomputed: expectedUsers, undone: 0 });

    // SIGTERM: the second worker shuts down gracefully.
    second.process.kill('SIGTERM');
    expect(await second.exited).toEqual({ code: 0, signal: null });
  }, 120_000);
});
