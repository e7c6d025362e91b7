import { afterEach, describe, expect, it } from 'vitest';
import type { Worker } from 'bullmq';
import { chunkJobId, chunkPriority } from '../src/planner/chunk-jobs.ts';
import { createPlanner, type PlannerDeps } from '../src/planner/planner.ts';
import { parsePolicy, selectUsers } from '../src/planner/policy.ts';
import { streamingScorer } from '../src/planner/scorer.ts';
import { executeShardPhase, type ShardJobData } from '../src/planner/shard-plan.ts';
import { MAX_PRIORITY } from '../src/planner/windows.ts';
import { createPlanShardWorker } from '../src/precompute/plan-shard-worker.ts';
import { createPlanShardQueue } from '../src/precompute/queue.ts';
import { silentLog } from './helpers.ts';
import { createPlannerHarness, DAY, HOUR, recencyPopulation, type PlannerHarness } from './fixtures/precompute-harness.ts';

const START = Date.parse('2024-03-01T00:00:00Z');

describe('sharded, streaming planning', () => {
  let h: PlannerHarness | undefined;
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await h?.close();
    h = undefined;
  });

  /** 300 users with distinct propensities and 60 more that all tie (identical activity). */
  async function setup() {
    h = await createPlannerHarness({ start: START });
    await h.seedLogins(recencyPopulation(START, 300));
    const tied: Record<string, Date[]> = {};
    for (let i = 0; i < 60; i++) tied[`t${String(i).padStart(3, '0')}`] = [new Date(START - 30 * HOUR), new Date(START - 3 * DAY)];
    await h.seedLogins(tied);
    return h;
  }

  function planner(h: PlannerHarness, extra: Partial<PlannerDeps> = {}) {
    return createPlanner({ pool: h.pool, queue: h.queue, scorer: h.scorer, clock: h.clock, log: silentLog, itemsPerUser: 10, ...extra });
  }

  async function selectedOf(h: PlannerHarness, runId: number): Promise<string[]> {
    const rows = await h.pool.query<{ user_id: string }>('SELECT user_id FROM predictions WHERE run_id = $1 AND selected ORDER BY user_id', [runId]);
    return rows.rows.map((r) => r.user_id);
  }

  it.each(['threshold:0.3', 'budget:100', 'budget:200', 'coverage:0.8', 'coverage:0.95', 'waste:0.3', 'recent:1', 'cost:4', 'all', 'none'])(
    '%s: 1 shard, 3 shards and 7 shards select exactly what selectUsers selects',
    async (spec) => {
      const h = await setup();
      const candidates = await h.scorer.scoreKnownUsers(new Date(START), DAY);
      const expected = selectUsers(candidates, parsePolicy(spec), { windowStart: START, windowMs: DAY });
      const expectedIds = expected.selected.map((c) => c.userId).sort();
      for (const shards of [1, 3, 7]) {
        const { window } = await h.windows.set(`w${shards}`, { cron: '0 0 * * *', policy: spec, chunkSize: 25, holdoutRate: 0.05 });
        const p = planner(h, { shards });
        const dry = await p.dryRun(window);
        expect(dry).toMatchObject({ candidates: 360, selected: expected.selected.length });
        expect(dry.expectedCoverage).toBeCloseTo(expected.expectedCoverage, 9);
        expect(dry.expectedWaste).toBeCloseTo(expected.expectedWaste, 9);
        const run = (await p.planRun(window, new Date(START)))!.run;
        expect(run).toMatchObject({ candidates: 360, selected: expected.selected.length });
        expect(await selectedOf(h, run.id)).toEqual(expectedIds);
        // Chunk numbers unique per run; every precomputed user in exactly one chunk.
        const chunks = await h.pool.query<{ chunk_no: number; users: number }>('SELECT chunk_no, users FROM batch_chunks WHERE run_id = $1', [run.id]);
        expect(chunks.rows.reduce((n, r) => n + r.users, 0)).toBe(run.selected + run.holdout);
        expect(chunks.rowCount).toBe(run.chunksTotal);
      }
    },
  );

  it('budget cut inside 60 users tied on p: ties broken by user id, as selectUsers does, with 2 shards', async () => {
    const h = await setup();
    const candidates = await h.scorer.scoreKnownUsers(new Date(START), DAY);
    const tiedP = candidates.find((c) => c.userId === 't000')!.p;
    const above = candidates.filter((c) => c.p > tiedP).length;
    const spec = `budget:${above + 17}`;
    const expected = selectUsers(candidates, parsePolicy(spec), { windowStart: START, windowMs: DAY }).selected.map((c) => c.userId).sort();
    const { window } = await h.windows.set('tied', { cron: '0 0 * * *', policy: spec, chunkSize: 25, holdoutRate: 0 });
    const { BOUNDARY_LIMIT } = await import('../src/planner/summary.ts');
    expect(BOUNDARY_LIMIT).toBeGreaterThan(60); // the tie is collected at the deepest zoom at the latest
    const run = (await planner(h, { shards: 2 }).planRun(window, new Date(START)))!.run;
    const selected = await selectedOf(h, run.id);
    expect(selected).toEqual(expected);
    expect(selected.filter((id) => id.startsWith('t'))).toEqual(Array.from({ length: 17 }, (_v, i) => `t${String(i).padStart(3, '0')}`));
  });

  it('bounded writes: predictions keep selected and holdout users and a weighted sample of the others; calibration_by_decile weighs it', async () => {
    const h = await setup();
    const { window } = await h.windows.set('sampled', { cron: '0 0 * * *', policy: 'budget:40', chunkSize: 25, holdoutRate: 0.1 });
    const run = (await planner(h, { unselectedSample: 50, shards: 2 }).planRun(window, new Date(START)))!.run;
    const rows = await h.pool.query<{ selected: boolean; holdout: boolean; weight: number; chunk_no: number | null }>(
      'SELECT selected, holdout, weight, chunk_no FROM predictions WHERE run_id = $1',
      [run.id],
    );
    const stats = (await h.pool.query('SELECT prediction_sample_rate AS rate, predictions_written AS written FROM batch_runs WHERE id = $1', [run.id])).rows[0];
    expect(stats.rate).toBeCloseTo(50 / (360 - 40), 9);
    expect(Number(stats.written)).toBe(rows.rowCount);
    expect(rows.rows.filter((r) => r.selected)).toHaveLength(40);
    expect(rows.rows.filter((r) => r.holdout)).toHaveLength(run.holdout);
    const sampled = rows.rows.filter((r) => !r.selected && !r.holdout);
    expect(sampled.length).toBeGreaterThan(15);
    expect(sampled.length).toBeLessThan(90);
    expect(rows.rowCount).toBeLessThan(360);
    for (const r of sampled) {
      expect(r.weight).toBeCloseTo(1 / stats.rate, 3);
      expect(r.chunk_no).toBeNull();
    }
    for (const r of rows.rows.filter((r) => r.selected || r.holdout)) expect(r.weight).toBe(1);

    // The view counts a sampled row as the users it stands for (the run's window is long over).
    const view = await h.pool.query<{ predictions: string; mean_predicted: number }>('SELECT predictions, mean_predicted FROM calibration_by_decile ORDER BY decile');
    const weighted = rows.rows.reduce((n, r) => n + r.weight, 0);
    expect(view.rows.reduce((n, r) => n + Number(r.predictions), 0)).toBe(Math.round(weighted));
    expect(weighted).toBeGreaterThan(360 * 0.6);
    expect(weighted).toBeLessThan(360 * 1.4);
  });

  it('calibration_by_decile over complete predictions: deciles of every scored user, as before', async () => {
    const h = await setup();
    const { window } = await h.windows.set('full', { cron: '0 0 * * *', policy: 'threshold:0.3', chunkSize: 25, holdoutRate: 0.1 });
    const run = (await planner(h).planRun(window, new Date(START)))!.run;
    const scores = (await h.pool.query<{ p: number }>('SELECT p FROM predictions WHERE run_id = $1 ORDER BY p, user_id', [run.id])).rows.map((r) => r.p);
    expect(scores).toHaveLength(360);
    const view = await h.pool.query<{ decile: number; predictions: string; mean_predicted: number }>('SELECT decile, predictions, mean_predicted FROM calibration_by_decile ORDER BY decile');
    expect(view.rows.map((r) => Number(r.predictions))).toEqual(Array(10).fill(36));
    view.rows.forEach((r, i) => {
      const slice = scores.slice(i * 36, (i + 1) * 36);
      expect(r.mean_predicted).toBeCloseTo(slice.reduce((a, b) => a + b, 0) / 36, 5);
    });
  });

  it('on the plan-shard queue, two workers score the shards; the selection is the single-process one; a duplicated shard job writes nothing twice', async () => {
    const h = await setup();
    const shardQueue = createPlanShardQueue({ connection: h.redis, prefix: h.prefix, log: silentLog });
    closers.push(() => shardQueue.close());
    const workers: Worker[] = [];
    for (let i = 0; i < 2; i++) {
      const worker = createPlanShardWorker({ connection: h.redis, prefix: h.prefix, pool: h.pool, scorer: h.scorer, chunkQueue: h.queue, clock: h.clock, log: silentLog });
      workers.push(worker);
      closers.push(() => worker.close());
    }
    for (const spec of ['coverage:0.8', 'budget:150', 'threshold:0.3', 'recent:2']) {
      const name = spec.replace(/[:.]/g, '-');
      const { window: single } = await h.windows.set(`${name}-single`, { cron: '0 0 * * *', policy: spec, chunkSize: 25, holdoutRate: 0.05 });
      const { window: sharded } = await h.windows.set(`${name}-sharded`, { cron: '0 0 * * *', policy: spec, chunkSize: 25, holdoutRate: 0.05 });
      const one = (await planner(h).planRun(single, new Date(START)))!.run;
      const many = (await planner(h, { shardQueue, shards: 4 }).planRun(sharded, new Date(START)))!;
      expect(many.run).toMatchObject({ status: 'running', selected: one.selected, candidates: 360 });
      expect(await selectedOf(h, many.run.id)).toEqual(await selectedOf(h, one.id));
      // Every chunk the shards recorded is on the precompute queue.
      const chunkNos = (await h.pool.query<{ chunk_no: number }>('SELECT chunk_no FROM batch_chunks WHERE run_id = $1', [many.run.id])).rows.map((r) => r.chunk_no);
      for (const chunkNo of chunkNos) expect(await h.queue.getJob(`run-${many.run.id}-chunk-${chunkNo}`)).toBeDefined();

      // A shard's select delivered again (a redelivery after a crash, a duplicate): a no-op.
      const before = (await h.pool.query('SELECT count(*)::int AS n FROM predictions WHERE run_id = $1', [many.run.id])).rows[0].n;
      const job = (await shardQueue.getJob(`plan-${many.run.id}-select-1`))!;
      const again = await executeShardPhase(
        { pool: h.pool, scorer: streamingScorer(h.scorer), chunkQueue: h.queue, log: silentLog, draw: () => 1, now: () => h.clock.now() },
        job.data,
      );
      expect(again).toEqual(job.returnvalue);
      expect((await h.pool.query('SELECT count(*)::int AS n FROM predictions WHERE run_id = $1', [many.run.id])).rows[0].n).toBe(before);
    }
  });

  it('sweep: a lost chunk of a sharded run comes back with its users and the priority of its rank in its shard', async () => {
    const h = await setup();
    const { window } = await h.windows.set('lost', { cron: '0 0 * * *', policy: 'budget:200', chunkSize: 20, holdoutRate: 0 });
    const run = (await planner(h, { shards: 3 }).planRun(window, new Date(START)))!.run;
    // Chunks are numbered rank · 3 + shard: chunk 2 is shard 2's first, chunk 7 shard 1's third.
    const lost = [2, 7];
    const original = new Map<number, { userIds: string[]; priority: number | undefined }>();
    for (const chunkNo of lost) {
      const job = (await h.queue.getJob(chunkJobId(run.id, chunkNo)))!;
      original.set(chunkNo, { userIds: job.data.userIds, priority: job.opts.priority });
      await job.remove();
    }
    expect(original.get(2)!.priority).toBe(chunkPriority(window.priority, 0));
    expect(original.get(7)!.priority).toBe(chunkPriority(window.priority, 2));
    expect(await planner(h).sweep()).toEqual({ requeued: 2, failed: 0 });
    for (const [chunkNo, rank] of [[2, 0], [7, 2]] as const) {
      const job = (await h.queue.getJob(chunkJobId(run.id, chunkNo)))!;
      expect(job.data.userIds).toEqual(original.get(chunkNo)!.userIds);
      // Ahead of new work, and in the order of its rank, not of its number.
      expect(job.opts.priority).toBe(chunkPriority(MAX_PRIORITY, rank));
    }
  });

  it('a malformed shard job is refused with a clear error and writes nothing', async () => {
    const h = await setup();
    const deps = { pool: h.pool, scorer: streamingScorer(h.scorer), chunkQueue: h.queue, log: silentLog, draw: () => 1, now: () => h.clock.now() };
    await expect(executeShardPhase(deps, { phase: 'select', shard: 3, shards: 2 })).rejects.toMatchObject({ code: 'PREWARM_ERR_BAD_INPUT', message: expect.stringContaining('malformed plan-shard job') });
    const good: ShardJobData = {
      runId: 1,
      phase: 'summarize',
      step: 'summarize-0',
      shard: 0,
      shards: 1,
      windowStart: new Date(START).toISOString(),
      horizonMs: DAY,
      version: h.scorer.version,
      policy: 'budget:-3',
      population: null,
    };
    await expect(executeShardPhase(deps, good)).rejects.toThrow(/malformed plan-shard job: policy "budget:-3"/);
    await expect(executeShardPhase(deps, { ...good, policy: 'budget:3', phase: 'select' })).rejects.toThrow(/a select job needs runId and select/);

    // Through a worker: failed for good (no retry), nothing recorded.
    const shardQueue = createPlanShardQueue({ connection: h.redis, prefix: h.prefix, log: silentLog });
    closers.push(() => shardQueue.close());
    const worker = createPlanShardWorker({ connection: h.redis, prefix: h.prefix, pool: h.pool, scorer: h.scorer, chunkQueue: h.queue, clock: h.clock, log: silentLog });
    closers.push(() => worker.close());
    const failed = new Promise<string>((resolve) => worker.on('failed', (_job, error) => resolve(error.message)));
    await shardQueue.add('bad', { nonsense: true } as unknown as ShardJobData);
    expect(await failed).toMatch(/malformed plan-shard job/);
    for (const table of ['predictions', 'plan_shards', 'batch_chunks']) {
      expect((await h.pool.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n).toBe(0);
    }
  });
});
