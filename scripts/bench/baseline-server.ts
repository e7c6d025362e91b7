// The floor the hit path is built on: a Fastify route doing one Redis GET, nothing else.
import Fastify from 'fastify';
import { Redis } from 'ioredis';

const port = Number(process.env.PORT ?? 0);
const prefix = process.env.PREWARM_CACHE_PREFIX ?? 'prewarm:';
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const app = Fastify();
app.get<{ Params: { userId: string } }>('/v1/users/:userId/recommendations', async (request, reply) => {
  const value = await redis.get(`${prefix}rec:${request.params.userId}`);
  reply.header('content-type', 'application/json');
  return value ?? '{}';
});
const url = await app.listen({ port, host: '127.0.0.1' });
process.stdout.write(`listening ${url}\n`);
process.on('SIGTERM', () => {
  void app.close().then(() => redis.quit()).then(() => process.exit(0));
});
