import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../log.ts';
import { createPrecomputeQueue } from '../precompute/queue.ts';
import { closeRedis, createQueueRedis } from '../redis.ts';

export const QUEUES_PATH = '/admin/queues';

/**
 * The BullMQ queues the API process shows at /admin/queues, on a connection of their own
 * (REDIS_URL, retrying as BullMQ requires; the serving path's cache connection fails fast).
 */
export function createAdminQueues({ redisUrl, prefix, log }: { redisUrl: string; prefix: string; log: Logger }) {
  const connection = createQueueRedis(redisUrl, log);
  const queues: Queue[] = [createPrecomputeQueue({ connection, prefix, log }) as unknown as Queue];
  let closing: Promise<void> | undefined;
  return {
    queues,
    close: () =>
      (closing ??= (async () => {
        await Promise.allSettled(queues.map((queue) => queue.close()));
        await closeRedis(connection);
      })()),
  };
}

/** bull-board's UI and API under QUEUES_PATH, in the caller's (authenticated) context. */
export async function registerQueueBoard(scope: FastifyInstance, queues: readonly Queue[]): Promise<void> {
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(QUEUES_PATH);
  createBullBoard({
    queues: queues.map((queue) => new BullMQAdapter(queue)),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'prewarm queues' } },
  });
  await scope.register(serverAdapter.registerPlugin(), { prefix: QUEUES_PATH });
}
