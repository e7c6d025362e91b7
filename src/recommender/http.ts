import type { Logger } from 'pino';
import { z } from 'zod';
import { PrewarmError } from '../errors.ts';
import type { Recommender, ScoredItem, UserRecommendations } from './types.ts';

export interface HttpRecommenderOptions {
  /** Base URL of the model service; `/recommend` and `/popular` are appended. */
  url: string;
  /** Per request, connection and body included. */
  timeoutMs: number;
  /** Sent as `Authorization: Bearer <token>` on every call when set (PREWARM_RECOMMENDER_TOKEN). */
  token?: string | undefined;
  log: Logger;
  /** How long a popular list is reused. Default 60 000. */
  popularTtlMs?: number;
}

const scoredItemSchema = z.object({ itemId: z.string().min(1), score: z.number().finite() });

const recommendResponseSchema = z.object({
  modelVersion: z.string().min(1),
  results: z.record(z.string(), z.object({ items: z.array(scoredItemSchema), personalised: z.boolean().optional() })),
});

const popularResponseSchema = z.object({
  items: z.array(scoredItemSchema),
  modelVersion: z.string().min(1).optional(),
});

/** modelVersion() before the service has answered once. */
export const HTTP_UNKNOWN_VERSION = 'http-unknown';

/**
 * A team's own model behind HTTP (contract in the README):
 * - POST `{url}/recommend` `{ userIds, at, k }` →
 *   `{ modelVersion, results: { [userId]: { items: [{ itemId, score }], personalised? } } }`;
 *   a user missing from `results` gets the popular items, personalised: false; `personalised`
 *   defaults to true for a user that is present.
 * - GET `{url}/popular?k=&at=` → `{ items: [{ itemId, score }], modelVersion? }`, reused for
 *   popularTtlMs.
 * With a token, every call carries `Authorization: Bearer <token>`.
 * Any non-2xx status, timeout, network failure or response not matching the contract throws
 * PREWARM_ERR_RECOMMENDER with the cause attached; batch workers retry, the serving path falls
 * back.
 */
export function createHttpRecommender(options: HttpRecommenderOptions): Recommender {
  const base = options.url.replace(/\/+$/, '');
  const popularTtlMs = options.popularTtlMs ?? 60_000;
  const { log } = options;
  const authorization: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};
  let version = HTTP_UNKNOWN_VERSION;
  let popularCache: { atMs: number; k: number; fetchedAt: number; items: ScoredItem[] } | undefined;
  let popularPending: { atMs: number; k: number; promise: Promise<ScoredItem[]> } | undefined;

  async function call<T>(what: string, url: string, init: RequestInit, schema: z.ZodType<T>): Promise<T> {
    let response: Response;
    let body: unknown;
    try {
      response = await fetch(url, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), ...authorization }, signal: AbortSignal.timeout(options.timeoutMs) });
      const text = await response.text();
      if (!response.ok) {
        throw new PrewarmError('PREWARM_ERR_RECOMMENDER', `recommender service ${what} answered ${response.status}: ${text.slice(0, 200)}`);
      }
      try {
        body = JSON.parse(text);
      } catch (error) {
        throw new PrewarmError('PREWARM_ERR_RECOMMENDER', `recommender service ${what} sent a malformed response: not JSON`, { cause: error });
      }
    } catch (error) {
      if (error instanceof PrewarmError) throw error;
      const timedOut = error instanceof Error && error.name === 'TimeoutError';
      const reason = timedOut ? `timed out after ${options.timeoutMs} ms` : `failed: ${(error as Error).message}`;
      throw new PrewarmError('PREWARM_ERR_RECOMMENDER', `recommender service ${what} ${reason}`, { cause: error });
    }
    const parsed = schema.safeParse(body);
    if (!parsed.success) {
      const problem = parsed.error.issues.slice(0, 3).map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
      throw new PrewarmError('PREWARM_ERR_RECOMMENDER', `recommender service ${what} sent a malformed response: ${problem.join('; ')}`, {
        cause: parsed.error,
      });
    }
    return parsed.data;
  }

  async function fetchPopular(at: Date, k: number): Promise<ScoredItem[]> {
    const query = new URLSearchParams({ k: String(k), at: at.toISOString() });
    const body = await call('GET /popular', `${base}/popular?${query}`, { method: 'GET' }, popularResponseSchema);
    if (body.modelVersion !== undefined) version = body.modelVersion;
    return body.items;
  }

  // Reuse a list fetched for an earlier `at` (never a later one: that would leak the future)
  // within the TTL, in data time and in wall time; concurrent misses share one request.
  function popular(at: Date, k: number): Promise<ScoredItem[]> {
    const atMs = at.getTime();
    const covers = (entry: { atMs: number; k: number }): boolean => entry.k >= k && entry.atMs <= atMs && atMs - entry.atMs < popularTtlMs;
    if (popularCache !== undefined && covers(popularCache) && Date.now() - popularCache.fetchedAt < popularTtlMs) {
      return Promise.resolve(popularCache.items.slice(0, k));
    }
    if (popularPending !== undefined && covers(popularPending)) return popularPending.promise.then((items) => items.slice(0, k));
    const promise = fetchPopular(at, k)
      .then((items) => {
        popularCache = { atMs, k, fetchedAt: Date.now(), items };
        return items;
      })
      .finally(() => {
        if (popularPending?.promise === promise) popularPending = undefined;
      });
    popularPending = { atMs, k, promise };
    return promise.then((items) => items.slice(0, k));
  }

  return {
    kind: 'http',
    modelVersion: () => version,
    popular,

    async recommend(userIds, at, k) {
      const unique = [...new Set(userIds)];
      const result = new Map<string, UserRecommendations>();
      if (unique.length === 0) return result;
      const body = await call(
        'POST /recommend',
        `${base}/recommend`,
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userIds: unique, at: at.toISOString(), k }) },
        recommendResponseSchema,
      );
      version = body.modelVersion;
      const missing = unique.filter((userId) => !Object.hasOwn(body.results, userId));
      const fallback = missing.length > 0 ? await popular(at, k) : [];
      if (missing.length > 0) log.debug({ missing: missing.length }, 'recommender service left users out; serving popular items');
      for (const userId of unique) {
        const answer = Object.hasOwn(body.results, userId) ? body.results[userId] : undefined;
        result.set(
          userId,
          answer === undefined
            ? { items: fallback.slice(0, k), personalised: false }
            : { items: answer.items.slice(0, k), personalised: answer.personalised ?? true },
        );
      }
      return result;
    },

    async close() {
      // Nothing held open: fetch keeps no per-adapter connection state worth releasing.
    },
  };
}
