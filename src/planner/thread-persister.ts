import { Worker } from 'node:worker_threads';
import { PrewarmError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ChunkPersister, ChunkWrite } from './chunk-persister.ts';

export interface WriterThreadOptions {
  databaseUrl: string;
  schema: string;
  /** Connections of the thread's pool: one per chunk written at once. */
  poolSize: number;
  cacheRedisUrl: string;
  cachePrefix: string;
  logLevel: string;
}

export type WriterThreadRequest = { kind: 'persist'; id: number; write: ChunkWrite } | { kind: 'close' };
export type WriterThreadReply =
  | { kind: 'ready' }
  | { kind: 'closed' }
  | { kind: 'persisted'; id: number; recorded: boolean }
  | { kind: 'failed'; id: number; message: string; code: string | undefined };

const THREAD_ENTRY = new URL('./writer-thread.mjs', import.meta.url);

interface Pending {
  resolve(recorded: boolean): void;
  reject(error: Error): void;
}

/**
 * Chunk writes in a thread of their own. A worker process is CPU-bound on its compute thread;
 * writing a chunk there (driver protocol, socket writes, their garbage) took ≈ 40 µs per 100-item
 * set of that thread's time. Here the compute thread only encodes (≈ 11 µs per set: binary COPY
 * and MessagePack, into buffers it then transfers without copying), and the writes run beside it.
 * If the thread dies, the writes in flight fail (their chunks are retried) and the next write
 * starts a new thread.
 */
export async function createThreadPersister(options: WriterThreadOptions & { log: Logger }): Promise<ChunkPersister> {
  const { log, ...threadOptions } = options;
  const pending = new Map<number, Pending>();
  let nextId = 0;
  let thread: Promise<Worker> | undefined;
  let closed = false;

  function failAll(error: Error): void {
    for (const { reject } of pending.values()) reject(error);
    pending.clear();
  }

  function start(): Promise<Worker> {
    return new Promise<Worker>((resolve, reject) => {
      const worker = new Worker(THREAD_ENTRY, { workerData: threadOptions });
      let ready = false;
      worker.on('message', (reply: WriterThreadReply) => {
        if (reply.kind === 'ready') {
          ready = true;
          resolve(worker);
        } else if (reply.kind === 'persisted' || reply.kind === 'failed') {
          const waiting = pending.get(reply.id);
          pending.delete(reply.id);
          if (reply.kind === 'persisted') waiting?.resolve(reply.recorded);
          else waiting?.reject(Object.assign(new Error(reply.message), reply.code === undefined ? {} : { code: reply.code }));
        }
      });
      worker.on('error', (error) => log.error({ err: error }, 'chunk writer thread failed'));
      worker.once('exit', (exitCode) => {
        thread = undefined;
        const error = new PrewarmError('PREWARM_ERR_WRITER', `chunk writer thread exited (code ${exitCode})`);
        failAll(error);
        if (!ready) reject(error);
      });
    });
  }

  thread = start();
  await thread;

  return {
    async persist(write) {
      if (closed) throw new PrewarmError('PREWARM_ERR_WRITER', 'chunk writer closed');
      const worker = await (thread ??= start());
      const id = nextId++;
      return new Promise<boolean>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        const transfer = [write.sets.buffer, write.cache.values.buffer].filter((buffer, i, all) => all.indexOf(buffer) === i) as ArrayBuffer[];
        worker.postMessage({ kind: 'persist', id, write } satisfies WriterThreadRequest, transfer);
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      const current = await thread?.catch(() => undefined);
      if (!current) return;
      // The thread finishes the writes in flight, then closes its connections.
      await new Promise<void>((resolve) => {
        current.on('message', (reply: WriterThreadReply) => reply.kind === 'closed' && resolve());
        current.once('exit', () => resolve());
        current.postMessage({ kind: 'close' } satisfies WriterThreadRequest);
      });
      await current.terminate();
    },
  };
}
