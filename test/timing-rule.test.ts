import { afterEach, describe, expect, it } from 'vitest';
import { chainedOffset, CHAINED_SPAN_MS, chainsSets, smoothedHours, timedExpiry } from '../src/planner/timing.ts';
import { createScriptedRecommender } from './support/scripted-recommender.ts';
import { createPlannerHarness, DAY, HOUR, type PlannerHarness } from './fixtures/precompute-harness.ts';

const START = Date.parse('2024-03-01T00:00:00Z');
const uniform = new Float64Array(24).fill(1 / 24);

/** `days` daily logins at `hour`:30 UTC before START. */
function habit(hour: number, days: number): Date[] {
  return Array.from({ length: days }, (_v, d) => new Date(START - (d + 1) * DAY + hour * HOUR + 30 * 60_000));
}

describe('the compute time of a user whose previous set is still live (chained)', () => {
  it('starts the 8 hours with most of their logins, across midnight too, the latest of equal ones', () => {
    const evening = new Float64Array(24);
    evening[20] = 40;
    // Every 8-hour span holding 20:00 holds the same mass: the latest, so the evening serve is youngest.
    expect(chainedOffset(evening, uniform, START, HOUR)).toBe(20 * HOUR);
    // Late evening and just after midnight: the spans from 19:00 to 22:00 hold both; the latest.
    const owl = new Float64Array(24);
    owl[22] = 20;
    owl[2] = 20;
    expect(chainedOffset(owl, uniform, START, HOUR)).toBe(22 * HOUR);
    // Two habits 7 h apart, 03:00 and 20:00: one span from 20:00 serves both younger than 8 h.
    const mixed = new Float64Array(24);
    mixed[3] = 10;
    mixed[20] = 30;
    expect(chainedOffset(mixed, uniform, START, HOUR)).toBe(20 * HOUR);
    // No history: the population's hours alone place the user.
    const morningPrior = new Float64Array(24);
    morningPrior[9] = 1;
    expect(chainedOffset(new Float64Array(24), morningPrior, START, HOUR)).toBe(9 * HOUR);
    // Slots of 6 h: the slot start whose span holds most, 18:00 for the evening.
    expect(chainedOffset(evening, uniform, START, 6 * HOUR)).toBe(18 * HOUR);
    expect(CHAINED_SPAN_MS).toBe(8 * HOUR);
  });

  it('no other slot start holds more of the user’s logins in its span (property over random histograms, fixed seed)', () => {
    let seed = 11;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648);
    for (let trial = 0; trial < 300; trial++) {
      const hours = Float64Array.from({ length: 24 }, () => (random() < 0.3 ? random() * 10 : 0));
      const prior = Float64Array.from({ length: 24 }, () => random());
      const sum = prior.reduce((a, b) => a + b, 0);
      for (let h = 0; h < 24; h++) prior[h] = (prior[h] as number) / sum;
      const spanHours = 1 + Math.floor(random() * 12);
      const offset = chainedOffset(hours, prior, START, HOUR, spanHours * HOUR);
      expect(offset % HOUR).toBe(0);
      expect(offset).toBeGreaterThanOrEqual(0);
      expect(offset).toBeLessThan(DAY);
      const share = smoothedHours(hours, prior);
      const massFrom = (b: number) => {
        let m = 0;
        for (let k = 0; k < spanHours; k++) m += share[(b + k) % 24] as number;
        return m;
      };
      const chosen = massFrom(offset / HOUR);
      for (let b = 0; b < 24; b++) expect(massFrom(b)).toBeLessThanOrEqual(chosen + 1e-9);
    }
  });

  it('sets chain on daily (or longer) horizons only: they live one horizon past their run', () => {
    const end = new Date(START + DAY);
    expect(chainsSets(DAY)).toBe(true);
    expect(timedExpiry(end, DAY).getTime()).toBe(START + 2 * DAY);
    expect(timedExpiry(end, 7 * DAY).getTime()).toBe(START + 8 * DAY);
    // A 6-hour window's next set can come a day later: its sets keep the run's end.
    expect(chainsSets(6 * HOUR)).toBe(false);
    expect(timedExpiry(end, 6 * HOUR).getTime()).toBe(START + DAY);
  });
});

describe('chained timed runs on real Postgres and Redis', () => {
  let h: PlannerHarness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  async function dueOf(harness: PlannerHarness, runId: number): Promise<Map<string, number>> {
    const rows = (
      await harness.pool.query<{ user_id: string; due_at: Date }>(
        `SELECT p.user_id, c.due_at FROM predictions p JOIN batch_chunks c ON c.run_id = p.run_id AND c.chunk_no = p.chunk_no WHERE p.run_id = $1`,
        [runId],
      )
    ).rows;
    return new Map(rows.map((row) => [row.user_id, row.due_at.getTime()]));
  }

  async function coverageOf(harness: PlannerHarness, runId: number) {
    return (await harness.pool.query<{ active_known: number; covered: number }>('SELECT active_known::int, covered::int FROM coverage_by_run WHERE run_id = $1', [runId])).rows[0];
  }

  it('a user with a live set from yesterday is placed for young serves, and a login before the new set is served — and counted covered — by the old one', async () => {
    h = await createPlannerHarness({ start: START });
    const logins: Record<string, Date[]> = { mixed: [...habit(3, 10), ...habit(20, 30)] };
    for (let i = 0; i < 10; i++) logins[`evening${i}`] = habit(20, 30);
    await h.seedLogins(logins);
    const { window } = await h.windows.set('timed', { cron: '0 0 * * *', policy: 'all', chunkSize: 5, holdoutRate: 0, timing: 'predicted', timingSlot: '1h', timingRisk: 0.02 });
    const worker = h.startWorker(createScriptedRecommender({}).recommender);

    // Day 1: nobody has a set yet, so the risk rule places `mixed` no later than its 03:00 habit.
    const first = (await h.planner.planRun(window, new Date(START)))!.run;
    const due1 = await dueOf(h, first.id);
    expect(due1.get('mixed')).toBeLessThanOrEqual(START + 3 * HOUR);
    expect(due1.get('evening0')).toBe(START + 20 * HOUR);
    for (const at of [...new Set(due1.values())].sort((a, b) => a - b)) {
      h.clock.set(at);
      await h.scheduler.tick();
    }
    expect(await h.waitForRun(first.id)).toMatchObject({ status: 'completed', precomputed: 11 });
    const sets1 = (await h.pool.query<{ user_id: string; expires_at: Date }>('SELECT user_id, expires_at FROM recommendations WHERE run_id = $1', [first.id])).rows;
    expect(sets1.every((set) => set.expires_at.getTime() === START + 2 * DAY)).toBe(true);

    // Day 2: every user's day-1 set lives through the day, so `mixed` is placed at the start of
    // the span holding both its habits (20:00 onwards; the span is derived from the population's
    // hours, chainedSpan), no longer before its 03:00 logins.
    h.clock.set(START + DAY);
    const second = (await h.planner.planRun(window, new Date(START + DAY)))!.run;
    const due2 = await dueOf(h, second.id);
    expect(due2.get('mixed')).toBe(START + DAY + 20 * HOUR);
    expect(due2.get('evening0')).toBe(START + DAY + 20 * HOUR);

    // `mixed` logs in at 03:30 on day 2, before its day-2 set: its day-1 set (computed before, live
    // until day 2 ends) is what it finds, so the day-2 run counts it covered. evening0 logged in on
    // day 1 at 01:00, before its day-1 set and with none before it: a miss for the day-1 run.
    await h.seedLogins({ mixed: [new Date(START + DAY + 3.5 * HOUR)], evening0: [new Date(START + HOUR)] });
    expect(await coverageOf(h, second.id)).toEqual({ active_known: 1, covered: 1 });
    expect(await coverageOf(h, first.id)).toEqual({ active_known: 1, covered: 0 });
    await worker.close();
  }, 60_000);

  it('an untimed window counts only its own run’s sets, as before', async () => {
    h = await createPlannerHarness({ start: START });
    await h.seedLogins({ a: habit(20, 10) });
    const { window } = await h.windows.set('nightly', { cron: '0 0 * * *', policy: 'all', chunkSize: 5, holdoutRate: 0 });
    h.startWorker(createScriptedRecommender({}).recommender);
    const first = (await h.planner.planRun(window, new Date(START)))!.run;
    await h.waitForRun(first.id);
    const sets = (await h.pool.query<{ expires_at: Date }>('SELECT expires_at FROM recommendations WHERE run_id = $1', [first.id])).rows;
    expect(sets.map((set) => set.expires_at.getTime())).toEqual([START + DAY]);
    h.clock.set(START + DAY);
    const second = (await h.planner.planRun(window, new Date(START + DAY)))!.run;
    await h.waitForRun(second.id);
    // A login on day 2 before… nothing: the day-2 set is computed at midnight, so covered by its own run.
    await h.seedLogins({ a: [new Date(START + DAY + HOUR)] });
    expect(await coverageOf(h, second.id)).toEqual({ active_known: 1, covered: 1 });
    // The day-1 run's set does not count for day 2 (it expired at the day's start): delete day 2's and see.
    await h.pool.query('DELETE FROM recommendations WHERE run_id = $1', [second.id]);
    expect(await coverageOf(h, second.id)).toEqual({ active_known: 1, covered: 0 });
  }, 60_000);
});
