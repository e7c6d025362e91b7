import { UnrecoverableError, Worker, type Queue } from 'bullmq';
import { afterEach, describe, expect, it } from 'vitest';
import { parsePolicy, selectUsers } from '../src/planner/policy.ts';
import { createPlanner, holdoutDraw } from '../src/planner/planner.ts';
import { chunkJobId, chunkPriority, type PrecomputeJobData, type PrecomputeJobResult } from '../src/planner/chunk-jobs.ts';
import { recencyScore } from '../src/propensity/recency-scorer.ts';
import { silentLog } from './helpers.ts';
import { createPlannerHarness, DAY, HOUR, recencyPopulation, type PlannerHarness } from './fixtures/precompute-harness.ts';

const START = Date.parse('2024-03-01T00:00:00Z');

describe('planner', () => {
  let h: PlannerHarness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  async function setup(policy: string, extra: { chunkSize?: number; holdoutRate?: number; priority?: number } = {}) {
    h = await createPlannerHarness({ start: START });
    await h.seedLogins(recencyPopulation(START, 300));
    // Logins after the occurrence must not influence its scores.
    await h.seedLogins({ u0300: [new Date(START + HOUR)], late: [new Date(START + 2 * HOUR)] });
    const { window } = await h.windows.set('nightly', { cron: '0 0 * * *', policy, chunkSize: extra.chunkSize ?? 40, holdoutRate: extra.holdoutRate ?? 0.1, priority: extra.priority ?? 0 });
    return { h, window };
  }

  it('scores every known user, applies the policy, records every prediction and enqueues chunks by propensity', async () => {
    const { h, window } = await setup('threshold:0.3');
    const planned = await h.planner.planRun(window, new Date(START));
    expect(planned).toBeDefined();
    const run = planned!.run;

    // The same selection as the shared policy code on the same scores.
    const candidates = await h.scorer.scoreKnownUsers(new Date(START), DAY);
    expect(candidates).toHaveLength(300); // `late` is not known yet
    const expected = selectUsers(candidates, parsePolicy('threshold:0.3'), { windowStart: START, windowMs: DAY });
    expect(expected.selected.length).toBeGreaterThan(20);
    expect(expected.selected.length).toBeLessThan(300);
    const expectedHoldout = candidates.filter((c) => !expected.selected.includes(c) && holdoutDraw(run.id, c.userId) < 0.1);

    expect(run).toMatchObject({
      window: 'nightly',
      status: 'running',
      candidates: 300,
      selected: expected.selected.length,
      holdout: expectedHoldout.length,
      modelVersion: 'recency-v1',
      policy: 'threshold:0.3',
      chunksTotal: Math.ceil((expected.selected.length + expectedHoldout.length) / 40),
      chunksDone: 0,
    });
    expect(run.expectedCoverage).toBeCloseTo(expected.expectedCoverage, 5);
    expect(run.expiresAt.toISOString()).toBe(new Date(START + DAY).toISOString());

    const predictions = await h.pool.query<{ user_id: string; p: number; selected: boolean; holdout: boolean; chunk_no: number | null }>(
      'SELECT user_id, p, selected, holdout, chunk_no FROM predictions WHERE run_id = $1',
      [run.id],
    );
    expect(predictions.rowCount).toBe(300);
    const selectedRows = predictions.rows.filter((r) => r.selected);
    expect(new Set(selectedRows.map((r) => r.user_id))).toEqual(new Set(expected.selected.map((c) => c.userId)));
    expect(predictions.rows.filter((r) => r.holdout).map((r) => r.user_id).sort()).toEqual(expectedHoldout.map((c) => c.userId).sort());
    expect(predictions.rows.every((r) => r.selected || r.holdout || r.chunk_no === null)).toBe(true);
    expect(predictions.rows.every((r) => !(r.selected && r.holdout))).toBe(true);
    // u0001 logged in an hour before the occurrence (its login after it is ignored).
    const first = predictions.rows.find((r) => r.user_id === 'u0001')!;
    expect(first.p).toBeCloseTo(recencyScore({ firstLoginAt: START - HOUR - 2 * DAY, lastLoginAt: START - HOUR, loginCount: 3 }, START, DAY), 5);
    expect(predictions.rows.find((r) => r.user_id === 'u0300')!.p).toBeLessThan(first.p);

    const jobs = await h.queue.getJobs(['prioritized', 'waiting']);
    expect(jobs).toHaveLength(run.chunksTotal);
    const byChunk = [...jobs].sort((a, b) => a.data.chunkNo - b.data.chunkNo);
    byChunk.forEach((job, chunkNo) => {
      expect(job.id).toBe(chunkJobId(run.id, chunkNo));
      expect(job.name).toBe(`${run.id}:${chunkNo}`);
      expect(job.opts.priority).toBe(chunkPriority(0, chunkNo));
      expect(job.data).toMatchObject({ runId: run.id, chunkNo, window: 'nightly', expiresAt: new Date(START + DAY).toISOString(), itemsPerUser: 10 });
    });
    // Every precomputed user in exactly one chunk; chunks in propensity order.
    const users = byChunk.flatMap((job) => job.data.userIds);
    expect(new Set(users).size).toBe(users.length);
    expect(users.length).toBe(run.selected + run.holdout);
    const p = new Map(predictions.rows.map((r) => [r.user_id, r.p]));
    for (let i = 1; i < users.length; i++) expect(p.get(users[i - 1]!)!).toBeGreaterThanOrEqual(p.get(users[i]!)!);
    expect(byChunk.flatMap((job) => job.data.holdoutUserIds).sort()).toEqual(expectedHoldout.map((c) => c.userId).sort());

    const chunks = await h.pool.query('SELECT chunk_no, users FROM batch_chunks WHERE run_id = $1 ORDER BY chunk_no', [run.id]);
    expect(chunks.rows.map((r) => r.users)).toEqual(byChunk.map((job) => job.data.userIds.length));
  });

  it('claims an occurrence once: a second plan of it does nothing', async () => {
    const { h, window } = await setup('budget:50');
    const first = await h.planner.planRun(window, new Date(START));
    const second = await h.planner.planRun(window, new Date(START));
    expect(first?.run.selected).toBe(50);
    expect(second).toBeUndefined();
    expect((await h.pool.query('SELECT count(*)::int AS n FROM batch_runs')).rows[0].n).toBe(1);
    expect(await h.queue.count()).toBe(first!.run.chunksTotal);
  });

  it('dry run: the numbers of the plan, nothing written or enqueued', async () => {
    const { h, window } = await setup('coverage:0.8');
    const dry = await h.planner.dryRun(window);
    const candidates = await h.scorer.scoreKnownUsers(new Date(START), DAY);
    const expected = selectUsers(candidates, parsePolicy('coverage:0.8'), { windowStart: START, windowMs: DAY });
    expect(dry).toMatchObject({ window: 'nightly', candidates: 300, selected: expected.selected.length, policy: 'coverage:0.8' });
    expect(dry.expectedCoverage).toBeCloseTo(expected.expectedCoverage, 9);
    expect(dry.expectedCoverage).toBeGreaterThanOrEqual(0.8 - 1e-9);
    expect(dry.expectedWaste).toBeCloseTo(expected.expectedWaste, 9);
    expect((await h.pool.query('SELECT count(*)::int AS n FROM batch_runs')).rows[0].n).toBe(0);
    expect(await h.queue.count()).toBe(0);
  });

  it.each([
    ['budget:25', 25],
    ['all', 300],
    ['none', 0],
    // recent:1 = last login within one window (24 h) before the occurrence.
    ['recent:1', 24],
  ])('policy %s selects %i users', async (policy, count) => {
    const { h, window } = await setup(policy, { holdoutRate: 0 });
    const planned = await h.planner.planRun(window, new Date(START));
    expect(planned!.run.selected).toBe(count);
    expect(planned!.run.holdout).toBe(0);
    expect(planned!.run.chunksTotal).toBe(Math.ceil(count / 40));
    // A run with nothing to compute is complete at once.
    if (count === 0) expect(planned!.run).toMatchObject({ status: 'completed', finishedAt: new Date(START) });
  });

  it('a higher-priority window is dequeued first; within a run, chunk 0 first', () => {
    expect(chunkPriority(100, 0)).toBe(1);
    expect(chunkPriority(100, 5)).toBeLessThan(chunkPriority(50, 0));
    expect(chunkPriority(0, 0)).toBeLessThan(chunkPriority(0, 1));
    expect(chunkPriority(0, 10_000_000)).toBeLessThanOrEqual(2 ** 21 - 1);
  });

  it('a planner that died before enqueueing is taken over, and the plan is enqueued exactly as recorded', async () => {
    const { h, window } = await setup('threshold:0.3');
    // This planner writes its plan, then Redis fails under it before the chunks are enqueued.
    const broken = { addBulk: async () => Promise.reject(new Error('redis went away')) } as unknown as Queue<PrecomputeJobData, PrecomputeJobResult>;
    const dying = createPlanner({ pool: h.pool, queue: broken, scorer: h.scorer, clock: h.clock, log: silentLog, itemsPerUser: 10, planRetryMs: 60_000 });
    await expect(dying.planRun(window, new Date(START))).rejects.toThrow('redis went away');
    const stuck = (await h.runs.list())[0]!;
    expect(stuck).toMatchObject({ status: 'planning', error: 'redis went away' });
    expect(stuck.plannedAt).not.toBeNull();

    // Within the retry delay the claim is still held.
    expect(await h.planner.planRun(window, new Date(START))).toBeUndefined();
    h.clock.advance(61_000);
    const resumed = await h.planner.planRun(window, new Date(START));
    expect(resumed?.run).toMatchObject({ id: stuck.id, status: 'running', selected: stuck.selected, holdout: stuck.holdout });
    expect(resumed?.enqueued).toBe(stuck.chunksTotal);
    const jobs = await h.queue.getJobs(['prioritized', 'waiting']);
    const users = jobs.flatMap((job) => job.data.userIds);
    expect(users.length).toBe(stuck.selected + stuck.holdout);
    expect(new Set(users).size).toBe(users.length);
    expect((await h.pool.query('SELECT count(*)::int AS n FROM predictions')).rows[0].n).toBe(300);
  });

  it('a planner overtaken while scoring (its claim expired and was taken over) records nothing twice', async () => {
    const { h, window } = await setup('threshold:0.3');
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let scoring!: () => void;
    const scoringStarted = new Promise<void>((resolve) => (scoring = resolve));
    const slowScorer = {
      version: h.scorer.version,
      async scoreKnownUsers(windowStart: Date, horizonMs: number) {
        scoring();
        await released;
        return h.scorer.scoreKnownUsers(windowStart, horizonMs);
      },
    };
    const slow = createPlanner({ pool: h.pool, queue: h.queue, scorer: slowScorer, clock: h.clock, log: silentLog, itemsPerUser: 10, planLeaseMs: 60_000 });
    const overtaken = slow.planRun(window, new Date(START));
    await scoringStarted;
    h.clock.advance(61_000);
    const fast = createPlanner({ pool: h.pool, queue: h.queue, scorer: h.scorer, clock: h.clock, log: silentLog, itemsPerUser: 10, planLeaseMs: 60_000 });
    const planned = await fast.planRun(window, new Date(START));
    expect(planned?.run.status).toBe('running');
    release();
    // The slow planner finds the run planned: it only enqueues what is not done (the same job ids).
    const late = await overtaken;
    expect(late?.run).toMatchObject({ id: planned!.run.id, status: 'running', selected: planned!.run.selected });
    expect((await h.pool.query('SELECT count(*)::int AS n FROM predictions')).rows[0].n).toBe(300);
    const jobs = await h.queue.getJobs(['prioritized', 'waiting']);
    expect(jobs.length).toBe(planned!.run.chunksTotal);
  });

  it('sweep: re-enqueues a chunk whose job Redis lost, fails a chunk whose job failed for good, and closes expired runs', async () => {
    const { h, window } = await setup('budget:120', { holdoutRate: 0 });
    const run = (await h.planner.planRun(window, new Date(START)))!.run;
    expect(run.chunksTotal).toBe(3);
    await h.queue.remove(chunkJobId(run.id, 1));
    const job2 = (await h.queue.getJob(chunkJobId(run.id, 2)))!;
    // Fail chunk 2 for good, the way BullMQ does after too many stalls.
    const token = 'test-token';
    const worker = new Worker('precompute', null, { connection: h.redis, prefix: h.prefix });
    let active;
    while ((active = await worker.getNextJob(token)) && active.id !== job2.id) await active.moveToDelayed(Date.now() + 60_000, token);
    await active!.moveToFailed(new UnrecoverableError('job stalled more than allowable limit'), token, false);
    await worker.close();

    const swept = await h.planner.sweep();
    expect(swept).toEqual({ requeued: 1, failed: 1 });
    expect(await h.queue.getJobState(chunkJobId(run.id, 1))).toMatch(/waiting|prioritized/);
    expect((await h.queue.getJob(chunkJobId(run.id, 1)))!.data.userIds).toHaveLength(40);
    expect(await h.runs.get(run.id)).toMatchObject({ status: 'running', failed: 40, chunksDone: 1 });
    // A second sweep finds nothing new.
    expect(await h.planner.sweep()).toEqual({ requeued: 0, failed: 0 });

    h.clock.set(START + DAY);
    expect(await h.planner.sweep()).toEqual({ requeued: 0, failed: 2 });
    expect(await h.runs.get(run.id)).toMatchObject({ status: 'failed', failed: 120, precomputed: 0, chunksDone: 3, finishedAt: new Date(START + DAY) });
  });
});
