// Login storm in-process, through the HTTP app (app.inject): 2,000 concurrent requests for 500
// cold users with history, the defaults operators run (budget 150 ms, 4 slots, a queue of 64) and
// a recommender taking 20 ms a call. Exact checks: each user computed at most once, no errors,
// the excess answered `overloaded` rather than queued, places and lookups bounded throughout,
// and every user told `latency_budget` has a set afterwards (Redis and Postgres).
import { afterEach, describe, expect, it } from 'vitest';
import { percentile } from './support/load.ts';
import { createScriptedRecommender } from './support/scripted-recommender.ts';
import { API_TOKEN, createServingHarness, type ServingHarness } from './support/serving-harness.ts';

const USERS = 500;
const REQUESTS = 2_000;
const CONCURRENCY = 4;
const QUEUE = 64;
const BUDGET_MS = 150;

describe('login storm (in-process)', () => {
  let h: ServingHarness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('computes each cold user at most once, refuses the excess at once, and keeps every promise', async () => {
    const userIds = Array.from({ length: USERS }, (_, i) => `cold-${i}`);
    const { recommender, state } = createScriptedRecommender(Object.fromEntries(userIds.map((u) => [u, [`${u}-a`, `${u}-b`]])));
    state.delayMs = 20;
    h = await createServingHarness(recommender, { latencyBudgetMs: BUDGET_MS, onDemandConcurrency: CONCURRENCY, onDemandQueue: QUEUE, maxLookups: 1_000 });
    const harness = h;

    // Sample the bounds while the storm runs.
    let peakAdmitted = 0;
    let peakLookups = 0;
    const sampler = setInterval(() => {
      peakAdmitted = Math.max(peakAdmitted, harness.service.admitted());
      peakLookups = Math.max(peakLookups, harness.service.inFlight());
    }, 1);

    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: REQUESTS }, async (_, i) => {
        const userId = userIds[(i * 7) % USERS] as string;
        const sent = performance.now();
        const response = await harness.app.inject({ method: 'GET', url: `/v1/users/${userId}/recommendations?limit=2`, headers: { authorization: `Bearer ${API_TOKEN}` } });
        const body = response.json<{ source: string; reason?: string }>();
        return { userId, status: response.statusCode, latencyMs: performance.now() - sent, kind: body.reason ? `${body.source}/${body.reason}` : body.source };
      }),
    );
    const stormMs = performance.now() - started;
    await expect.poll(() => harness.service.inFlight(), { timeout: 10_000 }).toBe(0);
    clearInterval(sampler);

    const counts: Record<string, number> = {};
    for (const a of answers) counts[a.kind] = (counts[a.kind] ?? 0) + 1;
    const latencies = answers.map((a) => a.latencyMs);
    const promised = new Set(answers.filter((a) => a.kind === 'fallback/latency_budget').map((a) => a.userId));
    const asked = new Set(state.usersAsked);
    console.info(
      `login storm (in-process, ${REQUESTS} requests, ${USERS} cold users, recommender 20 ms, budget ${BUDGET_MS} ms): ${stormMs.toFixed(0)} ms, ` +
        `p50 ${percentile(latencies, 50).toFixed(0)} ms, p99 ${percentile(latencies, 99).toFixed(0)} ms; answers ${JSON.stringify(counts)}; ` +
        `${asked.size} users computed, ${promised.size} promised; peak places held ${peakAdmitted}, peak users in flight ${peakLookups}`,
    );

    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(Object.keys(counts).every((k) => ['on_demand', 'reused', 'fallback/latency_budget', 'fallback/overloaded'].includes(k))).toBe(true);
    // Coalesced: no user computed twice.
    expect(state.usersAsked.length).toBe(asked.size);
    // The excess is refused, not queued: places and lookups stay bounded.
    expect(counts['fallback/overloaded']).toBeGreaterThan(0);
    expect(peakAdmitted).toBeLessThanOrEqual(CONCURRENCY + QUEUE);
    expect(peakLookups).toBeLessThanOrEqual(USERS);
    expect(harness.service.admitted()).toBe(0);

    // Every promise kept: each user told `latency_budget` has a set in Redis and in Postgres.
    for (const userId of promised) expect(asked.has(userId), userId).toBe(true);
    const cached = await Promise.all([...promised].map(async (userId) => ((await harness.cache.get(userId)) ? undefined : userId)));
    expect(cached.filter((u) => u !== undefined)).toEqual([]);
    await harness.recorder.flush();
    const stored = await harness.db.pool.query<{ user_id: string }>(`SELECT DISTINCT user_id FROM recommendations WHERE source = 'on_demand'`);
    const storedUsers = new Set(stored.rows.map((r) => r.user_id));
    expect([...promised].filter((u) => !storedUsers.has(u))).toEqual([]);
    expect(storedUsers.size).toBe(asked.size);

    // Every answer is recorded, with its latency from arrival.
    const serves = await harness.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM serves`);
    expect(serves.rows[0]?.n).toBe(REQUESTS);
  }, 60_000);
});
