import { averagePrecision, rocAuc, thresholdCurve } from './metrics.ts';
import { applyCalibration, expectedCalibrationError, fitPlatt, reliabilityTable, type PlattCalibration, type ReliabilityBin } from './calibration.ts';
import { FEATURE_COUNT, FEATURE_NAMES } from './features.ts';
import { fitLogistic, logisticLogit, type LogisticModel } from './logistic.ts';
import type { TrainingSampleStats } from './training-sample.ts';

/** A trained propensity model as stored (JSON) and scored. */
export interface PropensityModel {
  format: 1;
  kind: 'logistic';
  /** Length of the window the model predicts a login in. */
  windowMs: number;
  /** Names of the feature columns, in order; must equal FEATURE_NAMES when scoring. */
  featureNames: string[];
  logistic: LogisticModel;
  calibration: PlattCalibration;
}

export interface ModelMetrics {
  /** Rows (known user × window) the model was fitted on, and the share with a login. */
  fitRows: number;
  fitWindows: number;
  fitBaseRate: number;
  fitIterations: number;
  fitConverged: boolean;
  /** Weighted by age, as fitted. */
  fitLogLoss: number;
  ageHalfLifeMs: number;
  /** Held-out calibration slice: the latest windows of the training period. */
  calibrationRows: number;
  calibrationWindows: number;
  calibrationBaseRate: number;
  calibrationAveragePrecision: number;
  calibrationRocAuc: number;
  calibrationLogLoss: number;
  calibrationBrier: number;
  calibrationEce: number;
  /** Reliability of the calibrated probabilities on the calibration slice, by decile. */
  reliability: ReliabilityBin[];
  /** The users and rows trained on, of how many (set by the trainer; see training-sample.ts). */
  sample?: TrainingSampleStats;
}

/** Rows of features with their label and the ordinal of their window, grown as windows come. */
export class TrainingSetBuilder {
  x = new Float32Array(FEATURE_COUNT * 4096);
  y = new Uint8Array(4096);
  window = new Int32Array(4096);
  n = 0;
  readonly d = FEATURE_COUNT;

  /**
   * Appends `count` rows from `rows` (row-major Float64), labels from `label(i)`; with `keep`,
   * only the rows i with keep[i] = 1 (the sampled users, see training-sample.ts).
   */
  append(rows: Float64Array, count: number, windowOrdinal: number, label: (i: number) => boolean, keep?: Uint8Array): void {
    const d = this.d;
    if (!keep) {
      this.reserve(this.n + count);
      this.x.set(rows.subarray(0, count * d), this.n * d);
      for (let i = 0; i < count; i++) {
        this.y[this.n + i] = label(i) ? 1 : 0;
        this.window[this.n + i] = windowOrdinal;
      }
      this.n += count;
      return;
    }
    for (let i = 0; i < count; i++) {
      if (keep[i] !== 1) continue;
      this.reserve(this.n + 1);
      this.x.set(rows.subarray(i * d, (i + 1) * d), this.n * d);
      this.y[this.n] = label(i) ? 1 : 0;
      this.window[this.n] = windowOrdinal;
      this.n++;
    }
  }

  /** Makes room for `rows` rows in all (a caller that knows the final count avoids regrowing). */
  reserve(rows: number): void {
    if (rows <= this.y.length) return;
    const capacity = Math.max(rows, this.y.length * 2);
    const x = new Float32Array(capacity * this.d);
    x.set(this.x.subarray(0, this.n * this.d));
    this.x = x;
    const y = new Uint8Array(capacity);
    y.set(this.y.subarray(0, this.n));
    this.y = y;
    const window = new Int32Array(capacity);
    window.set(this.window.subarray(0, this.n));
    this.window = window;
  }
}

export interface FitModelOptions {
  windowMs: number;
  /**
   * The latest this many windows of the set are held out of the fit and used for calibration
   * and the reported metrics. Default: a week of windows (7 for daily windows), at most a
   * third of the windows.
   */
  calibrationWindows?: number;
  /** L2 penalty of the logistic regression. Default 1. */
  l2?: number;
  /**
   * Rows are weighted 2^(−age / half-life), age measured from the latest fitted window, so that
   * a long training period still follows recent behaviour. Default 28 days; 0 = equal weights.
   */
  ageHalfLifeMs?: number;
}

export const DEFAULT_AGE_HALF_LIFE_MS = 28 * 86_400_000;

export function defaultCalibrationWindows(windowMs: number, trainingWindows: number): number {
  const week = Math.max(1, Math.round((7 * 86_400_000) / windowMs));
  return Math.max(1, Math.min(week, Math.floor(trainingWindows / 3)));
}

/**
 * Fits the model on the earlier windows of `set`, calibrates it on the latest ones, and reports
 * its metrics there. No row outside `set` is touched, so a caller that builds the set from
 * windows before the test period keeps test labels out of both the model and its calibration.
 */
export function fitPropensityModel(set: TrainingSetBuilder, options: FitModelOptions): { model: PropensityModel; metrics: ModelMetrics } {
  const { n, d } = set;
  if (n === 0) throw new RangeError('no training rows: the training period holds no known user');
  let lastWindow = Number.NEGATIVE_INFINITY;
  let firstWindow = Number.POSITIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    lastWindow = Math.max(lastWindow, set.window[i] as number);
    firstWindow = Math.min(firstWindow, set.window[i] as number);
  }
  const windows = lastWindow - firstWindow + 1;
  const calibrationWindows = windows < 2 ? 0 : Math.min(options.calibrationWindows ?? defaultCalibrationWindows(options.windowMs, windows), windows - 1);
  const cut = lastWindow - calibrationWindows + 1;
  // Rows come in window order, so the fit rows are a prefix.
  let fitRows = 0;
  while (fitRows < n && (set.window[fitRows] as number) < cut) fitRows++;
  const x = set.x.subarray(0, fitRows * d);
  const y = set.y.subarray(0, fitRows);
  const halfLife = options.ageHalfLifeMs ?? DEFAULT_AGE_HALF_LIFE_MS;
  let sampleWeights: Float64Array | undefined;
  if (halfLife > 0) {
    sampleWeights = new Float64Array(fitRows);
    const halfLifeWindows = halfLife / options.windowMs;
    for (let i = 0; i < fitRows; i++) sampleWeights[i] = Math.pow(2, -(cut - 1 - (set.window[i] as number)) / halfLifeWindows);
  }
  const { model: logistic, info } = fitLogistic(x, y, fitRows, d, { l2: options.l2 ?? 1, sampleWeights });

  const calibrationRows = n - fitRows;
  const logits = new Float64Array(calibrationRows);
  const labels = set.y.subarray(fitRows, n);
  for (let i = 0; i < calibrationRows; i++) logits[i] = logisticLogit(logistic, set.x, (fitRows + i) * d);
  const calibration: PlattCalibration = calibrationRows > 0 && hasBothClasses(labels) ? fitPlatt(logits, labels) : { kind: 'platt', a: 1, b: 0 };
  const probabilities = new Float64Array(calibrationRows);
  let brier = 0;
  let logLoss = 0;
  let positives = 0;
  for (let i = 0; i < calibrationRows; i++) {
    const p = applyCalibration(calibration, logits[i] as number);
    probabilities[i] = p;
    const label = labels[i] as number;
    positives += label;
    brier += (p - label) ** 2;
    const q = Math.min(Math.max(p, 1e-12), 1 - 1e-12);
    logLoss -= label * Math.log(q) + (1 - label) * Math.log(1 - q);
  }
  const curve = thresholdCurve(logits, labels, calibrationRows);
  const reliability = reliabilityTable(probabilities, labels, calibrationRows);
  let fitPositives = 0;
  for (let i = 0; i < fitRows; i++) fitPositives += y[i] as number;
  const model: PropensityModel = {
    format: 1,
    kind: 'logistic',
    windowMs: options.windowMs,
    featureNames: [...FEATURE_NAMES],
    logistic,
    calibration,
  };
  const metrics: ModelMetrics = {
    fitRows,
    fitWindows: windows - calibrationWindows,
    fitBaseRate: fitRows > 0 ? fitPositives / fitRows : Number.NaN,
    fitIterations: info.iterations,
    fitConverged: info.converged,
    ageHalfLifeMs: halfLife,
    // fitLogistic's own figure: the same weighted mean, without another pass over the rows.
    fitLogLoss: fitRows > 0 ? info.logLoss : Number.NaN,
    calibrationRows,
    calibrationWindows,
    calibrationBaseRate: calibrationRows > 0 ? positives / calibrationRows : Number.NaN,
    calibrationAveragePrecision: averagePrecision(curve),
    calibrationRocAuc: rocAuc(curve),
    calibrationLogLoss: calibrationRows > 0 ? logLoss / calibrationRows : Number.NaN,
    calibrationBrier: calibrationRows > 0 ? brier / calibrationRows : Number.NaN,
    calibrationEce: expectedCalibrationError(reliability),
    reliability,
  };
  return { model, metrics };
}

function hasBothClasses(labels: Uint8Array): boolean {
  let ones = 0;
  for (let i = 0; i < labels.length; i++) ones += labels[i] as number;
  return ones > 0 && ones < labels.length;
}

/** Checks that a stored model matches the features this code computes. */
export function assertScorable(model: PropensityModel): void {
  if (model.format !== 1 || model.kind !== 'logistic') throw new RangeError(`unsupported propensity model (format ${model.format}, kind ${model.kind})`);
  if (model.featureNames.length !== FEATURE_COUNT || model.featureNames.some((name, i) => name !== FEATURE_NAMES[i])) {
    throw new RangeError('the propensity model was trained on other features than this version computes; retrain it (prewarm train-propensity)');
  }
}

/** Raw log-odds of the feature row at `x[offset…]` (ranking score; calibration is monotone). */
export function modelLogit(model: PropensityModel, x: ArrayLike<number>, offset = 0): number {
  return logisticLogit(model.logistic, x, offset);
}

/** Calibrated probability of a login in the window. */
export function modelProbability(model: PropensityModel, x: ArrayLike<number>, offset = 0): number {
  return applyCalibration(model.calibration, modelLogit(model, x, offset));
}

/** The calibrated probabilities of the first `count` feature rows of `rows` (FEATURE_COUNT each), into `out`. */
export function modelProbabilities<T extends Float64Array | Float32Array = Float64Array>(model: PropensityModel, rows: ArrayLike<number>, count: number, out?: T): T {
  const scores = out ?? (new Float64Array(count) as T);
  for (let u = 0; u < count; u++) scores[u] = modelProbability(model, rows, u * FEATURE_COUNT);
  return scores;
}
