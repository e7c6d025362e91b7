import { afterEach, describe, expect, it } from 'vitest';
import { createPlanner } from '../src/planner/planner.ts';
import { createScheduler } from '../src/planner/scheduler.ts';
import { enqueueRecordedChunks } from '../src/planner/chunk-jobs.ts';
import { chainedOffset, chainedSpan, computeOffset, PRIOR_WEIGHT } from '../src/planner/timing.ts';
import { dispatchSql } from '../src/planner/timing-sql.ts';
import { resolveWindow } from '../src/planner/windows.ts';
import { settingsFromFlags } from '../src/cli/commands/windows.ts';
import { isPrewarmError } from '../src/errors.ts';
import { silentLog } from './helpers.ts';
import { createScriptedRecommender } from './support/scripted-recommender.ts';
import { createPlannerHarness, DAY, HOUR, type PlannerHarness } from './fixtures/precompute-harness.ts';

const START = Date.parse('2024-03-01T00:00:00Z');
const uniform = new Float64Array(24).fill(1 / 24);

/** `days` daily logins at `hour`:30 UTC before START. */
function habit(hour: number, days: number): Date[] {
  return Array.from({ length: days }, (_v, d) => new Date(START - (d + 1) * DAY + hour * HOUR + 30 * 60_000));
}

describe('compute times from the hour-of-day habit', () => {
  it('a strong evening habit is computed in its slot; no history, or a flat one, at the occurrence', () => {
    const evening = new Float64Array(24);
    evening[20] = 40;
    const eveningPrior = new Float64Array(24);
    eveningPrior[20] = 1;
    expect(computeOffset(evening, eveningPrior, START, DAY, HOUR, 0.02)).toBe(20 * HOUR);
    // The same habit against a population that logs in all day: the prior's morning mass
    // (PRIOR_WEIGHT logins' worth) is a real chance of an early login, so earlier.
    const early = computeOffset(evening, uniform, START, DAY, HOUR, 0.02);
    expect(early).toBeLessThan(20 * HOUR);
    expect(early).toBeGreaterThan(0);
    expect(computeOffset(new Float64Array(24), uniform, START, DAY, HOUR, 0.02)).toBe(0);
    expect(computeOffset(new Float64Array(24).fill(3), uniform, START, DAY, HOUR, 0.02)).toBe(0);
    // Six-hour slots fall on the slot starts; risk 0 never passes a login hour.
    expect(computeOffset(evening, eveningPrior, START, DAY, 6 * HOUR, 0.02)).toBe(18 * HOUR);
    expect(computeOffset(evening, uniform, START, DAY, HOUR, 0)).toBe(0);
    expect(PRIOR_WEIGHT).toBeGreaterThan(0);
  });

  it('never beyond the mass the risk allows, for any habit (property over random histograms)', () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648);
    for (let trial = 0; trial < 500; trial++) {
      const hours = Float64Array.from({ length: 24 }, () => (random() < 0.3 ? random() * 10 : 0));
      const prior = Float64Array.from({ length: 24 }, () => random());
      const sum = prior.reduce((a, b) => a + b, 0);
      for (let h = 0; h < 24; h++) prior[h] = (prior[h] as number) / sum;
      const risk = random() * 0.2;
      const offset = computeOffset(hours, prior, START, DAY, HOUR, risk);
      expect(offset % HOUR).toBe(0);
      const own = hours.reduce((a, b) => a + b, 0);
      const w = (h: number) => ((own > 0 ? (hours[h] as number) : 0) + PRIOR_WEIGHT * (prior[h] as number)) / (own + PRIOR_WEIGHT);
      let before = 0;
      for (let h = 0; h < offset / HOUR; h++) before += w(h);
      expect(before).toBeLessThanOrEqual(risk + 1e-9);
      // …and the next slot would pass it.
      if (offset / HOUR < 23) expect(before + w(offset / HOUR)).toBeGreaterThan(risk - 1e-9);
    }
  });
});

describe('the span of a chained compute time: half of nightly’s median age, from the population’s hours', () => {
  it('is half the median offset of the population’s logins from the occurrence, at least one slot', () => {
    // Logins all day: nightly's median serve is 12 h after the occurrence, so a 6 h span.
    expect(chainedSpan(uniform, START, HOUR)).toBe(6 * HOUR);
    // Everyone at 20:00–21:00: the median login at 20:30, 10.25 h.
    const evening = new Float64Array(24);
    evening[20] = 1;
    expect(chainedSpan(evening, START, HOUR)).toBe(10.25 * HOUR);
    // The same population, an occurrence at noon: 8.5 h to the median login.
    expect(chainedSpan(evening, START + 12 * HOUR, HOUR)).toBe(4.25 * HOUR);
    // Logins just after the occurrence: a quarter of an hour, but never shorter than a slot.
    const early = new Float64Array(24);
    early[0] = 1;
    expect(chainedSpan(early, START, HOUR)).toBe(HOUR);
    expect(chainedSpan(early, START, 15 * 60_000)).toBe(15 * 60_000);
  });

  it('splits the population’s logins after the occurrence in half at twice the span (property, fixed seed)', () => {
    let seed = 23;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648);
    for (let trial = 0; trial < 300; trial++) {
      const prior = Float64Array.from({ length: 24 }, () => (random() < 0.5 ? random() : 0));
      prior[Math.floor(random() * 24)] = 1;
      const sum = prior.reduce((a, b) => a + b, 0);
      for (let h = 0; h < 24; h++) prior[h] = (prior[h] as number) / sum;
      const startMs = START + Math.floor(random() * 24) * HOUR;
      const span = chainedSpan(prior, startMs, 60_000);
      // Mass of the population's day before offset 2·span, counting the partial hour in proportion.
      const median = 2 * span;
      let before = 0;
      for (let k = 0; k * HOUR < median; k++) before += (prior[(startMs / HOUR + k) % 24] as number) * Math.min(1, (median - k * HOUR) / HOUR);
      expect(before).toBeCloseTo(0.5, 9);
    }
  });
});

describe('the timing setting of a window', () => {
  const refusal = (make: () => unknown): string => {
    try {
      make();
    } catch (error) {
      expect(isPrewarmError(error, 'PREWARM_ERR_BAD_WINDOW')).toBe(true);
      return (error as Error).message;
    }
    throw new Error('not refused');
  };

  it('defaults to midnight, keeps what is not changed, and refuses what cannot time anything', () => {
    const nightly = resolveWindow('nightly', { cron: '0 0 * * *' });
    expect(nightly.timing).toEqual({ mode: 'midnight', slotMs: HOUR, risk: 0.02 });
    const timed = resolveWindow('nightly', { timing: 'predicted', timingSlot: '6h', timingRisk: 0.05 }, nightly);
    expect(timed.timing).toEqual({ mode: 'predicted', slotMs: 6 * HOUR, risk: 0.05 });
    expect(resolveWindow('nightly', { policy: 'budget:10' }, timed).timing).toEqual(timed.timing);
    expect(refusal(() => resolveWindow('w', { cron: '0 * * * *', horizon: '1h', timing: 'predicted' }))).toMatch(/timing slot \(1h\) must be shorter than the horizon \(1h\)/);
    expect(refusal(() => resolveWindow('w', { cron: '0 0 * * *', timing: 'predicted', timingRisk: 0.9 }))).toMatch(/timing risk must be a fraction from 0 to 0.5/);
    expect(refusal(() => resolveWindow('w', { cron: '0 0 * * *', timingSlot: '0s' }))).toMatch(/timing slot/);
    expect(refusal(() => settingsFromFlags({ timing: 'sometimes' }))).toMatch(/--timing must be "midnight" or "predicted"/);
    expect(settingsFromFlags({ timing: 'predicted', timingSlot: '30m', timingRisk: '0.1' })).toEqual({ timing: 'predicted', timingSlot: '30m', timingRisk: 0.1 });
  });
});

describe('timed precompute on real Postgres and Redis', () => {
  let h: PlannerHarness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  /** Evening and morning regulars; the population logs in at those two hours only. */
  async function setup() {
    h = await createPlannerHarness({ start: START });
    const logins: Record<string, Date[]> = {};
    for (let i = 0; i < 20; i++) logins[`evening${i}`] = habit(20, 40);
    for (let i = 0; i < 2; i++) logins[`morning${i}`] = habit(7, 40);
    await h.seedLogins(logins);
    const { window } = await h.windows.set('timed', { cron: '0 0 * * *', policy: 'all', chunkSize: 5, holdoutRate: 0, timing: 'predicted', timingSlot: '1h', timingRisk: 0.02 });
    return { h, window, users: Object.keys(logins) };
  }

  async function chunks(harness: PlannerHarness, runId: number) {
    return (
      await harness.pool.query<{ chunk_no: number; users: number; due_at: Date; dispatched_at: Date | null; done_at: Date | null }>(
        'SELECT chunk_no, users, due_at, dispatched_at, done_at FROM batch_chunks WHERE run_id = $1 ORDER BY chunk_no',
        [runId],
      )
    ).rows;
  }

  async function setsOf(harness: PlannerHarness, runId: number) {
    const rows = (await harness.pool.query<{ user_id: string; computed_at: Date; expires_at: Date }>('SELECT user_id, computed_at, expires_at FROM recommendations WHERE run_id = $1', [runId])).rows;
    return new Map(rows.map((row) => [row.user_id, row]));
  }

  it('a user with an evening habit is computed in the evening slot, not at midnight; the run completes with every set', async () => {
    const { h, window, users } = await setup();
    expect(window.timing).toEqual({ mode: 'predicted', slotMs: HOUR, risk: 0.02 });
    const planned = await h.planner.planRun(window, new Date(START));
    const run = planned!.run;
    expect(run).toMatchObject({ selected: users.length, status: 'running' });
    // Chunks are cut by compute time: the mornings' at 07:00, the evenings' at 20:00; nothing is due at midnight.
    const cut = await chunks(h, run.id);
    expect(cut.reduce((n, c) => n + c.users, 0)).toBe(users.length);
    expect(new Set(cut.map((c) => c.due_at.toISOString()))).toEqual(new Set([new Date(START + 7 * HOUR).toISOString(), new Date(START + 20 * HOUR).toISOString()]));
    expect(run.chunksTotal).toBe(cut.length);
    expect(planned!.enqueued).toBe(0);
    expect(await h.queue.getJobCounts('prioritized', 'waiting', 'delayed')).toMatchObject({ prioritized: 0, waiting: 0, delayed: 0 });
    const predictions = (await h.pool.query<{ user_id: string; chunk_no: number }>('SELECT user_id, chunk_no FROM predictions WHERE run_id = $1', [run.id])).rows;
    const dueOf = new Map(cut.map((c) => [c.chunk_no, c.due_at.getTime()]));
    for (const p of predictions) expect(dueOf.get(p.chunk_no)).toBe(START + (p.user_id.startsWith('morning') ? 7 : 20) * HOUR);

    const worker = h.startWorker(createScriptedRecommender({}).recommender);
    // The sweep leaves held chunks alone: no job is expected for them before their time.
    h.clock.set(START + HOUR);
    expect(await h.planner.sweep()).toEqual({ requeued: 0, failed: 0 });
    await h.scheduler.tick();
    expect((await chunks(h, run.id)).every((c) => c.dispatched_at === null)).toBe(true);

    h.clock.set(START + 7 * HOUR);
    await h.scheduler.tick();
    await waitFor(async () => (await setsOf(h, run.id)).size === 2);
    h.clock.set(START + 20 * HOUR);
    await h.scheduler.tick();
    const done = await h.waitForRun(run.id);
    expect(done).toMatchObject({ status: 'completed', precomputed: users.length, failed: 0, chunksDone: cut.length });
    const sets = await setsOf(h, run.id);
    expect(sets.size).toBe(users.length);
    for (const [userId, set] of sets) {
      expect(set.computed_at.getTime()).toBe(START + (userId.startsWith('morning') ? 7 : 20) * HOUR);
      // A daily window's timed sets chain: each lives until the next day's end, superseded by the user's next set.
      expect(set.expires_at.getTime()).toBe(START + 2 * DAY);
    }
    await worker.close();
  });

  it('survives a restart: a fresh planner and scheduler dispatch from Postgres, and a release lost before its enqueue is swept', async () => {
    const { h, window } = await setup();
    const run = (await h.planner.planRun(window, new Date(START)))!.run;
    // The first scheduler process is gone; a new one (new planner, same database and queue) takes over.
    const planner = createPlanner({ pool: h.pool, queue: h.queue, scorer: h.scorer, clock: h.clock, log: silentLog, itemsPerUser: 10 });
    const scheduler = createScheduler({ windows: h.windows, planner, runs: h.runs, clock: h.clock, log: silentLog });
    h.clock.set(START + 7 * HOUR);
    expect(await scheduler.tick()).toEqual([{ window: 'timed', action: 'claimed', occurrence: new Date(START) }]);
    const worker = h.startWorker(createScriptedRecommender({}).recommender);
    await waitFor(async () => (await setsOf(h, run.id)).size === 2);

    // A dispatcher that released the evening chunks and died before enqueueing them.
    h.clock.set(START + 20 * HOUR);
    const released = (await h.pool.query(dispatchSql.release(h.clock.now(), run.id))).rows;
    expect(released.length).toBeGreaterThan(0);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await setsOf(h, run.id)).size).toBe(2);
    // Nothing is left for a tick to release; the sweep finds the released chunks without a job.
    expect(await scheduler.dispatch()).toBe(0);
    expect((await planner.sweep()).requeued).toBe(released.length);
    const done = await h.waitForRun(run.id);
    expect(done).toMatchObject({ status: 'completed', precomputed: 22, failed: 0 });
    // Swept or dispatched, a daily window's timed sets chain to the next day's end.
    const expiries = new Set([...(await setsOf(h, run.id)).values()].map((set) => set.expires_at.getTime()));
    expect([...expiries]).toEqual([START + 2 * DAY]);
    await worker.close();
  });

  it('no path enqueues a held chunk: a shard select, a resume or the sweep before its time', async () => {
    const { h, window } = await setup();
    const run = (await h.planner.planRun(window, new Date(START)))!.run;
    const recorded = { id: run.id, window: 'timed', scheduledFor: run.scheduledFor, expiresAt: run.expiresAt, shards: 1 };
    expect(await enqueueRecordedChunks({ pool: h.pool, queue: h.queue }, recorded, { windowPriority: 0, itemsPerUser: 10 })).toBe(0);
    expect(await enqueueRecordedChunks({ pool: h.pool, queue: h.queue }, recorded, { windowPriority: 0, itemsPerUser: 10, shard: { index: 0, count: 1 } })).toBe(0);
    // A replica planning the same occurrence again finds it claimed and enqueues nothing.
    expect(await h.planner.planRun(window, new Date(START))).toBeUndefined();
    expect(await h.queue.getJobCounts('prioritized', 'waiting')).toMatchObject({ prioritized: 0, waiting: 0 });
    // Past the window's end the held chunks are failed by the sweep, so the run terminates.
    h.clock.set(START + DAY);
    expect((await h.planner.sweep()).failed).toBe((await chunks(h, run.id)).length);
    expect(await h.runs.get(run.id)).toMatchObject({ status: 'failed', precomputed: 0, failed: 22 });
  });

  /** Compute times of a run's users, by user (NaN: an untimed run's, at the occurrence). */
  async function dueOf(harness: PlannerHarness, runId: number): Promise<Map<string, number>> {
    const rows = (
      await harness.pool.query<{ user_id: string; due_at: Date | null }>(
        'SELECT p.user_id, c.due_at FROM predictions p JOIN batch_chunks c ON c.run_id = p.run_id AND c.chunk_no = p.chunk_no WHERE p.run_id = $1',
        [runId],
      )
    ).rows;
    return new Map(rows.map((row) => [row.user_id, row.due_at?.getTime() ?? Number.NaN]));
  }

  /** Ten evening regulars and `owl`, whose logins fall at 00:30 as often as at 20:30. */
  async function owlSetup(timed: boolean) {
    h = await createPlannerHarness({ start: START });
    const logins: Record<string, Date[]> = { owl: [...habit(0, 10), ...habit(20, 10)] };
    for (let i = 0; i < 10; i++) logins[`evening${i}`] = habit(20, 30);
    await h.seedLogins(logins);
    const settings = { cron: '0 0 * * *', policy: 'all', chunkSize: 5, holdoutRate: 0 } as const;
    const { window } = await h.windows.set('w', timed ? { ...settings, timing: 'predicted', timingSlot: '1h', timingRisk: 0.02 } : settings);
    return { h, window, worker: h.startWorker(createScriptedRecommender({}).recommender) };
  }

  /** Runs an occurrence's plan and every compute time of it, to completion. */
  async function runDay(harness: PlannerHarness, window: Parameters<PlannerHarness['planner']['planRun']>[0], dayMs: number) {
    harness.clock.set(dayMs);
    const run = (await harness.planner.planRun(window, new Date(dayMs)))!.run;
    const due = await dueOf(harness, run.id);
    for (const at of [...new Set(due.values())].filter(Number.isFinite).sort((a, b) => a - b)) {
      harness.clock.set(at);
      await harness.scheduler.tick();
    }
    await harness.waitForRun(run.id);
    return { run, due };
  }

  it('after a timed run every user is placed for young serves, a user without a live set too; a first timed run keeps the risk rule', async () => {
    const { h, window, worker } = await owlSetup(true);
    // Day 1, the window's first timed run: nobody has a set to fall back on, so the risk rule puts
    // `owl` (a login at 00:30 is as likely as one at 20:30) at the occurrence.
    const day1 = await runDay(h, window, START);
    expect(day1.due.get('owl')).toBe(START);
    expect(day1.due.get('evening0')).toBe(START + 20 * HOUR);
    // `owl` lost its day-1 set (as a user new to the selection has none): day 2 follows a timed
    // run, so it is placed for young serves all the same — the 10.25 h from 20:00 hold both its
    // hours (the population's median login is at 20:30) — not at the occurrence.
    await h.pool.query(`DELETE FROM recommendations WHERE user_id = 'owl'`);
    const day2 = await runDay(h, window, START + DAY);
    expect(day2.due.get('owl')).toBe(START + DAY + 20 * HOUR);
    expect(day2.due.get('evening0')).toBe(START + DAY + 20 * HOUR);
    const span = 10.25 * HOUR;
    const hours = new Float64Array(24);
    hours[0] = 1;
    hours[20] = 1;
    const prior = new Float64Array(24);
    prior[20] = 1;
    expect(chainedOffset(hours, prior, START + DAY, HOUR, span)).toBe(20 * HOUR);
    expect(chainedSpan(prior, START + DAY, HOUR)).toBe(span);
    await worker.close();
  }, 60_000);

  it('a window switched to timed after untimed runs starts with the risk rule (their sets do not chain)', async () => {
    const { h, window, worker } = await owlSetup(false);
    await runDay(h, window, START);
    const { window: timed } = await h.windows.set('w', { timing: 'predicted', timingSlot: '1h', timingRisk: 0.02 });
    const day2 = await runDay(h, timed, START + DAY);
    expect(day2.due.get('owl')).toBe(START + DAY);
    expect(day2.due.get('evening0')).toBe(START + DAY + 20 * HOUR);
    // Its next run follows a timed one: `owl` is placed for young serves.
    const day3 = await runDay(h, timed, START + 2 * DAY);
    expect(day3.due.get('owl')).toBe(START + 2 * DAY + 20 * HOUR);
    await worker.close();
  }, 60_000);

  it('an untimed window is unchanged: every chunk enqueued at the occurrence, no compute time recorded', async () => {
    const { h } = await setup();
    const { window } = await h.windows.set('nightly', { cron: '0 0 * * *', policy: 'all', chunkSize: 5, holdoutRate: 0 });
    expect(window.timing.mode).toBe('midnight');
    const planned = (await h.planner.planRun(window, new Date(START)))!;
    expect(planned.enqueued).toBe(planned.run.chunksTotal);
    expect((await chunks(h, planned.run.id)).every((c) => c.due_at === null)).toBe(true);
  });
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
