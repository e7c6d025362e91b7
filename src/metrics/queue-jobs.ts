import { Gauge, type Registry } from 'prom-client';
import type { Logger } from '../log.ts';

/** The part of a BullMQ Queue the gauge reads. */
export interface CountableQueue {
  readonly name: string;
  getJobCounts(...types: ('waiting' | 'active' | 'failed' | 'delayed')[]): Promise<Record<string, number>>;
}

const STATES = ['waiting', 'active', 'failed', 'delayed'] as const;

/**
 * `prewarm_queue_jobs{queue, state}`: jobs waiting, active, failed and delayed, read from Redis at
 * each scrape (one `getJobCounts` call). Our own gauge rather than BullMQ's
 * `exportPrometheusMetrics()`: that one returns text outside the registry, and its
 * completed/failed counters read BullMQ's metrics collection, which prewarm does not enable (they
 * would stay 0). A Redis that does not answer leaves the previous values and logs a warning.
 */
export function registerQueueJobsGauge(registry: Registry, queues: readonly CountableQueue[], log: Logger): Gauge<'queue' | 'state'> {
  return new Gauge({
    name: 'prewarm_queue_jobs',
    help: 'Jobs in a BullMQ queue by state (waiting, active, failed, delayed), read at scrape',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
    async collect() {
      await Promise.all(
        queues.map(async (queue) => {
          try {
            // Redis commands wait through an outage in these processes: do not let a scrape hang.
            const counts = await withTimeout(queue.getJobCounts(...STATES), 2_000);
            for (const state of STATES) this.set({ queue: queue.name, state }, counts[state] ?? 0);
          } catch (error) {
            log.warn({ err: error, queue: queue.name }, 'reading queue counts for /metrics failed');
          }
        }),
      );
    },
  });
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
