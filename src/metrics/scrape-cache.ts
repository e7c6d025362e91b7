import type { Logger } from '../log.ts';

/**
 * A Postgres read behind gauges collected at scrape: one read in flight however many gauges (and
 * scrapers) ask, its result reused for `maxAgeMs`, and a failed read answered `undefined` so the
 * gauges keep their previous figures (logged once until a read succeeds again).
 */
export function createScrapeCache<T>(read: () => Promise<T>, options: { maxAgeMs: number; log: Logger; what: string }): () => Promise<T | undefined> {
  let cached: { at: number; value: T } | undefined;
  let pending: Promise<T | undefined> | undefined;
  let warned = false;
  return () =>
    (pending ??= (async () => {
      if (cached && Date.now() - cached.at < options.maxAgeMs) return cached.value;
      try {
        cached = { at: Date.now(), value: await read() };
        warned = false;
        return cached.value;
      } catch (error) {
        if (!warned) options.log.warn({ err: error }, `reading ${options.what} for /metrics failed`);
        warned = true;
        return undefined;
      }
    })().finally(() => {
      pending = undefined;
    }));
}
