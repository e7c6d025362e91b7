// The floor the hit path is built on: a Fastify route doing one Redis GET, nothing else.
// scripts/bench/redis-client.ts also runs it with other Redis clients and an MGET of three keys
// (BASELINE_CLIENT, BASELINE_COMMAND) to compare what each client costs the collector.
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import pino from 'pino';
import { createServingRedis } from '../../src/redis.ts';

const port = Number(process.env.PORT ?? 0);
const prefix = process.env.PREWARM_CACHE_PREFIX ?? 'prewarm:';
const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const client = process.env.BASELINE_CLIENT ?? 'plain';
const command = process.env.BASELINE_COMMAND ?? 'get';
const redis =
  client === 'serving'
    ? createServingRedis(url, pino({ level: 'warn' }))
    : new Redis(url, client === 'auto-pipelining' ? { enableAutoPipelining: true, commandTimeout: 250 } : {});
const app = Fastify();
app.get<{ Params: { userId: string } }>('/v1/users/:userId/recommendations', async (request, reply) => {
  reply.header('content-type', 'application/json');
  const key = `${prefix}rec:${request.params.userId}`;
  if (command === 'mget') {
    const [value] = await redis.mgetBuffer(key, `${key}:a`, `${key}:b`);
    return value ?? '{}';
  }
  const value = await redis.get(key);
  return value ?? '{}';
});
const listening = await app.listen({ port, host: '127.0.0.1' });
process.stdout.write(`listening ${listening}\n`);
process.on('SIGTERM', () => {
  void app.close().then(() => redis.quit()).then(() => process.exit(0));
});
