import type { Pool } from '../db/pool.ts';
import { PrewarmError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Candidate } from '../planner/policy.ts';
import type { PropensityScorer } from '../planner/scorer.ts';
import { FEATURE_COUNT, featuresAt, populationContext } from './features.ts';
import { assertScorable, modelProbability } from './model.ts';
import { latestModelVersion, loadLatestModel, loadModel, type StoredPropensityModel } from './model-store.ts';
import { S, STATE_SIZE } from './state.ts';
import { gridFor, loadGrid, rewindStates, syncGrid } from './state-store.ts';

export interface ModelScorerOptions {
  pool: Pool;
  log: Logger;
  /** Score with this model version, always. Default: the newest, re-checked before each scoring. */
  version?: string;
  /**
   * Fold the logins recorded since the last scoring into the persisted states first (one
   * indexed range scan of `logins`). Default true.
   */
  sync?: boolean;
}

export interface ModelScorer extends PropensityScorer {
  /** The model in use. */
  readonly model: StoredPropensityModel;
  /** Loads the newest model if it changed; true when it did. */
  reload(): Promise<boolean>;
}

/**
 * The planner's PropensityScorer backed by the trained model in `propensity_models`: every known
 * user is scored from their persisted activity state (`propensity_state`, on the grid of the
 * window being planned), features exactly as in training and `evaluate`, probabilities
 * calibrated. A newer model, once trained, is picked up at the next scoring.
 *
 * States that have seen a login at or after the window start (a past window planned again, a
 * replay) are rebuilt from that user's logins before it, so no feature sees the window itself.
 * Throws PREWARM_ERR_NO_MODEL when no model was trained yet.
 */
export async function createModelScorer(options: ModelScorerOptions): Promise<ModelScorer> {
  const { pool, log } = options;
  const load = async () => {
    const stored = options.version ? await loadModel(pool, options.version) : await loadLatestModel(pool);
    if (!stored) {
      throw new PrewarmError(
        'PREWARM_ERR_NO_MODEL',
        options.version ? `no propensity model ${options.version}` : 'no propensity model yet: train one with `prewarm train-propensity`',
      );
    }
    try {
      assertScorable(stored.model);
    } catch (error) {
      throw new PrewarmError('PREWARM_ERR_NO_MODEL', `propensity model ${stored.version}: ${(error as Error).message}`, { cause: error });
    }
    return stored;
  };
  let current = await load();
  let warnedHorizon = false;

  const reload = async (): Promise<boolean> => {
    if (options.version) return false;
    const latest = await latestModelVersion(pool);
    if (!latest || latest.version === current.version) return false;
    current = await load();
    log.info({ version: current.version }, 'propensity model reloaded');
    return true;
  };

  return {
    get version() {
      return current.version;
    },
    get model() {
      return current;
    },
    reload,
    async scoreKnownUsers(windowStart: Date, horizonMs: number): Promise<Candidate[]> {
      await reload();
      const { model } = current;
      const startMs = windowStart.getTime();
      const grid = gridFor(model.windowMs, startMs);
      if (options.sync ?? true) await syncGrid(pool, grid, log);
      const table = await loadGrid(pool, grid);
      const rewound = await rewindStates(pool, table, grid, startMs);
      if (rewound > 0) log.debug({ users: rewound, windowStart }, 'propensity states rewound to the window start');
      const userCount = table.userIds.length;
      const context = populationContext(table.states, userCount, startMs, grid);
      // A horizon other than the model's window: the chance of a login in h/W independent windows.
      const windows = horizonMs / model.windowMs;
      if (windows !== 1 && !warnedHorizon) {
        warnedHorizon = true;
        log.warn({ horizonMs, modelWindowMs: model.windowMs }, 'window horizon differs from the propensity model window; probabilities are rescaled, retrain with a matching --window');
      }
      const row = new Float64Array(FEATURE_COUNT);
      const candidates: Candidate[] = [];
      for (let u = 0; u < userCount; u++) {
        const base = u * STATE_SIZE;
        const count = table.states[base + S.COUNT] as number;
        const first = table.states[base + S.FIRST] as number;
        if (!(count > 0) || !(first < startMs)) continue;
        featuresAt(table.states, base, context, row, 0);
        const p = modelProbability(model, row, 0);
        candidates.push({
          userId: table.userIds[u] as string,
          p: windows === 1 ? p : 1 - Math.pow(1 - p, windows),
          lastLoginAt: table.states[base + S.LAST] as number,
        });
      }
      return candidates;
    },
  };
}
