// What the login path's Redis client costs the collector: the baseline route (a Fastify route
// doing one MGET of three keys, scripts/bench/baseline-server.ts) with a plain ioredis client,
// with ioredis's auto-pipelining (the serving client until 2026-12-05) and with the serving
// client (src/redis.ts, corked per turn), interleaved round by round.
//   npx tsx scripts/bench/redis-client.ts [--seconds 8] [--rounds 2] [--connections 50]
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { deleteKeysWithPrefix } from '../../src/redis.ts';
import { GC_TRACE_FLAG, summarizeGc } from './gc-trace.ts';
import { load, printTable, startServerProcess, uniqueName } from './lib.ts';

const CLIENTS = ['plain', 'auto-pipelining', 'serving'] as const;
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '8' }, rounds: { type: 'string', default: '2' }, connections: { type: 'string', default: '50' } } });
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const connections = Number(values.connections);
if (!(seconds > 0) || !(rounds >= 1) || !(connections > 0)) throw new Error('usage: --seconds N (> 0) --rounds N (>= 1) --connections N (> 0)');

const prefix = `${uniqueName('bench_redis_client')}:`;
const redis = new Redis(REDIS_URL);
// 3 000 users, each with a cached answer of about a login's size.
const users = Array.from({ length: 3_000 }, (_, n) => `user-${n}`);
const answer = JSON.stringify({ items: Array.from({ length: 20 }, (_, n) => ({ itemId: `item-${n}`, score: 1 / (n + 1) })) });
const rows: Record<string, string | number>[] = [];
try {
  for (let i = 0; i < users.length; i += 500) await redis.mset(...users.slice(i, i + 500).flatMap((user) => [`${prefix}rec:${user}`, answer]));
  for (let round = 1; round <= rounds; round++) {
    for (const client of CLIENTS) {
      const server = await startServerProcess([process.execPath, GC_TRACE_FLAG, '--import', 'tsx', 'scripts/bench/baseline-server.ts'], {
        PORT: '0',
        REDIS_URL,
        PREWARM_CACHE_PREFIX: prefix,
        BASELINE_CLIENT: client,
        BASELINE_COMMAND: 'mget',
      });
      try {
        await load('warm-up', server.url, users, { connections, seconds: 2 });
        const before = server.output().length;
        const result = await load(client, server.url, users, { connections, seconds });
        const gc = summarizeGc(server.output().slice(before));
        rows.push({
          round,
          client,
          'req/s': Math.round(result.requestsPerSecond),
          'p99 ms': result.p99Ms,
          errors: result.errors + result.non2xx,
          scavenges: gc.scavenges,
          'mean pause ms': gc.scavengeMeanMs,
          'KB promoted per scavenge': gc.promotedKbPerScavenge,
          'full collections': gc.markCompacts,
        });
      } finally {
        await server.stop();
      }
    }
  }
  printTable(rows);
} finally {
  await deleteKeysWithPrefix(redis, prefix);
  await redis.quit();
}
