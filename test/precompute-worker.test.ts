import { afterEach, describe, expect, it } from 'vitest';
import { batchSetId, storedItems } from '../src/sets/set.ts';
import { createPlannerHarness, DAY, recencyPopulation, type PlannerHarness } from './fixtures/precompute-harness.ts';
import { createTestRecommender, itemsFor } from './fixtures/precompute-recommender.ts';

const START = Date.parse('2024-03-01T00:00:00Z');

describe('precompute worker', () => {
  let h: PlannerHarness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  async function planned(policy = 'budget:100', extra: { chunkSize?: number; holdoutRate?: number; attempts?: number } = {}) {
    h = await createPlannerHarness({ start: START, jobOptions: { attempts: extra.attempts ?? 5 } });
    await h.seedLogins(recencyPopulation(START, 150));
    const { window } = await h.windows.set('nightly', { cron: '0 0 * * *', policy, chunkSize: extra.chunkSize ?? 25, holdoutRate: extra.holdoutRate ?? 0.1 });
    const plan = await h.planner.planRun(window, new Date(START));
    return { h, run: plan!.run };
  }

  it('computes every chunk, writes the sets to Postgres and Redis, and completes the run', async () => {
    const { h, run } = await planned();
    const { recommender, state } = createTestRecommender();
    h.clock.set(START + 60_000);
    h.startWorker(recommender);
    const done = await h.waitForRun(run.id);

    const total = run.selected + run.holdout;
    expect(done).toMatchObject({ status: 'completed', precomputed: total, failed: 0, chunksDone: run.chunksTotal, finishedAt: new Date(START + 60_000) });
    expect(done.computeMs).toBeGreaterThanOrEqual(0);
    // One recommender call per chunk.
    expect(state.calls).toBe(run.chunksTotal);

    const sets = await h.pool.query<{ id: string; user_id: string; source: string; holdout: boolean; computed_at: Date; expires_at: Date; item_ids: string[]; scores: number[]; model_version: string }>(
      'SELECT id, user_id, source, holdout, computed_at, expires_at, item_ids, scores, model_version FROM recommendations WHERE run_id = $1',
      [run.id],
    );
    expect(sets.rowCount).toBe(total);
    const predicted = await h.pool.query<{ user_id: string; holdout: boolean }>('SELECT user_id, holdout FROM predictions WHERE run_id = $1 AND (selected OR holdout)', [run.id]);
    expect(new Set(sets.rows.map((s) => s.user_id))).toEqual(new Set(predicted.rows.map((p) => p.user_id)));
    const holdout = new Set(predicted.rows.filter((p) => p.holdout).map((p) => p.user_id));
    for (const set of sets.rows) {
      expect(set).toMatchObject({ id: batchSetId(run.id, set.user_id), source: 'batch', holdout: holdout.has(set.user_id), model_version: 'test-v1' });
      expect(set.expires_at.toISOString()).toBe(new Date(START + DAY).toISOString());
      // Scores are stored with 6 significant digits (a real), and read back as written.
      const expected = storedItems(itemsFor(set.user_id, 10));
      expect(set.item_ids).toEqual(expected.itemIds);
      expect(set.scores).toEqual(expected.scores);
    }

    // The cache holds each set, TTL = remaining freshness (Redis TTL is real time: ≈ 24 h − 1 min).
    const someone = sets.rows[0]!.user_id;
    const cached = await h.cache.get(someone);
    expect(cached).toMatchObject({ id: batchSetId(run.id, someone), source: 'batch', runId: run.id, expiresAt: new Date(START + DAY), ...storedItems(itemsFor(someone, 10)) });
    const ttl = await h.redis.pttl(h.cache.key(someone));
    expect(ttl).toBeGreaterThan(DAY - 60_000 - 5_000);
    expect(ttl).toBeLessThanOrEqual(DAY - 60_000);
    const cachedCount = (await h.redis.keys(`${h.cachePrefix}rec:*`)).length;
    expect(cachedCount).toBe(total);
  });

  it('is idempotent: a retried or duplicated chunk writes no second set and counts nothing twice', async () => {
    const { h, run } = await planned('budget:50', { chunkSize: 50, holdoutRate: 0 });
    const { recommender } = createTestRecommender({ delayMs: 50 });
    const worker = h.startWorker(recommender, { workerOptions: { autorun: false } });
    const job = (await h.queue.getJobs(['prioritized', 'waiting']))[0]!;
    expect(job.data.userIds).toHaveLength(50);

    // Two copies of the chunk at once (a stalled job redelivered while the first still runs) …
    const results = await Promise.all([worker.process(job), worker.process(job)]);
    expect(results.filter((r) => !r.skipped)).toHaveLength(1);
    // … and a retry after completion.
    expect(await worker.process(job)).toMatchObject({ skipped: true });

    expect((await h.pool.query('SELECT count(*)::int AS n FROM recommendations')).rows[0].n).toBe(50);
    expect(await h.runs.get(run.id)).toMatchObject({ status: 'completed', precomputed: 50, failed: 0, chunksDone: 1 });
  });

  it('retries a failing chunk with backoff and then succeeds', async () => {
    const { h, run } = await planned('budget:20', { chunkSize: 20, holdoutRate: 0 });
    const { recommender, state } = createTestRecommender({ failFirst: 2 });
    h.startWorker(recommender);
    const done = await h.waitForRun(run.id);
    expect(done).toMatchObject({ status: 'completed', precomputed: 20, failed: 0 });
    expect(state.calls).toBe(3);
    // The run completes in Postgres a moment before BullMQ moves the job to `completed`.
    await expect.poll(async () => (await h.queue.getJobs(['completed'])).length).toBe(1);
    const job = (await h.queue.getJobs(['completed']))[0]!;
    expect(job.attemptsStarted).toBe(3);
  });

  it('records a chunk that fails its last attempt, so the run still completes, with its failures', async () => {
    const { h, run } = await planned('budget:40', { chunkSize: 20, holdoutRate: 0, attempts: 2 });
    // Every attempt at the first chunk (the most likely users) fails.
    const { recommender } = createTestRecommender({ failUsers: ['u0001'] });
    h.startWorker(recommender, { concurrency: 1 });
    const done = await h.waitForRun(run.id);
    expect(done).toMatchObject({ status: 'completed', precomputed: 20, failed: 20, chunksDone: 2 });
    const chunks = await h.pool.query('SELECT chunk_no, precomputed, failed, error FROM batch_chunks WHERE run_id = $1 ORDER BY chunk_no', [run.id]);
    expect(chunks.rows).toEqual([
      { chunk_no: 0, precomputed: 0, failed: 20, error: 'test recommender failure' },
      { chunk_no: 1, precomputed: 20, failed: 0, error: null },
    ]);
    expect(await h.queue.getJobCountByTypes('failed')).toBe(1);
  });

  it('a run whose every chunk failed is failed; users missing from an answer count as failures', async () => {
    const { h, run } = await planned('budget:10', { chunkSize: 10, holdoutRate: 0, attempts: 1 });
    const failing = h.startWorker(createTestRecommender({ failAlways: true }).recommender);
    expect(await h.waitForRun(run.id)).toMatchObject({ status: 'failed', precomputed: 0, failed: 10 });
    await failing.close();

    const second = await h.planner.planRun((await h.windows.require('nightly'))!, new Date(START + 1_000));
    h.startWorker(createTestRecommender({ omit: ['u0001', 'u0002'] }).recommender);
    expect(await h.waitForRun(second!.run.id)).toMatchObject({ status: 'completed', precomputed: 8, failed: 2 });
  });

  it('does not compute a chunk whose sets would already be stale', async () => {
    const { h, run } = await planned('budget:10', { chunkSize: 10, holdoutRate: 0 });
    h.clock.set(START + DAY);
    const { recommender, state } = createTestRecommender();
    h.startWorker(recommender);
    expect(await h.waitForRun(run.id)).toMatchObject({ status: 'failed', failed: 10, precomputed: 0 });
    expect(state.calls).toBe(0);
  });

  it('graceful shutdown: close() waits for the active chunk, which is recorded', async () => {
    const { h, run } = await planned('budget:40', { chunkSize: 20, holdoutRate: 0 });
    const { recommender, state } = createTestRecommender({ delayMs: 600 });
    const worker = h.startWorker(recommender, { concurrency: 1 });
    await expect.poll(() => state.calls, { timeout: 5_000, interval: 20 }).toBe(1);
    await worker.close();
    // The chunk in progress finished; the other one was not started.
    expect(await h.runs.get(run.id)).toMatchObject({ status: 'running', chunksDone: 1, precomputed: 20 });
    expect(state.calls).toBe(1);
    expect(await h.queue.getJobCountByTypes('prioritized', 'waiting')).toBe(1);
  });
});
