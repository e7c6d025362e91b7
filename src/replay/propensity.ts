import { VirtualClock } from '../clock.ts';
import { createModelScorer } from '../propensity/model-scorer.ts';
import { trainPropensity } from '../propensity/train.ts';
import type { PrepareScorer, RetrainScorer } from './replay.ts';

/**
 * The replay's propensity model: trained exactly as `prewarm train-propensity` would be at the
 * replay's start (on the logins table, which holds the history before it), then the planner's
 * real model scorer.
 */
export const prepareModelScorer: PrepareScorer = async ({ pool, from, windowMs, log }) => {
  await retrainModelScorer({ pool, at: from, windowMs, log });
  return createModelScorer({ pool, log });
};

/** Retrains the propensity model at `at` on the logins recorded before it, as the scheduler would. */
export const retrainModelScorer: RetrainScorer = async ({ pool, at, windowMs, log }) => {
  await trainPropensity({ pool, log, clock: new VirtualClock(at), windowMs });
};
