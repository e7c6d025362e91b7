import { VirtualClock } from '../clock.ts';
import { createModelScorer } from '../propensity/model-scorer.ts';
import { trainPropensity } from '../propensity/train.ts';
import type { PrepareScorer } from './replay.ts';

/**
 * The replay's propensity model: trained exactly as `prewarm train-propensity` would be at the
 * replay's start (on the logins table, which holds the history before it), then the planner's
 * real model scorer.
 */
export const prepareModelScorer: PrepareScorer = async ({ pool, from, windowMs, log }) => {
  await trainPropensity({ pool, log, clock: new VirtualClock(from), windowMs });
  return createModelScorer({ pool, log });
};
