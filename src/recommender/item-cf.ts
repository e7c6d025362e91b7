import type { Logger } from 'pino';
import type { Queryable } from '../db/pool.ts';
import { PrewarmError } from '../errors.ts';
import { DEFAULT_POPULAR_COUNT, ITEM_CF_KIND, type ItemCfModel } from './item-cf-train.ts';
import { latestItemCfVersion, loadModel } from './model-store.ts';
import { historiesBefore, popularBefore } from './sql.ts';
import { topK } from './top-k.ts';
import type { Recommender, ScoredItem, UserRecommendations } from './types.ts';

export { buildItemCfModel, trainItemCf, type InteractionInput, type ItemCfModel } from './item-cf-train.ts';
export { loadLatestModel, loadModel, saveModel } from './model-store.ts';

/** modelVersion() while no item-cf model has been trained: popularity from the interactions table. */
export const POPULARITY_ONLY_VERSION = 'popularity-only';

// Popularity drifts slowly and its query scans the whole history: refresh it rarely.
const POPULARITY_REFRESH_MS = 10 * 60_000;

export interface ItemCfRecommenderOptions {
  pool: Queryable;
  log: Logger;
  /** The model to serve; undefined: popularity only until a trained model appears. */
  model?: ItemCfModel | undefined;
  /**
   * How often to look for a newer model in `recommender_models` (another process may have run
   * `train-recommender`); 0 turns polling off, as a replay that calls setModel() wants.
   * Default 60 000.
   */
  reloadIntervalMs?: number;
}

export interface ItemCfRecommender extends Recommender {
  readonly kind: typeof ITEM_CF_KIND;
  /** Serves `model` from the next call on (a replay retraining in memory as its clock moves). */
  setModel(model: ItemCfModel): void;
  /** Looks for a newer stored model now; true when it switched to one. */
  reload(): Promise<boolean>;
}

/** Scratch buffers sized to one model, shared by calls: scoring is synchronous, so never interleaved. */
interface Serving {
  model: ItemCfModel;
  score: Float64Array;
  touched: Int32Array;
  owned: Int32Array;
  stamp: number;
  warnedEarly: boolean;
}

/**
 * Item-based collaborative filtering over the users' interactions before `at`: a candidate's
 * score is Σ over the user's items i of ln(1 + weight(u, i)) · sim(i, candidate); items the
 * user already has are never recommended.
 *
 * Without usable history (no interactions before `at`, or only items without neighbours) a
 * user gets the popular items they do not have, personalised: false. With history but fewer
 * than k scored items, the list is padded with popular items at score 0 (still personalised).
 *
 * A model must never see the future: when `at` is before the model's data horizon (a replay
 * running a model trained later), the call is answered from popularity computed before `at`,
 * unpersonalised, with one warning per model. The same popularity serves when no model was
 * trained at all (modelVersion `popularity-only`).
 */
export function createItemCfRecommender(options: ItemCfRecommenderOptions): ItemCfRecommender {
  const { pool, log } = options;
  const reloadIntervalMs = options.reloadIntervalMs ?? 60_000;
  let serving: Serving | undefined;
  let closed = false;
  let reloading: Promise<boolean> | undefined;
  const popularity = createPopularityCache(pool, log, POPULARITY_REFRESH_MS);

  function install(model: ItemCfModel): void {
    const items = model.itemIds.length;
    serving = { model, score: new Float64Array(items), touched: new Int32Array(items), owned: new Int32Array(items), stamp: 0, warnedEarly: false };
  }
  if (options.model !== undefined) install(options.model);

  /** The model, if it may answer for `at` (trained only on data before it). */
  function usable(at: Date): Serving | undefined {
    if (serving === undefined) return undefined;
    if (at.getTime() >= serving.model.dataUntil.getTime()) return serving;
    if (!serving.warnedEarly) {
      serving.warnedEarly = true;
      log.warn(
        { version: serving.model.version, at: at.toISOString(), dataUntil: serving.model.dataUntil.toISOString() },
        'recommender model was trained on data after the requested instant; answering with popularity before it',
      );
    }
    return undefined;
  }

  async function reload(): Promise<boolean> {
    if (closed) return false;
    reloading ??= (async () => {
      try {
        const latest = await latestItemCfVersion(pool);
        if (latest === undefined || latest === serving?.model.version) return false;
        const model = await loadModel(pool, latest);
        if (model === undefined || closed) return false;
        install(model);
        log.info({ version: model.version, dataUntil: model.dataUntil.toISOString() }, 'recommender model loaded');
        return true;
      } finally {
        reloading = undefined;
      }
    })();
    return reloading;
  }

  const timer =
    reloadIntervalMs > 0
      ? setInterval(() => {
          reload().catch((error: unknown) => log.error({ err: error }, 'could not reload the recommender model'));
        }, reloadIntervalMs)
      : undefined;
  timer?.unref();

  return {
    kind: ITEM_CF_KIND,
    modelVersion: () => serving?.model.version ?? POPULARITY_ONLY_VERSION,
    setModel: install,
    reload,

    async popular(at, k) {
      const current = usable(at);
      const list = current !== undefined ? current.model.popular : await popularity.before(at);
      return list.slice(0, Math.max(0, k));
    },

    async recommend(userIds, at, k) {
      const result = new Map<string, UserRecommendations>();
      const unique = [...new Set(userIds)];
      if (unique.length === 0) return result;
      const current = usable(at);
      const [rows, fallback] = await Promise.all([
        pool.query<[string, string, number]>({ ...historiesBefore(unique, at), rowMode: 'array' }),
        current !== undefined ? current.model.popular : popularity.before(at),
      ]);
      const histories = new Map<string, Map<string, number>>();
      for (const [userId, itemId, weight] of rows.rows) {
        let history = histories.get(userId);
        if (history === undefined) histories.set(userId, (history = new Map()));
        history.set(itemId, weight);
      }
      const none = new Map<string, number>();
      for (const userId of unique) {
        const history = histories.get(userId) ?? none;
        const scored = current !== undefined && history.size > 0 ? scoreUser(current, history, k) : [];
        if (scored.length === 0) {
          result.set(userId, { items: withPopular([], fallback, history, k, (item) => item.score), personalised: false });
        } else {
          result.set(userId, { items: withPopular(scored, fallback, history, k, () => 0), personalised: true });
        }
      }
      return result;
    },

    async close() {
      closed = true;
      if (timer !== undefined) clearInterval(timer);
      await reloading?.catch(() => undefined);
    },
  };
}

/** The top `k` candidates by Σ r(u,i)·sim(i,j) over the user's items, owned items excluded. */
function scoreUser(serving: Serving, history: ReadonlyMap<string, number>, k: number): ScoredItem[] {
  const { model, score, touched, owned } = serving;
  if (serving.stamp === 0x7fffffff) {
    owned.fill(0);
    serving.stamp = 0;
  }
  const stamp = ++serving.stamp;
  for (const itemId of history.keys()) {
    const index = model.itemIndex.get(itemId);
    if (index !== undefined) owned[index] = stamp;
  }
  let touchedCount = 0;
  for (const [itemId, weight] of history) {
    const i = model.itemIndex.get(itemId);
    if (i === undefined || !(weight > 0)) continue;
    const r = Math.log1p(weight);
    for (let n = model.offsets[i] as number; n < (model.offsets[i + 1] as number); n++) {
      const j = model.neighbourIdx[n] as number;
      if (owned[j] === stamp) continue;
      // Every contribution is > 0, so a zero means "first seen for this user".
      if (score[j] === 0) touched[touchedCount++] = j;
      score[j]! += r * (model.neighbourSim[n] as number);
    }
  }
  const best = topK(touched, touchedCount, score, k).map((j) => ({ itemId: model.itemIds[j] as string, score: score[j] as number }));
  for (let n = 0; n < touchedCount; n++) score[touched[n] as number] = 0;
  return best;
}

/** `items` followed by popular items the user does not have, up to `k`. */
function withPopular(
  items: ScoredItem[],
  popular: readonly ScoredItem[],
  owned: ReadonlyMap<string, number>,
  k: number,
  scoreOf: (item: ScoredItem) => number,
): ScoredItem[] {
  if (items.length >= k) return items;
  const chosen = new Set(items.map((item) => item.itemId));
  for (const item of popular) {
    if (items.length >= k) break;
    if (owned.has(item.itemId) || chosen.has(item.itemId)) continue;
    items.push({ itemId: item.itemId, score: scoreOf(item) });
  }
  return items;
}

/**
 * Popularity before an instant, from the interactions table, for when no model may answer.
 * The query aggregates the whole history (seconds on oulad-2013), so a list computed for `t0`
 * answers every `at` ≥ t0 at once (it never reflects data after `at`, only older data), and is
 * refreshed in the background when it is refreshMs old in wall time or in data time. Only a
 * first call, or one for an instant before t0, waits for the query; concurrent waits share
 * one; a failed refresh keeps the previous list.
 */
function createPopularityCache(pool: Queryable, log: Logger, refreshMs: number) {
  let cached: { atMs: number; computedAt: number; items: ScoredItem[] } | undefined;
  let pending: { atMs: number; promise: Promise<ScoredItem[]> } | undefined;

  async function refresh(at: Date): Promise<ScoredItem[]> {
    try {
      const result = await pool.query<{ item_id: string; users: number; total: number }>(popularBefore(at, DEFAULT_POPULAR_COUNT));
      const items = result.rows.map((row) => ({ itemId: row.item_id, score: row.users / row.total }));
      if (cached === undefined || at.getTime() >= cached.atMs) cached = { atMs: at.getTime(), computedAt: Date.now(), items };
      return items;
    } catch (error) {
      throw new PrewarmError('PREWARM_ERR_RECOMMENDER', `could not compute popular items: ${(error as Error).message}`, { cause: error });
    }
  }

  function start(at: Date): Promise<ScoredItem[]> {
    const promise = refresh(at).finally(() => {
      if (pending?.promise === promise) pending = undefined;
    });
    pending = { atMs: at.getTime(), promise };
    return promise;
  }

  return {
    before(at: Date): Promise<readonly ScoredItem[]> {
      const atMs = at.getTime();
      if (cached !== undefined && cached.atMs <= atMs) {
        const stale = Date.now() - cached.computedAt >= refreshMs || atMs - cached.atMs >= refreshMs;
        if (stale && pending === undefined) {
          start(at).catch((error: unknown) => log.warn({ err: error }, 'could not refresh popular items; serving the previous list'));
        }
        return Promise.resolve(cached.items);
      }
      if (pending !== undefined && pending.atMs <= atMs) return pending.promise;
      return start(at);
    },
  };
}
