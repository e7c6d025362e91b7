import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import type { Queryable } from '../db/pool.ts';
import { PrewarmError } from '../errors.ts';
import { createHttpRecommender } from './http.ts';
import { createItemCfRecommender, loadLatestModel, type ItemCfModel } from './item-cf.ts';
import type { Recommender } from './types.ts';

export type { Recommender, ScoredItem, UserRecommendations } from './types.ts';

export interface CreateRecommenderOptions {
  config: Pick<Readonly<Config>, 'recommender' | 'recommenderUrl' | 'recommenderTimeoutMs'> & { recommenderToken?: string | undefined };
  pool: Queryable;
  log: Logger;
  /** item-cf only: how often to look for a newer trained model. Default 60 000. */
  reloadIntervalMs?: number;
}

/**
 * The recommender chosen by PREWARM_RECOMMENDER: `item-cf` (the newest trained model, or
 * popularity until one is trained; a failure to read the stored model is logged and the
 * periodic reload tries again) or `http` (an external model service).
 */
export async function createRecommender({ config, pool, log, reloadIntervalMs }: CreateRecommenderOptions): Promise<Recommender> {
  switch (config.recommender) {
    case 'http': {
      if (config.recommenderUrl === undefined) {
        throw new PrewarmError('PREWARM_ERR_CONFIG', 'PREWARM_RECOMMENDER_URL: required when PREWARM_RECOMMENDER=http');
      }
      return createHttpRecommender({ url: config.recommenderUrl, timeoutMs: config.recommenderTimeoutMs, token: config.recommenderToken, log });
    }
    case 'item-cf': {
      let model: ItemCfModel | undefined;
      try {
        model = await loadLatestModel(pool);
        if (model === undefined) log.warn('no item-cf model trained yet (run `prewarm train-recommender`); serving popular items');
      } catch (error) {
        log.error({ err: error }, 'could not load the recommender model; serving popular items until a reload succeeds');
      }
      return createItemCfRecommender({ pool, log, model, reloadIntervalMs });
    }
  }
}
