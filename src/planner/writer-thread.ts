// The chunk writer thread: receives encoded chunks from a precompute worker's compute thread
// and writes them (Postgres transaction, then Redis) with connections of its own.
import { parentPort, workerData } from 'node:worker_threads';
import { createPool } from '../db/pool.ts';
import { toError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { createRecommendationCache } from '../recommendations/cache.ts';
import { createRecommendationStore } from '../recommendations/store.ts';
import { createQueueRedis } from '../redis.ts';
import { persistChunk, type ChunkWrite } from './chunk-persister.ts';
import type { WriterThreadOptions, WriterThreadReply, WriterThreadRequest } from './thread-persister.ts';

const options = workerData as WriterThreadOptions;
const log = createLogger({ level: options.logLevel, name: 'prewarm-worker-writer' });
const pool = createPool({ databaseUrl: options.databaseUrl, schema: options.schema, max: options.poolSize, applicationName: 'prewarm-worker-writer', log });
// Like the worker's: commands wait through a Redis outage instead of failing fast.
const redis = createQueueRedis(options.cacheRedisUrl, log);
const persist = persistChunk({
  pool,
  store: createRecommendationStore({ pool }),
  cache: createRecommendationCache({ redis, prefix: options.cachePrefix, log }),
  log,
});

const port = parentPort!;
const inFlight = new Set<Promise<unknown>>();
port.on('message', (request: WriterThreadRequest) => {
  if (request.kind === 'close') {
    // Writes in flight finish before the connections close.
    void Promise.allSettled(inFlight)
      .then(() => Promise.allSettled([pool.end(), redis.quit()]))
      .then(() => port.postMessage({ kind: 'closed' } satisfies WriterThreadReply));
    return;
  }
  const write: ChunkWrite = request.write;
  const written = persist(write);
  inFlight.add(written);
  void written.catch(() => undefined).finally(() => inFlight.delete(written));
  written.then(
    (recorded) => port.postMessage({ kind: 'persisted', id: request.id, recorded } satisfies WriterThreadReply),
    (thrown: unknown) => {
      const error = toError(thrown);
      const code = (error as { code?: unknown }).code;
      port.postMessage({ kind: 'failed', id: request.id, message: error.message, code: typeof code === 'string' ? code : undefined } satisfies WriterThreadReply);
    },
  );
});
port.postMessage({ kind: 'ready' } satisfies WriterThreadReply);
