// Sets that know they are behind (issue 15, item 2) and the missed interactions each serve
// records (item 3), through the API on real Postgres and Redis.
import { afterEach, describe, expect, it } from 'vitest';
import { createReport } from '../src/accounting/report.ts';
import { createDashboardFigures } from '../src/dashboard/figures.ts';
import { deleteKeysWithPrefix } from '../src/redis.ts';
import type { RecommendationSet } from '../src/sets/set.ts';
import { precomputedSet } from './support/sets.ts';
import { createScriptedRecommender } from './support/scripted-recommender.ts';
import { API_TOKEN, createServingHarness, type ServingHarness } from './support/serving-harness.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const auth = { authorization: `Bearer ${API_TOKEN}` };

function batchSet(userId: string, computedAt: Date): RecommendationSet {
  return precomputedSet(userId, computedAt, 24 * HOUR, { itemIds: ['b1', 'b2'], scores: [0.9, 0.8], modelVersion: 'batch-v1' });
}

interface ServeRow {
  source: string;
  missed_interactions: number | null;
  recommendation_id: string | null;
}

describe('sets that know they are behind', () => {
  let h: ServingHarness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  /** The harness's clock starts at 12:00 (Redis's freshness marker); sets here are computed after 12:05. */
  async function precompute(userId: string, at: Date): Promise<RecommendationSet> {
    const set = batchSet(userId, at);
    await h!.store.insertMany(h!.db.pool, [set]);
    await h!.cache.setMany([set], h!.clock.now());
    return set;
  }

  async function interact(userId: string, ...ats: Date[]): Promise<void> {
    const response = await h!.app.inject({
      method: 'POST',
      url: '/v1/interactions',
      headers: auth,
      payload: { interactions: ats.map((at, i) => ({ userId, itemId: `item-${i}`, at: at.toISOString() })) },
    });
    expect(response.statusCode).toBe(202);
  }

  async function login(userId: string) {
    const response = await h!.app.inject({ method: 'GET', url: `/v1/users/${userId}/recommendations?limit=2`, headers: auth });
    expect(response.statusCode).toBe(200);
    return response.json();
  }

  async function serves(userId: string): Promise<ServeRow[]> {
    await h!.recorder.flush();
    const result = await h!.db.pool.query<ServeRow>('SELECT source, missed_interactions, recommendation_id FROM serves WHERE user_id = $1 ORDER BY at, source', [userId]);
    return result.rows;
  }

  const at = (hhmm: string) => new Date(`2024-03-01T${hhmm}:00Z`);

  it('serves an up-to-date set as it is, with 0 missed interactions', async () => {
    const { recommender, state } = createScriptedRecommender({ ann: ['n1'] });
    h = await createServingHarness(recommender);
    h.clock.set(at('12:30'));
    await precompute('ann', at('12:30'));
    await interact('ann', at('12:10')); // before the set: it saw this one
    h.clock.set(at('13:00'));
    expect(await login('ann')).toMatchObject({ source: 'precomputed', behind: false, missedInteractions: 0 });
    expect(state.calls).toBe(0);
    expect(await serves('ann')).toEqual([expect.objectContaining({ source: 'precomputed', missed_interactions: 0 })]);
  });

  it('computes a behind set again at login within the budget: on_demand, the old set superseded', async () => {
    const { recommender, state } = createScriptedRecommender({ ben: ['n1', 'n2'] });
    h = await createServingHarness(recommender);
    h.clock.set(at('12:30'));
    const old = await precompute('ben', at('12:30'));
    h.clock.set(at('13:00'));
    await interact('ben', at('12:40'), at('12:50'));
    const answer = await login('ben');
    expect(answer).toMatchObject({ source: 'on_demand', behind: false, missedInteractions: 0, computedAt: '2024-03-01T13:00:00.000Z' });
    expect(answer.items.map((i: { itemId: string }) => i.itemId)).toEqual(['n1', 'n2']);
    expect(state.calls).toBe(1);
    // The recomputation saw both interactions (flushed before it computed).
    const seen = await h.db.pool.query(`SELECT count(*)::int AS n FROM interactions WHERE user_id = 'ben' AND at < '2024-03-01T13:00:00Z'`);
    expect(seen.rows[0].n).toBe(2);

    h.clock.set(at('13:10'));
    expect(await login('ben')).toMatchObject({ source: 'reused', behind: false, missedInteractions: 0 });
    const rows = await serves('ben');
    expect(rows.map((r) => [r.source, r.missed_interactions])).toEqual([
      ['on_demand', 0],
      ['reused', 0],
    ]);
    // The batch set's life ended when the new set was computed, unserved.
    const life = await h.db.pool.query(`SELECT life_ended_at, served FROM recommendation_life WHERE id = $1`, [old.id]);
    expect(life.rows[0]).toEqual({ life_ended_at: at('13:00'), served: false });
    // The report names the refresh and its compute: the price of the up-to-date set.
    const summary = await createReport({ pool: h.db.pool }).summary({ asOf: h.clock.now(), from: at('00:00'), to: at('23:59') });
    expect(summary).toMatchObject({ refreshes: 1, behindServes: 0, behindShare: 0, onDemand: 1 });
    expect(summary.refreshComputeMs).toBe(summary.onDemandComputeMs);
  });

  it('serves the behind set marked behind, with the exact count, when the budget runs out; the new set serves the next login', async () => {
    const { recommender, state } = createScriptedRecommender({ cat: ['n1'] });
    state.delayMs = 400;
    h = await createServingHarness(recommender, { latencyBudgetMs: 60 });
    h.clock.set(at('12:30'));
    await precompute('cat', at('12:30'));
    h.clock.set(at('14:00'));
    await interact('cat', at('12:29'), at('12:30'), at('13:00'), at('13:59'));
    const started = Date.now();
    // 12:29 came before the set; 12:30 (the set's instant: the recommender reads strictly before it) and after did not.
    expect(await login('cat')).toMatchObject({ source: 'precomputed', behind: true, missedInteractions: 3, computedAt: '2024-03-01T12:30:00.000Z' });
    expect(Date.now() - started).toBeLessThan(350);
    await expect.poll(() => h!.service.inFlight(), { timeout: 3_000 }).toBe(0);
    expect(await login('cat')).toMatchObject({ source: 'reused', behind: false, missedInteractions: 0 });
    expect(state.calls).toBe(1);
    expect((await serves('cat')).map((r) => [r.source, r.missed_interactions])).toEqual([
      ['precomputed', 3],
      ['reused', 0],
    ]);
  });

  it('with PREWARM_REFRESH_BEHIND=never serves the behind set marked behind and computes nothing', async () => {
    const { recommender, state } = createScriptedRecommender({ dan: ['n1'] });
    h = await createServingHarness(recommender, { refreshBehind: 'never' });
    h.clock.set(at('12:30'));
    await precompute('dan', at('12:30'));
    h.clock.set(at('13:00'));
    await interact('dan', at('12:31'));
    expect(await login('dan')).toMatchObject({ source: 'precomputed', behind: true, missedInteractions: 1 });
    await interact('dan', at('12:32'), at('12:33'));
    // An interaction after the login does not count for it.
    await interact('dan', at('13:04'));
    expect(await login('dan')).toMatchObject({ source: 'precomputed', behind: true, missedInteractions: 3 });
    expect(state.calls).toBe(0);
    expect((await serves('dan')).map((r) => r.missed_interactions)).toEqual([1, 3]);
  });

  it('counts more interactions than one read brings back exactly', async () => {
    const { recommender } = createScriptedRecommender({ eve: ['n1'] });
    h = await createServingHarness(recommender, { refreshBehind: 'never' });
    h.clock.set(at('12:30'));
    await precompute('eve', at('12:30'));
    h.clock.set(at('14:00'));
    await interact('eve', ...Array.from({ length: 40 }, (_, i) => new Date(at('12:30').getTime() + i * MINUTE)));
    expect(await login('eve')).toMatchObject({ behind: true, missedInteractions: 40 });
  });

  it('records the counts in serves and missed_interactions_by_day, fallback as null', async () => {
    const { recommender } = createScriptedRecommender({ fay: ['n1'], gus: ['n1'] }, ['p1']);
    h = await createServingHarness(recommender, { refreshBehind: 'never' });
    h.clock.set(at('12:30'));
    await precompute('fay', at('12:30'));
    await precompute('gus', at('12:30'));
    h.clock.set(at('13:00'));
    await interact('fay', at('12:40'), at('12:41'), at('12:42'), at('12:43'), at('12:44'));
    await login('fay'); // 5 missed
    await login('gus'); // 0 missed
    await interact('gus', at('12:59'));
    await login('gus'); // 1 missed
    expect(await login('stranger')).toMatchObject({ source: 'fallback', behind: false, missedInteractions: null });
    expect((await serves('stranger')).map((r) => r.missed_interactions)).toEqual([null]);
    const view = await h.db.pool.query(
      `SELECT day::text, source, serves::int, behind_serves::int, behind_share, missed_interactions::int, missed_p50, missed_max, staleness_p50_ms
         FROM missed_interactions_by_day ORDER BY source`,
    );
    expect(view.rows).toEqual([
      {
        day: '2024-03-01',
        source: 'precomputed',
        serves: 3,
        behind_serves: 2,
        behind_share: 2 / 3,
        missed_interactions: 6,
        missed_p50: 1,
        missed_max: 5,
        staleness_p50_ms: 30 * MINUTE,
      },
    ]);
    // The replay's report and the dashboard read the same counts.
    const summary = await createReport({ pool: h.db.pool }).summary({ asOf: h.clock.now(), from: at('00:00'), to: at('23:59') });
    expect(summary).toMatchObject({ logins: 4, behindServes: 2, behindShare: 0.5, missedP50: 1, refreshes: 0 });
    const [daily] = await createReport({ pool: h.db.pool }).daily({ asOf: h.clock.now() });
    expect(daily).toMatchObject({ day: '2024-03-01', logins: 4, behindShare: 0.5 });
    expect(daily?.missedP95).toBeCloseTo(4.6, 9);
    const overview = await createDashboardFigures({ pool: h.db.pool, clock: h.clock }).period({ from: '2024-03-01', to: '2024-03-01' });
    expect(overview.days[0]).toMatchObject({ day: '2024-03-01', logins: 4, behindShare: 0.5 });
    expect(overview.days[0]?.missedP95).toBeCloseTo(4.6, 9);
  });

  it('counts in Postgres what Redis cannot vouch for: a set older than its marker, and keys lost in a restart', async () => {
    const { recommender, state } = createScriptedRecommender({ hal: ['n1'], ivy: ['n1'] });
    h = await createServingHarness(recommender, { refreshBehind: 'never' });
    // Computed before Redis began tracking (12:00): the count comes from Postgres, imported rows included.
    await precompute('hal', at('11:00'));
    await h.db.pool.query(`INSERT INTO interactions (user_id, item_id, at, weight) VALUES ('hal', 'csv', '2024-03-01T11:30:00Z', 1)`);
    h.clock.set(at('12:30'));
    await interact('hal', at('12:10'));
    expect(await login('hal')).toMatchObject({ behind: true, missedInteractions: 2 });

    // Tracked by Redis: an interaction that reached Postgres only (a CSV import) is not seen.
    await precompute('ivy', at('12:30'));
    h.clock.set(at('13:00'));
    await interact('ivy', at('12:40'));
    await h.db.pool.query(`INSERT INTO interactions (user_id, item_id, at, weight) VALUES ('ivy', 'csv', '2024-03-01T12:45:00Z', 1)`);
    expect(await login('ivy')).toMatchObject({ behind: true, missedInteractions: 1 });

    // Redis restarts empty: every freshness key is gone (the marker too). The first login after it
    // counts in Postgres (the buffered interactions written first) and sets a new marker.
    const prefix = h.cache.key('').replace(/rec:$/, '');
    await deleteKeysWithPrefix(h.redis, `${prefix}fr:`);
    expect(await login('ivy')).toMatchObject({ behind: true, missedInteractions: 2 });
    // A set computed after the new marker is judged from Redis again.
    h.clock.set(at('13:20'));
    await precompute('ivy', at('13:20'));
    h.clock.set(at('13:30'));
    await interact('ivy', at('13:25'));
    expect(await login('ivy')).toMatchObject({ behind: true, missedInteractions: 1 });
    expect(state.calls).toBe(0);
  });
});
