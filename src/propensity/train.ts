import type { Clock } from '../clock.ts';
import { withTransaction, type Pool, type PoolClient } from '../db/pool.ts';
import { PrewarmError } from '../errors.ts';
import type { Logger } from '../log.ts';

import { FEATURE_COUNT, featureRowsAt } from './features.ts';
import { readLoginLog, type LoginLog } from './login-log.ts';
import { fitPropensityModel, TrainingSetBuilder, type ModelMetrics, type PropensityModel } from './model.ts';
import { defaultTrainWindows, logExtent, trainingPeriod, trainingPeriodWithin } from './periods.ts';
import { latestModelVersion, newModelVersion, saveModel, type StoredPropensityModel } from './model-store.ts';
import type { StateGrid } from './state.ts';
import { rebuildGrid, readLoginExtentFromDb, readTrainingSampleFromDb, stateSql } from './state-store.ts';
import { DEFAULT_MAX_TRAINING_ROWS, sampleLoginLog, type TrainingPeriod, type TrainingSample } from './training-sample.ts';
import { floorToGrid, walkWindows } from './walk.ts';

/**
 * Cold start (README "Cold start"): below these, no model is fitted — a logistic regression on a
 * few dozen rows ends below "precompute everyone" — and the recency rule that backtests best on
 * the history available selects instead. The same minimums guard `train-propensity`.
 */
export const COLD_START = {
  /** Users with a login before the training period's end. */
  minKnownUsers: 50,
  /** (known user, window) training rows: train-propensity refuses fewer too. */
  minTrainingRows: 1_000,
  /** Of those, rows with a login (the positives the model learns from). */
  minPositiveRows: 100,
  /** Windows of history the recency rules are backtested on (the latest ones). */
  backtestWindows: 28,
} as const;

/** The recency rules a cold start chooses from (the baselines of `evaluate`). */
export const COLD_START_RULES = [1, 3, 7, 28] as const;

export interface TrainOnLogOptions {
  windowMs: number;
  /**
   * End of the training period (exclusive, on the grid): the model sees feature rows at each
   * window start before it and their labels. Default: the end of the log's last window.
   */
  trainToMs?: number;
  /** Windows in the training period. Default 26 weeks of windows. */
  trainWindows?: number;
  /** Latest windows held out for calibration. Default a week of windows. */
  calibrationWindows?: number;
  /** Half-life of the rows' weight by age. Default 28 days. */
  ageHalfLifeMs?: number;
  /**
   * Training keeps the users with the smallest hash of user_id whose rows (known user × window)
   * fit in this many, every row of each (every user when they all fit; see training-sample.ts).
   * Default 2 000 000.
   */
  maxTrainingRows?: number;
}

export interface TrainedModel {
  model: PropensityModel;
  metrics: ModelMetrics;
  trainFromMs: number;
  trainToMs: number;
}

/**
 * Trains on the windows of an in-memory log before `trainToMs`, exactly as `evaluate` trains
 * before its test period: features at each window start from the logins before it, label =
 * a login in the window, the latest week held out for calibration.
 */
export function trainOnLog(log: LoginLog, options: TrainOnLogOptions): TrainedModel {
  const grid: StateGrid = { windowMs: options.windowMs, phaseMs: 0 };
  const trainToMs = options.trainToMs ?? logExtent(log, grid).toMs;
  if (floorToGrid(trainToMs, grid) !== trainToMs) {
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `the end of the training period ${new Date(trainToMs).toISOString()} is not on the window grid`);
  }
  const period = trainingPeriod(log, grid, trainToMs, options.trainWindows ?? defaultTrainWindows(options.windowMs), 'the end of the training period');
  return trainOnSample(sampleLoginLog(log, grid, period, options.maxTrainingRows ?? DEFAULT_MAX_TRAINING_ROWS), grid, period, options);
}

/**
 * Fits on the sample's users: their states walked window by window over the period, features at
 * each window start (population and cohort features from the whole population's counts when
 * users were left out), label = a login in the window.
 */
function trainOnSample(sample: TrainingSample, grid: StateGrid, period: TrainingPeriod, options: TrainOnLogOptions): TrainedModel {
  const set = new TrainingSetBuilder();
  set.reserve(sample.stats.sampledRows);
  const { population } = sample;
  let rows: Float64Array = new Float64Array(FEATURE_COUNT);
  let ordinal = 0;
  walkWindows(sample.log, grid, period.fromMs, period.toMs, {
    windowStart: ({ startMs, knownCount, states }) => {
      ({ rows } = featureRowsAt(states, knownCount, startMs, grid, rows, population?.contextAt(startMs)));
    },
    windowEnd: ({ knownCount, activeStamp, index }) => {
      set.append(rows, knownCount, ordinal++, (u) => activeStamp[u] === index);
    },
  });
  if (set.n === 0 || !set.y.subarray(0, set.n).includes(1)) {
    throw new PrewarmError(
      'PREWARM_ERR_NO_MODEL',
      `no login of a known user in the training period ${new Date(period.fromMs).toISOString()} → ${new Date(period.toMs).toISOString()}${sample.population ? ` among the ${sample.stats.sampledUsers} sampled users` : ''}: nothing to learn from`,
    );
  }
  // Cold start: a model fitted on a handful of rows ends below "precompute everyone"; the planner
  // keeps its recency scorer until there is enough to learn from (README "Cold start").
  let positives = 0;
  for (let i = 0; i < set.n; i++) positives += set.y[i] as number;
  if (set.n < COLD_START.minTrainingRows || positives < COLD_START.minPositiveRows) {
    throw new PrewarmError(
      'PREWARM_ERR_NO_MODEL',
      `too little history to train on: ${set.n} training rows (minimum ${COLD_START.minTrainingRows}) of which ${positives} with a login (minimum ${COLD_START.minPositiveRows}) in ${new Date(period.fromMs).toISOString()} → ${new Date(period.toMs).toISOString()}`,
    );
  }
  const { model, metrics } = fitPropensityModel(set, {
    windowMs: options.windowMs,
    calibrationWindows: options.calibrationWindows,
    ageHalfLifeMs: options.ageHalfLifeMs,
  });
  metrics.sample = sample.stats;
  return { model, metrics, trainFromMs: period.fromMs, trainToMs: period.toMs };
}

export interface TrainPropensityOptions extends Omit<TrainOnLogOptions, 'trainToMs'> {
  pool: Pool;
  log: Logger;
  clock: Clock;
  /** Train from this logins CSV instead of the `logins` table. */
  loginsFile?: string;
  /**
   * Runs in the transaction that stores the model (marking it a challenger), so that no planner
   * ever reads the new model without its role.
   */
  onSave?: (client: PoolClient, stored: StoredPropensityModel) => Promise<void>;
}

/**
 * `prewarm train-propensity`: trains on the `logins` table (or a CSV) up to the start of the
 * current window, stores the model as the newest version, and rebuilds the persisted activity
 * states of the model's window length, so that incremental updates start from exact states.
 */
export async function trainPropensity(options: TrainPropensityOptions): Promise<StoredPropensityModel> {
  const { pool, log, clock, windowMs } = options;
  const now = clock.now();
  const grid: StateGrid = { windowMs, phaseMs: 0 };
  const trainWindows = options.trainWindows ?? defaultTrainWindows(windowMs);
  const maxRows = options.maxTrainingRows ?? DEFAULT_MAX_TRAINING_ROWS;
  const started = Date.now();
  let sample: TrainingSample;
  let period: TrainingPeriod;
  if (options.loginsFile) {
    const { log: loginLog } = await readLoginLog(options.loginsFile);
    period = trainingPeriod(loginLog, grid, logExtent(loginLog, grid).toMs, trainWindows, 'the end of the training period');
    sample = sampleLoginLog(loginLog, grid, period, maxRows);
  } else {
    // Complete windows only: the current one has not finished collecting its logins. When the
    // table ends long before now (an imported history), training ends with its last window.
    const currentMs = floorToGrid(now.getTime(), grid);
    const extent = await readLoginExtentFromDb(pool, { beforeMs: currentMs });
    if (!extent) throw new PrewarmError('PREWARM_ERR_NO_MODEL', 'the logins table has no login before the current window: import logins first (prewarm import --logins FILE)');
    const onGrid = { fromMs: floorToGrid(extent.firstMs, grid), toMs: floorToGrid(extent.lastMs, grid) + windowMs };
    period = trainingPeriodWithin(onGrid, grid, Math.min(currentMs, onGrid.toMs), trainWindows, 'the end of the training period');
    sample = await readTrainingSampleFromDb(pool, { grid, period, maxRows });
  }
  const readMs = Date.now() - started;
  const trained = trainOnSample(sample, grid, period, options);
  const stored: StoredPropensityModel = {
    version: newModelVersion(now),
    trainedAt: now,
    trainFrom: new Date(trained.trainFromMs),
    trainTo: new Date(trained.trainToMs),
    model: trained.model,
    metrics: trained.metrics,
  };
  await withTransaction(pool, async (client) => {
    await saveModel(client, stored);
    await options.onSave?.(client, stored);
  });
  log.info({ version: stored.version, ms: Date.now() - started, readMs, rows: trained.metrics.fitRows, sample: sample.stats }, 'propensity model trained');
  if (!options.loginsFile) {
    const grids = await pool.query<{ window_ms: number; phase_ms: number }>(stateSql.grids().text);
    for (const row of grids.rows) {
      if (Number(row.window_ms) === windowMs) await rebuildGrid(pool, { windowMs, phaseMs: Number(row.phase_ms) }, log);
    }
  }
  return stored;
}

/**
 * Retrains on a schedule: trains when the newest model is older than `maxAgeMs` (or there is
 * none). The scheduler's maintenance tick calls it; returns the new model, if any.
 */
export async function retrainIfDue(options: TrainPropensityOptions & { maxAgeMs: number }): Promise<StoredPropensityModel | undefined> {
  const latest = await latestModelVersion(options.pool);
  if (latest && options.clock.now().getTime() - latest.trainedAt.getTime() < options.maxAgeMs) return undefined;
  return trainPropensity(options);
}
