// Login storm against a real `prewarm serve`: 2,000 concurrent connections for 500 cold users
// (each with a history, so the model can personalise them), with the defaults operators run
// (latency budget 150 ms, 4 on-demand slots, a queue of 64) and a model service taking 25 ms a
// call. The budget counts from the request's arrival, the excess is refused at once, and every
// login answered `latency_budget` was promised that the next login finds its set: a second storm
// checks that it does.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRecommendationCache } from '../src/sets/cache.ts';
import { createTestDb, createTestRedis, TEST_DATABASE_URL, TEST_REDIS_URL, silentLog, type TestDb, type TestRedis } from './helpers.ts';
import { percentile } from './support/load.ts';
import { freePort } from './support/own-servers.ts';
import { spawnPrewarm, waitUntilAnswering, type PrewarmProcess } from './support/prewarm-process.ts';

const TOKEN = 'storm-test-token-0123456789';
const USERS = 500;
const REQUESTS = 2_000;
const MODEL_DELAY_MS = 25;
const BUDGET_MS = 150;

const userIds = Array.from({ length: USERS }, (_, i) => `storm-${String(i).padStart(3, '0')}`);

/** A model service (the HTTP recommender contract) that knows every storm user and takes 25 ms a call. */
async function startModelService() {
  const calls = new Map<string, number>();
  let concurrent = 0;
  let peakConcurrent = 0;
  const server = http.createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      const reply = (value: unknown) => {
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(value));
      };
      if (request.url?.startsWith('/popular')) {
        reply({ items: [1, 2, 3, 4, 5].map((n) => ({ itemId: `pop${n}`, score: 10 - n })), modelVersion: 'storm-v1' });
        return;
      }
      const { userIds: asked, k } = JSON.parse(body) as { userIds: string[]; k: number };
      concurrent++;
      peakConcurrent = Math.max(peakConcurrent, concurrent);
      for (const userId of asked) calls.set(userId, (calls.get(userId) ?? 0) + 1);
      setTimeout(() => {
        concurrent--;
        const results = Object.fromEntries(
          asked.map((userId) => [userId, { items: Array.from({ length: k }, (_, i) => ({ itemId: `${userId}-i${i}`, score: 1 - i / 1000 })), personalised: true }]),
        );
        reply({ modelVersion: 'storm-v1', results });
      }, MODEL_DELAY_MS);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    peakConcurrent: () => peakConcurrent,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

interface Answer {
  userId: string;
  status: number;
  latencyMs: number;
  source?: string;
  reason?: string;
}

/** Every login of the storm sent at once, one connection each (2,000 sockets). */
async function storm(base: string, order: readonly string[]): Promise<{ answers: Answer[]; networkErrors: number }> {
  const agent = new http.Agent({ keepAlive: false, maxSockets: REQUESTS });
  let networkErrors = 0;
  const answers = await Promise.all(
    order.map(
      (userId) =>
        new Promise<Answer | undefined>((resolve) => {
          const started = performance.now();
          const request = http.get(`${base}/v1/users/${userId}/recommendations?limit=5`, { agent, headers: { authorization: `Bearer ${TOKEN}` }, timeout: 30_000 }, (response) => {
            let body = '';
            response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
            response.on('end', () => {
              const latencyMs = performance.now() - started;
              const parsed = response.statusCode === 200 ? (JSON.parse(body) as { source: string; reason?: string }) : undefined;
              resolve({ userId, status: response.statusCode ?? 0, latencyMs, source: parsed?.source, reason: parsed?.reason });
            });
          });
          request.on('timeout', () => request.destroy(new Error('timeout')));
          request.on('error', () => {
            networkErrors++;
            resolve(undefined);
          });
        }),
    ),
  );
  agent.destroy();
  return { answers: answers.filter((a): a is Answer => a !== undefined), networkErrors };
}

function tally(answers: readonly Answer[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const a of answers) {
    const key = a.reason ? `${a.source}/${a.reason}` : (a.source ?? String(a.status));
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/** Deterministic shuffle: each user's four logins scattered through the storm. */
function stormOrder(): string[] {
  const order = Array.from({ length: REQUESTS }, (_, i) => userIds[i % USERS] as string);
  let seed = 12345;
  for (let i = order.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j] as string, order[i] as string];
  }
  return order;
}

async function inFlight(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Number(/^prewarm_on_demand_in_flight (\d+)/m.exec(text)?.[1]);
}

describe('login storm against `prewarm serve`', () => {
  let db: TestDb;
  let redis: TestRedis;
  let model: Awaited<ReturnType<typeof startModelService>>;
  let api: PrewarmProcess | undefined;

  beforeAll(async () => {
    [db, redis, model] = await Promise.all([createTestDb(), createTestRedis(), startModelService()]);
    // Histories, as a real import would leave them (the model service is what scores them).
    await db.pool.query(
      `INSERT INTO interactions (user_id, item_id, at) SELECT 'storm-' || lpad(u::text, 3, '0'), 'i' || ((u * 7 + n) % 200), now() - interval '1 day'
       FROM generate_series(0, $1 - 1) u, generate_series(1, 10) n`,
      [USERS],
    );
  });

  afterAll(async () => {
    await api?.stop('SIGKILL');
    await model?.close();
    await redis?.drop();
    await db?.drop();
  });

  it('answers 2,000 concurrent logins of 500 cold users within budget, computes each user at most once, and keeps every promise', async () => {
    const port = await freePort();
    const prefix = redis.prefix;
    const base = `http://127.0.0.1:${port}`;
    api = spawnPrewarm(['serve'], {
      DATABASE_URL: TEST_DATABASE_URL,
      REDIS_URL: TEST_REDIS_URL,
      PREWARM_DB_SCHEMA: db.schema,
      PREWARM_CACHE_PREFIX: `${prefix}:`,
      PREWARM_QUEUE_PREFIX: prefix,
      PORT: String(port),
      PREWARM_API_TOKENS: TOKEN,
      PREWARM_RECOMMENDER: 'http',
      PREWARM_RECOMMENDER_URL: model.url,
      PREWARM_LATENCY_BUDGET_MS: String(BUDGET_MS),
      // The storm is about the queue, not a slow model: a computation must not time out here.
      PREWARM_RECOMMENDER_TIMEOUT_MS: '20000',
      PREWARM_LOG_LEVEL: 'error',
    });
    await waitUntilAnswering(`${base}/healthz`, api);
    const order = stormOrder();
    const started = performance.now();

    const first = await storm(base, order);
    const firstMs = performance.now() - started;
    const latencies = first.answers.map((a) => a.latencyMs);
    const promised = new Set(first.answers.filter((a) => a.reason === 'latency_budget').map((a) => a.userId));
    await expect.poll(() => inFlight(base), { timeout: 20_000, interval: 100 }).toBe(0);

    await expect.poll(async () => (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM serves`)).rows[0]?.n, { timeout: 10_000 }).toBe(REQUESTS);
    const recorded = await db.pool.query<{ p50: number; p99: number; max: number }>(
      `SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50, percentile_disc(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99, max(latency_ms) AS max FROM serves`,
    );
    const server = recorded.rows[0]!;
    const cache = createRecommendationCache({ redis: redis.redis, prefix: `${prefix}:`, log: silentLog });
    const cached = (await Promise.all(userIds.map(async (userId) => ((await cache.get(userId)) ? userId : undefined)))).filter((u) => u !== undefined);
    console.info(
      `login storm (prewarm serve, ${REQUESTS} connections, ${USERS} cold users, model ${MODEL_DELAY_MS} ms, budget ${BUDGET_MS} ms): ` +
        `${firstMs.toFixed(0)} ms, p50 ${percentile(latencies, 50).toFixed(0)} ms, p99 ${percentile(latencies, 99).toFixed(0)} ms, max ${Math.max(...latencies).toFixed(0)} ms; ` +
        `answers ${JSON.stringify(tally(first.answers))}, network errors ${first.networkErrors}; ` +
        `${model.calls.size} users computed (${[...model.calls.values()].reduce((a, b) => a + b, 0)} calls, ≤ ${model.peakConcurrent()} at once), ` +
        `${promised.size} promised a set, ${cached.length} users with a set in Redis; ` +
        `latency recorded by the server p50 ${Math.round(server.p50)} ms, p99 ${Math.round(server.p99)} ms, max ${Math.round(server.max)} ms`,
    );

    expect(first.networkErrors).toBe(0);
    expect(first.answers.every((a) => a.status === 200)).toBe(true);
    // Coalesced: no user computed twice.
    expect([...model.calls.values()].every((n) => n === 1)).toBe(true);
    expect(model.peakConcurrent()).toBeLessThanOrEqual(4);
    // The excess is refused, not queued (test/login-storm.test.ts checks the bound on places).
    expect(tally(first.answers)['fallback/overloaded']).toBeGreaterThan(0);
    // Every promise kept: each user answered `latency_budget` has its set in Redis …
    const cachedSet = new Set(cached);
    expect([...promised].filter((u) => !cachedSet.has(u)), api.stderr()).toEqual([]);
    // … and in Postgres (written by the next flush).
    await expect
      .poll(async () => {
        const rows = await db.pool.query<{ user_id: string }>(`SELECT DISTINCT user_id FROM recommendations WHERE source = 'on_demand'`);
        const stored = new Set(rows.rows.map((r) => r.user_id));
        return [...promised].filter((u) => !stored.has(u));
      }, { timeout: 10_000, interval: 200 })
      .toEqual([]);

    // The next login of each promised user finds its set (logins at a normal pace: in a storm
    // even a Redis hit can come back after the budget).
    const next: Answer[] = [];
    const queue = [...promised];
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        for (let userId = queue.pop(); userId !== undefined; userId = queue.pop()) {
          const response = await fetch(`${base}/v1/users/${userId}/recommendations?limit=5`, { headers: { authorization: `Bearer ${TOKEN}` } });
          const body = (await response.json()) as { source: string; reason?: string };
          next.push({ userId, status: response.status, latencyMs: 0, ...body });
        }
      }),
    );
    expect(next.filter((a) => a.source !== 'reused')).toEqual([]);

    // A second storm, for the figures: the users with a set only grow, and none is computed twice.
    const second = await storm(base, order);
    await expect.poll(() => inFlight(base), { timeout: 20_000, interval: 100 }).toBe(0);
    const secondLatencies = second.answers.map((a) => a.latencyMs);
    const withSet = await db.pool.query<{ n: number }>(`SELECT count(DISTINCT user_id)::int AS n FROM recommendations`);
    console.info(
      `second storm: p50 ${percentile(secondLatencies, 50).toFixed(0)} ms, p99 ${percentile(secondLatencies, 99).toFixed(0)} ms; answers ${JSON.stringify(tally(second.answers))}; ` +
        `${model.calls.size} users computed in all, ${withSet.rows[0]?.n} with a set in Postgres so far`,
    );
    expect(second.networkErrors).toBe(0);
    expect(second.answers.every((a) => a.status === 200)).toBe(true);
    expect([...model.calls.values()].every((n) => n === 1)).toBe(true);

    expect(await api.stop('SIGTERM')).toBe(0);
  }, 60_000);
});
