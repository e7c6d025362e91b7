import type { Pool } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import type { PropensityScorer } from '../planner/scorer.ts';
import { createModelScorer, type ModelScorer } from './model-scorer.ts';
import { latestModelVersion } from './model-store.ts';
import { createRecencyScorer } from './recency-scorer.ts';

/**
 * The planner's scorer in a running deployment: the trained propensity model as soon as one
 * exists (`prewarm train-propensity`, or the scheduled retraining), the recency rule until then.
 * The check is made at every scoring, so training a first model needs no restart.
 */
export function createDefaultScorer({ pool, log }: { pool: Pool; log: Logger }): PropensityScorer {
  const recency = createRecencyScorer({ pool });
  let model: ModelScorer | undefined;
  let warned = false;
  return {
    get version() {
      return model?.version ?? recency.version;
    },
    async scoreKnownUsers(windowStart, horizonMs) {
      if (model === undefined && (await latestModelVersion(pool)) !== undefined) model = await createModelScorer({ pool, log });
      if (model !== undefined) return model.scoreKnownUsers(windowStart, horizonMs);
      if (!warned) {
        warned = true;
        log.warn('no propensity model trained yet (prewarm train-propensity): planning with the recency rule');
      }
      return recency.scoreKnownUsers(windowStart, horizonMs);
    },
  };
}
