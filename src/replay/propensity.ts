import { VirtualClock } from '../clock.ts';
import { isPrewarmError } from '../errors.ts';
import { createDefaultScorer } from '../propensity/default-scorer.ts';
import { trainPropensity } from '../propensity/train.ts';
import type { PrepareScorer, RetrainScorer } from './replay.ts';

/**
 * The replay's propensity model: trained exactly as `prewarm train-propensity` would be at the
 * replay's start (on the logins table, which holds the history before it), then the planner's
 * scorer of a deployment — the newest model, or the recency rule while there is too little
 * history to train on (README "Cold start"), replaced by the first model a retraining stores.
 */
export const prepareModelScorer: PrepareScorer = async ({ pool, from, windowMs, log }) => {
  await retrainModelScorer({ pool, at: from, windowMs, log });
  return createDefaultScorer({ pool, log });
};

/** Retrains the propensity model at `at` on the logins recorded before it, as the scheduler would. */
export const retrainModelScorer: RetrainScorer = async ({ pool, at, windowMs, log }) => {
  try {
    await trainPropensity({ pool, log, clock: new VirtualClock(at), windowMs });
  } catch (error) {
    // Too little history yet: the scheduler keeps planning with what it has and tries again.
    if (!isPrewarmError(error, 'PREWARM_ERR_NO_MODEL')) throw error;
    log.warn({ at, reason: (error as Error).message }, 'propensity model not trained yet (cold start): planning with the recency rule');
  }
};
