import { Redis } from 'ioredis';
import nodeCron from 'node-cron';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock, VirtualClock } from '../src/clock.ts';
import { createPool } from '../src/db/pool.ts';
import { createCronDriver } from '../src/planner/cron-driver.ts';
import { createPlanner } from '../src/planner/planner.ts';
import { createPrecomputeQueue } from '../src/precompute/queue.ts';
import { createRecencyScorer } from '../src/propensity/recency-scorer.ts';
import { createRunStore } from '../src/planner/runs.ts';
import { createScheduler, type Scheduler } from '../src/planner/scheduler.ts';
import { createWindowStore } from '../src/planner/windows.ts';
import { silentLog, TEST_DATABASE_URL, TEST_REDIS_URL } from './helpers.ts';
import { createPlannerHarness, HOUR, recencyPopulation, type PlannerHarness } from './fixtures/precompute-harness.ts';

const START = Date.parse('2024-03-01T00:00:00Z');

/** A scheduler replica of its own: its own pool, Redis connection, queue and clock. */
function createReplica(h: PlannerHarness, now: number) {
  const pool = createPool({ databaseUrl: TEST_DATABASE_URL, schema: h.db.schema, log: silentLog, max: 3 });
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  const queue = createPrecomputeQueue({ connection: redis, prefix: h.prefix, log: silentLog });
  const clock = new VirtualClock(now);
  const windows = createWindowStore({ pool, clock });
  const planner = createPlanner({ pool, queue, scorer: createRecencyScorer({ pool }), clock, log: silentLog });
  const scheduler: Scheduler = createScheduler({ windows, planner, runs: createRunStore({ pool }), clock, log: silentLog });
  return {
    scheduler,
    clock,
    async close() {
      await queue.close();
      await redis.quit();
      await pool.end();
    },
  };
}

describe('scheduler', () => {
  let h: PlannerHarness | undefined;
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
    await h?.close();
    h = undefined;
  });

  it('two replicas ticking the same occurrence at once: one run, one set of jobs', async () => {
    h = await createPlannerHarness({ start: START });
    await h.seedLogins(recencyPopulation(START, 200));
    await h.windows.set('nightly', { cron: '0 0 * * *', policy: 'budget:150', chunkSize: 20, holdoutRate: 0.05 });
    const now = START + 5_000;
    const replicas = [createReplica(h, now), createReplica(h, now)];
    closers.push(...replicas.map((replica) => replica.close));

    for (let round = 0; round < 3; round++) {
      const outcomes = (await Promise.all(replicas.map((replica) => replica.scheduler.tick()))).flat();
      if (round === 0) {
        expect(outcomes.map((o) => o.action).sort()).toEqual(['claimed', 'planned']);
      } else {
        expect(outcomes.map((o) => o.action)).toEqual(['claimed', 'claimed']);
      }
    }
    const runs = await h.runs.list();
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ window: 'nightly', scheduledFor: new Date(START), status: 'running', selected: 150 });
    const jobs = await h.queue.getJobs(['prioritized', 'waiting']);
    expect(jobs).toHaveLength(runs[0]!.chunksTotal);
    const users = jobs.flatMap((job) => job.data.userIds);
    expect(new Set(users).size).toBe(users.length);
    expect(users).toHaveLength(runs[0]!.selected + runs[0]!.holdout);
    expect((await h.pool.query('SELECT count(*)::int AS n FROM predictions')).rows[0].n).toBe(200);
  });

  it('three replicas over a simulated week: every occurrence planned exactly once, its jobs enqueued once', async () => {
    // Across the switch to summer time in Paris (31 March 2024), so the nightly occurrence moves
    // from 02:00 to 01:00 UTC mid-week.
    const weekStart = Date.parse('2024-03-28T00:00:00Z');
    const week = 7 * 24 * HOUR;
    const step = 2 * HOUR;
    h = await createPlannerHarness({ start: weekStart });
    await h.seedLogins(recencyPopulation(weekStart, 40));
    await h.windows.set('two-hourly', { cron: '0 */2 * * *', ttl: '2h', policy: 'budget:10', chunkSize: 5, holdoutRate: 0 });
    await h.windows.set('nightly', { cron: '0 3 * * *', timezone: 'Europe/Paris', ttl: '24h', policy: 'budget:20', chunkSize: 5, holdoutRate: 0.1 });
    const replicas = [createReplica(h, weekStart), createReplica(h, weekStart), createReplica(h, weekStart)];
    closers.push(...replicas.map((replica) => replica.close));

    const planned = new Map<string, number>();
    let ticks = 0;
    for (let t = weekStart; t < weekStart + week; t += step) {
      // Each replica ticks a few seconds after the step, all at once (the nightly occurrence at
      // 01:00 UTC is seen an hour late, inside its horizon); the third is down for 30 hours
      // mid-week (a replica restarting later must not plan anything twice either).
      const live = replicas.filter((_, i) => i !== 2 || t < weekStart + 2 * 24 * HOUR || t >= weekStart + 54 * HOUR);
      const outcomes = await Promise.all(
        live.map((replica, i) => {
          const now = new Date(t + i * 7_000);
          replica.clock.set(now.getTime());
          return replica.scheduler.tick(now);
        }),
      );
      ticks += live.length;
      for (const outcome of outcomes.flat()) {
        expect(outcome.action, JSON.stringify(outcome)).not.toBe('error');
        if (outcome.action === 'planned') {
          const key = `${outcome.window} ${outcome.occurrence.toISOString()}`;
          planned.set(key, (planned.get(key) ?? 0) + 1);
        }
      }
    }

    // At the start, the previous night's occurrence is still inside its horizon: it runs late.
    const nightly = ['2024-03-27T02', '2024-03-28T02', '2024-03-29T02', '2024-03-30T02', '2024-03-31T01', '2024-04-01T01', '2024-04-02T01', '2024-04-03T01'].map((hour) => `nightly ${hour}:00:00.000Z`);
    const hourly = Array.from({ length: 7 * 12 }, (_, i) => `two-hourly ${new Date(weekStart + i * 2 * HOUR).toISOString()}`);
    expect([...planned.keys()].sort()).toEqual([...nightly, ...hourly].sort());
    expect([...planned.values()].every((n) => n === 1)).toBe(true);

    const runs = await h.runs.list({ limit: 1_000 });
    expect(runs).toHaveLength(hourly.length + nightly.length);
    expect(new Set(runs.map((r) => `${r.window} ${r.scheduledFor.toISOString()}`)).size).toBe(runs.length);
    expect(runs.every((r) => r.status === 'running')).toBe(true);
    // Planned once: one prediction per known user and one job per chunk, per run.
    const perRun = await h.pool.query<{ run_id: number; n: number; users: number }>('SELECT run_id, count(*)::int AS n, count(DISTINCT user_id)::int AS users FROM predictions GROUP BY run_id');
    expect(perRun.rowCount).toBe(runs.length);
    expect(perRun.rows.every((row) => row.n === row.users && row.n === 40)).toBe(true);
    const jobs = await h.queue.getJobs(['prioritized', 'waiting']);
    expect(new Set(jobs.map((job) => job.id)).size).toBe(jobs.length);
    expect(jobs).toHaveLength(runs.reduce((sum, r) => sum + r.chunksTotal, 0));
    for (const run of runs) {
      const users = jobs.filter((job) => job.data.runId === run.id).flatMap((job) => job.data.userIds);
      expect(new Set(users).size).toBe(run.selected + run.holdout);
      expect(users).toHaveLength(run.selected + run.holdout);
    }
    console.info(`three replicas, one week: ${ticks} ticks, ${runs.length} runs (${hourly.length} two-hourly, ${nightly.length} nightly), ${jobs.length} jobs, each planned once`);
  }, 120_000);

  it('missed occurrences: the latest one runs late while inside its horizon, never an older one or one past its horizon', async () => {
    h = await createPlannerHarness({ start: START });
    await h.seedLogins(recencyPopulation(START, 20));
    await h.windows.set('nightly', { cron: '0 2 * * *', ttl: '24h', policy: 'all', holdoutRate: 0 });
    await h.windows.set('short', { cron: '0 2 * * *', ttl: '1h', policy: 'all', holdoutRate: 0 });

    // No scheduler ran for days; one starts at 07:00 on the 5th.
    const startedAt = Date.parse('2024-03-05T07:00:00Z');
    const outcomes = await h.scheduler.tick(new Date(startedAt));
    expect(outcomes).toEqual([
      expect.objectContaining({ window: 'nightly', action: 'planned', occurrence: new Date('2024-03-05T02:00:00Z') }),
      expect.objectContaining({ window: 'short', action: 'outside-horizon', occurrence: new Date('2024-03-05T02:00:00Z') }),
    ]);
    const runs = await h.runs.list();
    expect(runs.map((r) => [r.window, r.scheduledFor.toISOString()])).toEqual([['nightly', '2024-03-05T02:00:00.000Z']]);
    // Fresh until the occurrence's own expiry, not 24 h after the late start.
    expect(runs[0]!.expiresAt.toISOString()).toBe('2024-03-06T02:00:00.000Z');

    // Later ticks the same day find it claimed; the next occurrence runs on time.
    expect((await h.scheduler.tick(new Date(startedAt + HOUR)))[0]).toMatchObject({ action: 'claimed' });
    const next = await h.scheduler.tick(new Date('2024-03-06T02:00:00Z'));
    expect(next.map((o) => o.action)).toEqual(['planned', 'planned']);
  });

  it('changes take effect at the next tick; a disabled window does not run', async () => {
    h = await createPlannerHarness({ start: START });
    await h.seedLogins(recencyPopulation(START, 50));
    await h.windows.set('hourly', { cron: '0 * * * *', ttl: '1h', policy: 'budget:10', holdoutRate: 0 });
    expect((await h.scheduler.tick(new Date(START)))[0]).toMatchObject({ action: 'planned', selected: 10 });

    h.clock.set(START + 10 * 60_000);
    await h.windows.set('hourly', { policy: 'budget:20' });
    expect((await h.scheduler.tick(new Date(START + HOUR)))[0]).toMatchObject({ action: 'planned', selected: 20 });

    await h.windows.setEnabled('hourly', false);
    expect(await h.scheduler.tick(new Date(START + 2 * HOUR))).toEqual([]);
    await h.windows.setEnabled('hourly', true);
    await h.windows.set('hourly', { cron: '30 * * * *' });
    expect((await h.scheduler.tick(new Date(START + 2 * HOUR + 40 * 60_000)))[0]).toMatchObject({
      action: 'planned',
      occurrence: new Date(START + 2 * HOUR + 30 * 60_000),
    });
    const runs = await h.runs.list({ window: 'hourly' });
    expect(runs.map((r) => r.policy)).toEqual(['budget:20', 'budget:20', 'budget:10']);
  });

  it('the node-cron driver ticks a window in real time and leaves no task or timer behind', async () => {
    h = await createPlannerHarness({ start: START });
    await h.seedLogins(recencyPopulation(Date.now(), 5));
    await h.windows.set('every-second', { cron: '* * * * * *', ttl: '1h', policy: 'all', holdoutRate: 0 });
    const planner = createPlanner({ pool: h.pool, queue: h.queue, scorer: h.scorer, clock: systemClock, log: silentLog });
    const scheduler = createScheduler({ windows: h.windows, planner, runs: h.runs, clock: systemClock, log: silentLog });
    const before = nodeCron.getTasks().size;
    const driver = createCronDriver({ scheduler, windows: h.windows, planner, clock: systemClock, log: silentLog, reloadIntervalMs: 60_000 });
    await driver.start();
    expect(driver.scheduled()).toEqual(['every-second']);
    // The start-up tick ran the current second; node-cron's fires run the next ones.
    await expect.poll(async () => (await h!.runs.list({ window: 'every-second' })).length, { timeout: 5_000, interval: 100 }).toBeGreaterThanOrEqual(3);
    await driver.close();
    await driver.close();
    expect(driver.scheduled()).toEqual([]);
    expect(nodeCron.getTasks().size).toBe(before);
    const runs = await h.runs.list({ window: 'every-second', limit: 100 });
    expect(new Set(runs.map((r) => r.scheduledFor.getTime())).size).toBe(runs.length);
    expect(runs.every((r) => r.scheduledFor.getTime() % 1000 === 0)).toBe(true);
  });
});
