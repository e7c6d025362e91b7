import type { Pool } from '../db/pool.ts';
import { PrewarmError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Candidate } from '../planner/policy.ts';
import { emptyBatch, type PropensityScorer, type ScoredBatch, type ScoringRequest, type ShardSpec, type StreamingScorer } from '../planner/scorer.ts';
import { copyRows, shardFilter, sqlLiteral } from './copy-rows.ts';
import { FEATURE_COUNT, featuresAt, populationContext, populationLags, type WindowContext } from './features.ts';
import { assertScorable, modelProbability } from './model.ts';
import { latestModelVersion, loadLatestModel, loadModel, type StoredPropensityModel } from './model-store.ts';
import { DAY_MS, S, STATE_SIZE, type StateGrid } from './state.ts';
import { gridFor, gridKey, loadGrid, rewindStates, syncGrid } from './state-store.ts';

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

  // A run scores every shard with the model it started with, even once a newer one is trained.
  let pinned: StoredPropensityModel | undefined;
  const modelFor = async (version: string): Promise<StoredPropensityModel> => {
    if (version === current.version) return current;
    if (pinned?.version !== version) {
      const stored = await loadModel(pool, version);
      if (!stored) throw new PrewarmError('PREWARM_ERR_NO_MODEL', `no propensity model ${version}`);
      assertScorable(stored.model);
      pinned = stored;
    }
    return pinned;
  };

  const streaming: StreamingScorer = {
    async prepare(windowStart) {
      await reload();
      if (options.sync ?? true) await syncGrid(pool, gridFor(current.model.windowMs, windowStart.getTime()), log);
      return { version: current.version };
    },
    async population(request) {
      const { model } = await modelFor(request.version);
      const startMs = request.windowStart.getTime();
      const grid = gridFor(model.windowMs, startMs);
      const tally = emptyTally();
      for await (const table of knownStateBatches(pool, grid, startMs, request.shard, request.batchSize)) addToTally(tally, table.states, table.userIds.length, startMs, grid);
      return tally;
    },
    mergePopulation: (parts) => mergeTallies(parts as PopulationTally[]),
    async *scoreShard(request: ScoringRequest) {
      const { model } = await modelFor(request.version);
      const startMs = request.windowStart.getTime();
      const grid = gridFor(model.windowMs, startMs);
      const context = contextFromTally(request.population as PopulationTally, startMs, grid);
      const windows = request.horizonMs / model.windowMs;
      const row = new Float64Array(FEATURE_COUNT);
      for await (const table of knownStateBatches(pool, grid, startMs, request.shard, request.batchSize)) {
        const batch: ScoredBatch = emptyBatch(table.userIds.length);
        for (let u = 0; u < table.userIds.length; u++) {
          const base = u * STATE_SIZE;
          if (!((table.states[base + S.COUNT] as number) > 0) || !((table.states[base + S.FIRST] as number) < startMs)) continue;
          featuresAt(table.states, base, context, row, 0);
          const p = modelProbability(model, row, 0);
          batch.userIds.push(table.userIds[u] as string);
          batch.p[batch.size] = windows === 1 ? p : 1 - Math.pow(1 - p, windows);
          batch.lastLoginAt[batch.size] = table.states[base + S.LAST] as number;
          batch.size++;
        }
        if (batch.size > 0) yield batch;
      }
    },
  };

  return {
    get version() {
      return current.version;
    },
    get model() {
      return current;
    },
    streaming,
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

/** States of the known users of one shard, in batches, rewound to the window start (users not known then have COUNT 0). */
export async function* knownStateBatches(pool: Pool, grid: Required<StateGrid>, startMs: number, shard: ShardSpec, batchSize: number): AsyncGenerator<{ userIds: string[]; states: Float64Array }> {
  let userIds: string[] = [];
  let states = new Float64Array(batchSize * STATE_SIZE);
  let bytes = new Uint8Array(states.buffer);
  const full: { userIds: string[]; states: Float64Array }[] = [];
  const onRow = (buffer: Buffer, offsets: Int32Array, lengths: Int32Array) => {
    if (lengths[1] !== STATE_SIZE * 8) throw new RangeError(`activity state has ${lengths[1]} bytes, expected ${STATE_SIZE * 8}`);
    const at = offsets[1] as number;
    bytes.set(buffer.subarray(at, at + STATE_SIZE * 8), userIds.length * STATE_SIZE * 8);
    userIds.push(buffer.toString('utf8', offsets[0] as number, (offsets[0] as number) + (lengths[0] as number)));
    if (userIds.length === batchSize) {
      full.push({ userIds, states });
      userIds = [];
      states = new Float64Array(batchSize * STATE_SIZE);
      bytes = new Uint8Array(states.buffer);
    }
  };
  // Known users only (known_since, migration 0010; README, "Known users").
  const query = `SELECT user_id, state FROM propensity_state
                  WHERE grid = ${sqlLiteral(gridKey(grid))} AND ${shardFilter('user_id', shard)}
                    AND EXISTS (SELECT 1 FROM user_activity a
                                 WHERE a.user_id = propensity_state.user_id AND a.known_since < ${sqlLiteral(new Date(startMs).toISOString())}::timestamptz)`;
  const rewound = async (table: { userIds: string[]; states: Float64Array }) => {
    await rewindStates(pool, table, grid, startMs);
    return table;
  };
  for await (const table of copyRows(pool, query, 2, onRow, () => full.shift())) yield rewound(table);
  if (userIds.length > 0) yield rewound({ userIds, states: states.subarray(0, userIds.length * STATE_SIZE) });
}


/**
 * The population and cohort features' inputs as whole-number counts, so that shards add up
 * exactly whatever the sharding: per lag (1 window, 1 day, 1 week) known and active users, and
 * per cohort [members, active 1 window before, active 1 week before, Σ active windows of the last
 * week]. `contextFromTally` turns it into the WindowContext `populationContext` would give.
 */
export interface PopulationTally {
  known: number[];
  active: number[];
  cohorts: [number, number, number, number, number][];
}

function emptyTally(): PopulationTally {
  return { known: [0, 0, 0], active: [0, 0, 0], cohorts: [] };
}

function weekWindows(windowMs: number): number {
  return Math.max(1, Math.min(63, Math.round((7 * DAY_MS) / windowMs)));
}

function addToTally(tally: PopulationTally, states: Float64Array, userCount: number, startMs: number, grid: StateGrid): void {
  // The rates and cohort sums of populationContext, turned back into counts.
  const context = populationContext(states, userCount, startMs, grid);
  const lags = populationLags(grid.windowMs);
  const wanted = [lags.lag1, lags.day, lags.week];
  const known = [0, 0, 0];
  for (let u = 0; u < userCount; u++) {
    const base = u * STATE_SIZE;
    if (!((states[base + S.COUNT] as number) > 0)) continue;
    const first = states[base + S.FIRST] as number;
    if (!(first < startMs)) continue;
    for (let j = 0; j < 3; j++) if (first < startMs - (wanted[j] as number) * grid.windowMs) known[j] = (known[j] as number) + 1;
  }
  const rates = [context.populationLag1, context.populationLagDay, context.populationLagWeek];
  for (let j = 0; j < 3; j++) {
    tally.known[j] = (tally.known[j] as number) + (known[j] as number);
    if ((known[j] as number) > 0) tally.active[j] = (tally.active[j] as number) + Math.round((rates[j] as number) * (known[j] as number));
  }
  const week = weekWindows(grid.windowMs);
  const index = new Map(tally.cohorts.map((entry, i) => [entry[0], i]));
  for (const [key, totals] of context.cohorts) {
    const counts: [number, number, number, number] = [totals[0] as number, totals[1] as number, totals[2] as number, Math.round((totals[3] as number) * week)];
    const at = index.get(key);
    if (at === undefined) tally.cohorts.push([key, ...counts]);
    else {
      const entry = tally.cohorts[at] as [number, number, number, number, number];
      for (let i = 0; i < 4; i++) entry[i + 1] = (entry[i + 1] as number) + (counts[i] as number);
    }
  }
}

export function mergeTallies(parts: readonly PopulationTally[]): PopulationTally {
  const merged = emptyTally();
  const index = new Map<number, number>();
  for (const part of parts) {
    for (let j = 0; j < 3; j++) {
      merged.known[j] = (merged.known[j] as number) + (part.known[j] as number);
      merged.active[j] = (merged.active[j] as number) + (part.active[j] as number);
    }
    for (const entry of part.cohorts) {
      const at = index.get(entry[0]);
      if (at === undefined) {
        index.set(entry[0], merged.cohorts.length);
        merged.cohorts.push([...entry]);
      } else {
        const into = merged.cohorts[at] as [number, number, number, number, number];
        for (let i = 1; i < 5; i++) into[i] = (into[i] as number) + (entry[i] as number);
      }
    }
  }
  return merged;
}

function contextFromTally(tally: PopulationTally, startMs: number, grid: StateGrid): WindowContext {
  const rate = (j: number) => ((tally.known[j] as number) > 0 ? (tally.active[j] as number) / (tally.known[j] as number) : Number.NaN);
  const week = weekWindows(grid.windowMs);
  const cohorts = new Map<number, Float64Array>();
  for (const [key, members, lag1, lagWeek, activeWindows] of tally.cohorts) cohorts.set(key, Float64Array.of(members, lag1, lagWeek, activeWindows / week));
  return { startMs, grid, populationLag1: rate(0), populationLagDay: rate(1), populationLagWeek: rate(2), cohorts };
}
