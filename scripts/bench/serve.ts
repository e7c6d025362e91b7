// Login-path benchmark: the precomputed (hit) path and the on-demand path of `prewarm serve`,
// each next to a bare Fastify + one Redis GET baseline measured in the same run.
//   npx tsx scripts/bench/serve.ts [--seconds 10] [--connections 50] [--paths baseline,precomputed,on_demand]
//                                  [--profile DIR] [--rate N] [--data DIR] [--gc] [--node-flags="FLAGS"]
// --data DIR serves the logs in DIR (logins.csv.gz and interactions.csv.gz, e.g.
// /work/shared/data/oulad-2013) instead of 3 000 generated users;
// --profile runs prewarm's server under `node --cpu-prof` and prints its self time per function;
// --rate N sends N requests/s instead of as many as answered (to cost a request on a busy machine);
// --gc runs both servers under `node --trace-gc-nvp` and reports, per path, the young-generation
// collections (count, mean pause, KB promoted to the old generation per collection);
// --node-flags="FLAGS" passes node/V8 flags to both servers (--node-flags=--no-allocation-site-pretenuring).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pino from 'pino';
import { createPool } from '../../src/db/pool.ts';
import { createFreshness } from '../../src/freshness/freshness.ts';
import { MAX_CLOCK_AHEAD_MS } from '../../src/interactions/route.ts';
import { createRecommendationCache } from '../../src/sets/cache.ts';
import { createRecommendationStore } from '../../src/sets/store.ts';
import { storedItems, type RecommendationSet } from '../../src/sets/set.ts';
import { createRecommender } from '../../src/recommender/index.ts';
import { historiesBefore } from '../../src/recommender/sql.ts';
import { deleteKeysWithPrefix } from '../../src/redis.ts';
import { GC_TRACE_FLAG, summarizeGc, type GcSummary } from './gc-trace.ts';
import { cpuMeter, load, postgresBackendsOf, printProfile, printTable, startServerProcess, uniqueName, type LoadResult } from './lib.ts';

const TOKEN = 'bench-token-0123456789abcdef';
const PATHS = ['baseline', 'precomputed', 'on_demand'] as const;
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string', default: '10' },
      connections: { type: 'string', default: '50' },
      paths: { type: 'string', default: PATHS.join(',') },
      profile: { type: 'string' },
      rate: { type: 'string' },
      data: { type: 'string' },
      gc: { type: 'boolean', default: false },
      'node-flags': { type: 'string', default: '' },
    },
  });
  const seconds = Number(values.seconds);
  const connections = Number(values.connections);
  const paths = values.paths.split(',');
  const rate = values.rate === undefined ? undefined : Number(values.rate);
  if (rate !== undefined && !(rate > 0)) throw new Error(`--rate must be a positive number of requests per second, not ${values.rate}`);
  const unknown = paths.filter((p) => !(PATHS as readonly string[]).includes(p));
  if (unknown.length > 0 || !(seconds > 0) || !(connections > 0)) {
    throw new Error(`usage: --seconds N (> 0) --connections N (> 0) --paths ${PATHS.join(',')} (unknown: ${unknown.join(',') || 'none'})`);
  }
  const schema = uniqueName('bench_serve');
  const prefix = `${schema}:`;
  const env = { PREWARM_DB_SCHEMA: schema, PREWARM_LOG_LEVEL: 'warn', PREWARM_CACHE_PREFIX: prefix, DATABASE_URL, REDIS_URL };
  const cli = (...args: string[]) => execFileSync(process.execPath, ['src/cli/bin.mjs', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] }).toString();
  const log = pino({ level: 'warn' });
  const dataDir = mkdtempSync(join(tmpdir(), 'prewarm-bench-'));
  const pool = createPool({ databaseUrl: DATABASE_URL, schema, log });
  const redis = new Redis(REDIS_URL);
  const servers: { stop(): Promise<void> }[] = [];
  try {
    process.stderr.write('bench serve: preparing data (generate, migrate, import, train)…\n');
    cli('migrate');
    if (values.data === undefined) {
      cli('generate', '--out', dataDir, '--seed', '7', '--users', '3000', '--days', '60');
      cli('import', '--logins', join(dataDir, 'logins.csv'), '--interactions', join(dataDir, 'interactions.csv'));
    } else {
      cli('import', '--logins', join(values.data, 'logins.csv.gz'), '--interactions', join(values.data, 'interactions.csv.gz'));
    }
    cli('train-recommender');

    const users = (await pool.query<{ user_id: string }>('SELECT DISTINCT user_id FROM interactions ORDER BY user_id')).rows.map((r) => r.user_id);
    const precomputedUsers = users.filter((_, i) => i % 2 === 0);
    const onDemandUsers = users.filter((_, i) => i % 2 === 1);
    // A deployment in its steady state: interaction times have been tracked in Redis for a day
    // (src/freshness), so the sets precomputed below are judged from Redis, as every set computed
    // after the first day of a deployment is. Without it each user's first login would be counted
    // in Postgres (the check after Redis lost its keys), which is not the path being measured.
    await createFreshness({ redis, prefix, pool, log, clock: { now: () => new Date(Date.now() - 86_400_000) }, clockAheadMs: MAX_CLOCK_AHEAD_MS }).start();
    await precompute(pool, redis, prefix, precomputedUsers, log);

    const serverFlags = [...(values.gc ? [GC_TRACE_FLAG] : []), ...values['node-flags'].split(' ').filter((flag) => flag !== '')];
    const baseline = await startServerProcess([process.execPath, ...serverFlags, '--import', 'tsx', 'scripts/bench/baseline-server.ts'], { PORT: '0', REDIS_URL, PREWARM_CACHE_PREFIX: prefix });
    servers.push(baseline);
    const profiling = values.profile === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', values.profile];
    const prewarm = await startServerProcess([process.execPath, ...serverFlags, ...profiling, 'src/cli/bin.mjs', 'serve'], {
      ...env,
      PREWARM_LOG_LEVEL: 'info',
      PORT: '0',
      PREWARM_API_TOKENS: TOKEN,
      // Every on-demand set expires at once, so each request of the on-demand phase computes.
      PREWARM_ON_DEMAND_TTL: '1ms',
    });
    servers.push(prewarm);

    const results: (LoadResult & { cpuUsPerRequest: Record<string, number>; gc?: GcSummary })[] = [];
    for (const [name, url, userIds, token] of [
      ['warm-up', prewarm.url, precomputedUsers, TOKEN],
      ['baseline', baseline.url, precomputedUsers, undefined],
      ['precomputed', prewarm.url, precomputedUsers, TOKEN],
      ['on_demand', prewarm.url, onDemandUsers, TOKEN],
    ] as const) {
      if (name !== 'warm-up' && !paths.includes(name)) continue;
      // CPU per request of each party on this shared machine: the server, the Postgres backends
      // of its connections, and this process (the load generator).
      const server = name === 'baseline' ? baseline : prewarm;
      const meter = cpuMeter(() => ({ server: [server.child.pid as number], postgres: postgresBackendsOf(server.child.pid as number) }));
      meter.start();
      const printedBefore = server.output().length;
      const result = await load(name, url, userIds, { connections, seconds: name === 'warm-up' ? 2 : seconds, token, rate });
      const cpu = meter.stop();
      const cpuUsPerRequest = Object.fromEntries(Object.entries(cpu).filter(([, ms]) => !Number.isNaN(ms)).map(([who, ms]) => [who, Math.round((1000 * ms) / result.requests)]));
      const gc = values.gc ? { gc: summarizeGc(server.output().slice(printedBefore)) } : {};
      if (name !== 'warm-up') results.push({ ...result, cpuUsPerRequest, ...gc });
    }
    await prewarm.stop();
    const onDemandCost = await costOnDemand(pool, onDemandUsers.slice(0, 300), log);
    const sources = (
      await pool.query<{ source: string; reason: string | null; n: number }>(
        'SELECT source, reason, count(*)::int AS n FROM serves GROUP BY source, reason ORDER BY n DESC',
      )
    ).rows;

    if (values.profile !== undefined) printProfile(values.profile);
    const base = results.find((r) => r.name === 'baseline') ?? (results[0] as LoadResult);
    printTable(
      results.map((r) => ({
        path: r.name,
        'req/s': Math.round(r.requestsPerSecond),
        'p50 ms': r.p50Ms,
        'p99 ms': r.p99Ms,
        'throughput vs baseline': (r.requestsPerSecond / base.requestsPerSecond).toFixed(2),
        errors: r.errors + r.non2xx,
        'CPU µs/request': Object.entries(r.cpuUsPerRequest).map(([who, us]) => `${who} ${us}`).join(', '),
        ...(r.gc
          ? { 'server GC': `${r.gc.scavenges} scavenges of ${r.gc.scavengeMeanMs} ms (max ${r.gc.scavengeMaxMs}), ${r.gc.promotedKbPerScavenge} KB promoted each; ${r.gc.markCompacts} full of ${r.gc.markCompactMeanMs} ms` }
          : {}),
      })),
    );
    process.stdout.write(
      `one on-demand computation (${onDemandCost.users} users, 100 items, one at a time, in this process): history read p50 ${onDemandCost.historyReadMs.p50} ms, p99 ${onDemandCost.historyReadMs.p99} ms; whole computation p50 ${onDemandCost.computeMs.p50} ms, p99 ${onDemandCost.computeMs.p99} ms; scoring and top-k ≈ ${onDemandCost.scoringShare} of it\n`,
    );
    process.stdout.write(`serves recorded by source: ${sources.map((s) => `${s.source}${s.reason ? `/${s.reason}` : ''}=${s.n}`).join(', ')}\n`);
    // The on-demand phase's answers that fell back (budget, overload) instead of computing.
    const onDemandServes = sources.filter((s) => s.source === 'on_demand' || s.source === 'fallback').reduce((sum, s) => sum + s.n, 0);
    const fallbackServes = sources.filter((s) => s.source === 'fallback').reduce((sum, s) => sum + s.n, 0);
    const report = {
      date: new Date().toISOString(),
      machine: machine(),
      seconds,
      connections,
      ...(rate === undefined ? {} : { rate }),
      paths: results.map((r) => ({
        name: r.name,
        rps: Math.round(r.requestsPerSecond),
        p50Ms: r.p50Ms,
        p99Ms: r.p99Ms,
        ratio: Number((r.requestsPerSecond / base.requestsPerSecond).toFixed(3)),
        p99Ratio: Number((r.p99Ms / base.p99Ms).toFixed(3)),
        errors: r.errors + r.non2xx,
        cpuUsPerRequest: r.cpuUsPerRequest,
        ...(r.gc ? { gc: r.gc } : {}),
      })),
      onDemandCost,
      onDemandFallbackShare: onDemandServes === 0 ? 0 : Number((fallbackServes / onDemandServes).toFixed(4)),
      sources,
    };
    mkdirSync('reports', { recursive: true });
    writeFileSync('reports/bench-serve.json', `${JSON.stringify(report, null, 2)}\n`);
  } finally {
    for (const server of servers) await server.stop();
    await deleteKeysWithPrefix(redis, prefix);
    await redis.quit();
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    await pool.end();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function machine(): string {
  return `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`;
}

/**
 * What one on-demand computation costs, split: the history read (the recommender's query,
 * rows decoded) and the rest (scoring, top-k, popular filler), user by user once the load is over.
 */
async function costOnDemand(pool: ReturnType<typeof createPool>, userIds: string[], log: pino.Logger) {
  const recommender = await createRecommender({ config: { recommender: 'item-cf', recommenderUrl: undefined, recommenderTimeoutMs: 1_000 }, pool, log });
  const history: number[] = [];
  const compute: number[] = [];
  const now = new Date();
  try {
    await recommender.recommend(userIds.slice(0, 10), now, 100);
    for (const userId of userIds) {
      // Once untimed, so that both timings below read the user's history from a warm cache.
      await recommender.recommend([userId], now, 100);
      let started = performance.now();
      await pool.query({ ...historiesBefore([userId], now), rowMode: 'array' });
      history.push(performance.now() - started);
      started = performance.now();
      await recommender.recommend([userId], now, 100);
      compute.push(performance.now() - started);
    }
  } finally {
    await recommender.close();
  }
  const quantiles = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const at = (q: number) => Number((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(2));
    return { p50: at(0.5), p99: at(0.99), mean: Number((values.reduce((a, b) => a + b, 0) / Math.max(1, values.length)).toFixed(2)) };
  };
  const historyReadMs = quantiles(history);
  const computeMs = quantiles(compute);
  const scoringShare = computeMs.mean === 0 ? 0 : Number(Math.max(0, 1 - historyReadMs.mean / computeMs.mean).toFixed(2));
  return { users: userIds.length, historyReadMs, computeMs, scoringShare };
}

async function precompute(pool: ReturnType<typeof createPool>, redis: Redis, prefix: string, userIds: string[], log: pino.Logger): Promise<void> {
  const recommender = await createRecommender({ config: { recommender: 'item-cf', recommenderUrl: undefined, recommenderTimeoutMs: 1_000 }, pool, log });
  const store = createRecommendationStore({ pool });
  const cache = createRecommendationCache({ redis, prefix, log });
  const now = new Date();
  for (let i = 0; i < userIds.length; i += 500) {
    const chunk = userIds.slice(i, i + 500);
    const results = await recommender.recommend(chunk, now, 100);
    const sets: RecommendationSet[] = chunk.map((userId) => ({
      id: crypto.randomUUID(),
      userId,
      source: 'batch',
      runId: null,
      holdout: false,
      computedAt: now,
      expiresAt: new Date(now.getTime() + 86_400_000),
      ...storedItems(results.get(userId)?.items ?? []),
      modelVersion: recommender.modelVersion(),
      computeMs: 1,
    }));
    await store.insertMany(pool, sets);
    await cache.setMany(sets, now);
  }
  await recommender.close();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await main();
}
