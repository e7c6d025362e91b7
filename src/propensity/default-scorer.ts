import type { Pool } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import type { PropensityScorer, StreamingScorer } from '../planner/scorer.ts';
import { createModelScorer, mergeTallies, type ModelScorer, type PopulationTally } from './model-scorer.ts';
import { latestModelVersion } from './model-store.ts';
import { markColdStart } from './cold-start.ts';
import { createRecencyScorer, RECENCY_SCORER_VERSION, recencyStreaming } from './recency-scorer.ts';

/**
 * The planner's scorer in a running deployment: the trained propensity model as soon as one
 * exists (`prewarm train-propensity`, or the scheduled retraining), the recency rule until then.
 * The check is made at every scoring, so training a first model needs no restart.
 */
export function createDefaultScorer({ pool, log }: { pool: Pool; log: Logger }): PropensityScorer {
  const recency = createRecencyScorer({ pool });
  let model: ModelScorer | undefined;
  let warned = false;
  const recencyStream = recencyStreaming(pool);
  const ensureModel = async () => {
    if (model === undefined && (await latestModelVersion(pool)) !== undefined) model = await createModelScorer({ pool, log });
    return model;
  };
  // A shard job scores with the version its run started with: the recency rule or a model.
  const byVersion = async (version: string): Promise<StreamingScorer> => {
    if (version === RECENCY_SCORER_VERSION) return recencyStream;
    const scorer = await ensureModel();
    if (!scorer?.streaming) throw new Error(`propensity model ${version} is not available`);
    return scorer.streaming;
  };
  const streaming: StreamingScorer = {
    async prepare(windowStart, horizonMs) {
      const scorer = await ensureModel();
      if (scorer?.streaming) return scorer.streaming.prepare(windowStart, horizonMs);
      if (!warned) {
        warned = true;
        log.warn('no propensity model trained yet (prewarm train-propensity): planning with the recency rule');
      }
      // No model yet: a cold start, which the planner answers with the best-backtesting recency rule.
      return markColdStart(await recencyStream.prepare(windowStart, horizonMs));
    },
    population: async (request) => (await byVersion(request.version)).population(request),
    // Only model tallies are non-null, and they merge the same whichever scorer holds them.
    mergePopulation: (parts) => (parts.every((part) => part === null) ? null : mergeTallies(parts as PopulationTally[])),
    async *scoreShard(request) {
      yield* (await byVersion(request.version)).scoreShard(request);
    },
  };
  return {
    streaming,
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
