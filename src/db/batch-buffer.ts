import type { Logger } from '../log.ts';

/**
 * How often buffered events are written by default (`PREWARM_FLUSH_INTERVAL_MS`). 50 ms rather
 * than 200: an event buffered for 200 ms outlives several young-generation collections and is
 * promoted to the old generation, which made the login path's buffered logins and serves most of
 * what its collections kept (scripts/bench/serve.ts --gc: ≈120–150 KB promoted per collection at
 * 50 ms against ≈220–450 KB at 200 ms, Postgres's CPU per login unchanged at 18–19 µs; the
 * interactions API's ingest 40 810 against 36 836 rows/s). A kill also loses less.
 */
export const DEFAULT_FLUSH_INTERVAL_MS = 50;

export interface BatchBufferOptions<T> {
  /** What the buffer holds, for its log lines ("interactions"). */
  name: string;
  /** Writes one batch in one transaction; a rejection keeps the batch for the next flush. */
  write: (batch: T[]) => Promise<void>;
  log: Logger;
  /** Flush at least this often. Default DEFAULT_FLUSH_INTERVAL_MS. */
  flushIntervalMs?: number;
  /** Flush as soon as this many items wait; also the most one write takes. Default 5,000. */
  maxBatch?: number;
  /** Above this many unwritten items the buffer is full: refuse rather than acknowledge. Default 200,000. */
  maxPending?: number;
}

export interface BatchBuffer<T> {
  /**
   * Takes one item whatever the bound: for an item that belongs to something already accepted
   * (the serve of a login whose request was admitted), which must not be refused halfway.
   */
  add(item: T): void;
  /**
   * Takes all of `items` or none: false (nothing taken) when they would put the buffer over
   * `maxPending`, so a caller can refuse a request whole rather than acknowledge part of it.
   */
  offer(items: readonly T[]): boolean;
  /** Writes everything buffered so far; resolves when it is written. */
  flush(): Promise<void>;
  /** Items acknowledged but not yet written. */
  pending(): number;
  /** True when the buffer is at `maxPending`: stop accepting what would add to it. */
  isFull(): boolean;
  /** Stops the timer and flushes; retries until written or `deadlineMs` passes. Idempotent. */
  close(deadlineMs?: number): Promise<void>;
}

/**
 * A bounded write-behind buffer: callers are answered once their items are buffered, a timer
 * and a size trigger write them in batches, one flush at a time, and a failed write puts its
 * batch back in front so nothing acknowledged is lost while the database is away.
 */
export function createBatchBuffer<T>(options: BatchBufferOptions<T>): BatchBuffer<T> {
  const { name, write, log } = options;
  const flushIntervalMs = options.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS;
  const maxBatch = options.maxBatch ?? 5_000;
  const maxPending = options.maxPending ?? 200_000;

  let items: T[] = [];
  let chain: Promise<void> = Promise.resolve();
  let inFlight = 0;
  let consecutiveFailures = 0;
  let full = false;
  let closePromise: Promise<void> | undefined;

  const timer = setInterval(() => {
    if (items.length > 0) void flush().catch(() => undefined);
  }, flushIntervalMs);
  timer.unref();

  async function flushOnce(): Promise<void> {
    // Write what is buffered now, a batch at a time; what arrives meanwhile waits for the next flush.
    let remaining = items.splice(0, items.length);
    try {
      while (remaining.length > 0) {
        const batch = remaining.slice(0, maxBatch);
        await write(batch);
        remaining = remaining.slice(batch.length);
      }
      consecutiveFailures = 0;
    } catch (error) {
      items = remaining.concat(items);
      consecutiveFailures++;
      if (consecutiveFailures === 1 || consecutiveFailures % 50 === 0) {
        log.error({ err: error, pending: items.length, consecutiveFailures }, `writing ${name} to Postgres failed; will retry`);
      }
      throw error;
    }
  }

  function flush(): Promise<void> {
    const run = chain.catch(() => undefined).then(flushOnce);
    chain = run;
    inFlight++;
    run.finally(() => inFlight--).catch(() => undefined);
    return run;
  }

  function reportFullness(): boolean {
    const now = items.length >= maxPending;
    if (now !== full) {
      full = now;
      if (full) log.error({ pending: items.length, maxPending }, `${name} buffer full: refusing until Postgres takes the backlog`);
      else log.info({ pending: items.length, maxPending }, `${name} buffer below its bound again`);
    }
    return now;
  }

  function flushEarly(): void {
    if (items.length >= maxBatch && inFlight === 0) void flush().catch(() => undefined);
  }

  return {
    add(item) {
      items.push(item);
      flushEarly();
    },
    offer(offered) {
      if (closePromise || items.length + offered.length > maxPending) {
        reportFullness();
        return false;
      }
      for (const item of offered) items.push(item);
      flushEarly();
      return true;
    },
    flush,
    pending: () => items.length,
    isFull: reportFullness,
    close(deadlineMs = 10_000) {
      closePromise ??= (async () => {
        clearInterval(timer);
        const giveUpAt = Date.now() + deadlineMs;
        for (;;) {
          try {
            await flush();
            if (items.length === 0) return;
          } catch (error) {
            if (Date.now() >= giveUpAt) {
              log.error({ err: error, lost: items.length }, `could not write ${name} before shutdown`);
              throw error;
            }
            await new Promise((resolve) => setTimeout(resolve, 250));
          }
        }
      })();
      return closePromise;
    },
  };
}
