import type { Clock } from '../clock.ts';
import type { Queryable, Sql } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import type { ReliabilityBin } from './calibration.ts';
import { averagePrecision, rocAuc, weightedThresholdCurve } from './metrics.ts';

/**
 * Live model quality: for each run whose horizon has ended, the scores the planner used
 * (`predictions`) against the logins that followed. `predictions` keeps every selected and holdout
 * user but only a weighted random sample of the others (`weight` = 1 / the chance a row was kept),
 * so every figure here is weighted: a row stands for `weight` scored users, and AP, ROC AUC and the
 * reliability table estimate those of the whole scored population rather than of the
 * selection-biased rows.
 */

export interface WeightedQuality {
  /** Σ weight: the scored users the rows stand for, and those who logged in. */
  scoredUsers: number;
  loggedIn: number;
  averagePrecision: number;
  rocAuc: number;
  /** Expected calibration error over the weighted deciles. */
  calibrationError: number;
  reliability: ReliabilityBin[];
}

/**
 * Reliability by weighted decile: rows sorted by p, a row in the decile its weight's midpoint
 * falls in (as `calibration_by_decile` does); `count` is a sum of weights.
 */
export function weightedReliability(p: ArrayLike<number>, labels: ArrayLike<number>, weights: ArrayLike<number>, n = p.length, bins = 10): ReliabilityBin[] {
  const order = new Uint32Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    order[i] = i;
    total += weights[i] as number;
  }
  order.sort((a, b) => (p[a] as number) - (p[b] as number));
  const sums = Array.from({ length: bins }, () => ({ w: 0, wp: 0, wy: 0, min: Number.NaN, max: Number.NaN }));
  let before = 0;
  for (let k = 0; k < n; k++) {
    const i = order[k] as number;
    const w = weights[i] as number;
    const bin = total > 0 ? Math.min(bins - 1, Math.floor((bins * (before + w / 2)) / total)) : 0;
    before += w;
    const s = sums[bin] as (typeof sums)[number];
    const value = p[i] as number;
    s.w += w;
    s.wp += w * value;
    s.wy += w * (labels[i] as number);
    if (!(s.min <= value)) s.min = value;
    if (!(s.max >= value)) s.max = value;
  }
  return sums.map((s, bin) => ({
    decile: bin + 1,
    count: s.w,
    minPredicted: s.min,
    maxPredicted: s.max,
    meanPredicted: s.w > 0 ? s.wp / s.w : Number.NaN,
    observedRate: s.w > 0 ? s.wy / s.w : Number.NaN,
  }));
}

/** Σ |mean predicted − observed| weighted by each decile's weight (the trainer's ECE, weighted). */
export function weightedCalibrationError(table: readonly ReliabilityBin[]): number {
  let total = 0;
  let error = 0;
  for (const bin of table) {
    if (!(bin.count > 0)) continue;
    total += bin.count;
    error += bin.count * Math.abs(bin.meanPredicted - bin.observedRate);
  }
  return total > 0 ? error / total : Number.NaN;
}

export function weightedQuality(p: ArrayLike<number>, labels: ArrayLike<number>, weights: ArrayLike<number>, n = p.length): WeightedQuality {
  const curve = weightedThresholdCurve(p, labels, weights, n);
  const reliability = weightedReliability(p, labels, weights, n);
  return {
    scoredUsers: curve.positives + curve.negatives,
    loggedIn: curve.positives,
    averagePrecision: averagePrecision(curve),
    rocAuc: rocAuc(curve),
    calibrationError: weightedCalibrationError(reliability),
    reliability,
  };
}

/** One run's live quality, as stored in `model_quality_runs`. */
export interface RunQuality extends WeightedQuality {
  runId: number;
  window: string;
  scheduledFor: Date;
  expiresAt: Date;
  modelVersion: string | null;
  computedAt: Date;
  recordedUsers: number;
  coverage: number | null;
  waste: number | null;
  holdoutUsers: number;
  holdoutLoggedIn: number;
  holdoutMissRate: number | null;
  trainedAveragePrecision: number | null;
  trainedCalibrationError: number | null;
  drifted: boolean;
}

/** Figures as JSON stores them: NaN (no positives in a run) becomes null. */
const finite = (x: number | null | undefined): number | null => (x === null || x === undefined || !Number.isFinite(x) ? null : x);

/**
 * Drift: live AP below the AP the model measured on its held-out week by more than `margin`, or
 * live calibration error above the trained one by more than `margin`. Undefined figures (a run
 * without a login, a recency-rule run with no training figures) never drift.
 */
export function isDrift(live: { averagePrecision: number | null; calibrationError: number | null }, trained: { averagePrecision: number | null; calibrationError: number | null }, margin: number): boolean {
  const apDrop = live.averagePrecision !== null && trained.averagePrecision !== null && live.averagePrecision < trained.averagePrecision - margin;
  const eceRise = live.calibrationError !== null && trained.calibrationError !== null && live.calibrationError > trained.calibrationError + margin;
  return apDrop || eceRise;
}

const QUALITY_COLUMNS = `q.run_id, b.window_name, b.scheduled_for, b.expires_at, q.model_version, q.computed_at, q.recorded_users, q.scored_users,
  q.logged_in, q.average_precision, q.roc_auc, q.calibration_error, q.reliability, q.coverage, q.waste, q.holdout_users,
  q.holdout_logged_in, q.holdout_miss_rate, q.trained_average_precision, q.trained_calibration_error, q.drifted`;

/** The SQL of this module, parameterised. */
export const qualitySql = {
  /**
   * Runs whose horizon ended by `now`, planned (a run still 'planning' may hold only some shards'
   * predictions), with recorded predictions and no quality row yet, oldest first.
   */
  pendingRuns(now: Date, limit: number): Sql {
    return {
      text: `SELECT b.id, b.window_name, b.scheduled_for, b.expires_at, b.model_version
               FROM batch_runs b
              WHERE b.expires_at <= $1 AND b.status <> 'planning'
                AND NOT EXISTS (SELECT 1 FROM model_quality_runs q WHERE q.run_id = b.id)
                AND EXISTS (SELECT 1 FROM predictions p WHERE p.run_id = b.id)
              ORDER BY b.expires_at, b.id
              LIMIT $2`,
      values: [now, limit],
    };
  },
  /** A run's recorded users: score, weight, holdout, and whether they logged in during its horizon. */
  runRows(runId: number, from: Date, to: Date): Sql {
    return {
      text: `WITH active AS (SELECT DISTINCT user_id FROM logins WHERE at >= $2 AND at < $3)
             SELECT p.user_id, p.p, p.weight, p.holdout, (a.user_id IS NOT NULL) AS logged_in
               FROM predictions p
               LEFT JOIN active a ON a.user_id = p.user_id
              WHERE p.run_id = $1`,
      values: [runId, from, to],
    };
  },
  coverageAndWaste(runId: number): Sql {
    return {
      text: `SELECT (SELECT coverage FROM coverage_by_run WHERE run_id = $1) AS coverage,
                    (SELECT waste_rate FROM waste_by_run WHERE run_id = $1) AS waste`,
      values: [runId],
    };
  },
  trainedFigures(version: string): Sql {
    return {
      text: `SELECT (metrics ->> 'calibrationAveragePrecision')::float8 AS ap, (metrics ->> 'calibrationEce')::float8 AS ece
               FROM propensity_models WHERE version = $1`,
      values: [version],
    };
  },
  insert(q: RunQuality): Sql {
    return {
      text: `INSERT INTO model_quality_runs (run_id, model_version, computed_at, recorded_users, scored_users, logged_in, average_precision,
               roc_auc, calibration_error, reliability, coverage, waste, holdout_users, holdout_logged_in, holdout_miss_rate,
               trained_average_precision, trained_calibration_error, drifted)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
             ON CONFLICT (run_id) DO NOTHING`,
      values: [
        q.runId,
        q.modelVersion,
        q.computedAt,
        q.recordedUsers,
        q.scoredUsers,
        q.loggedIn,
        finite(q.averagePrecision),
        finite(q.rocAuc),
        finite(q.calibrationError),
        JSON.stringify(q.reliability),
        q.coverage,
        q.waste,
        q.holdoutUsers,
        q.holdoutLoggedIn,
        q.holdoutMissRate,
        q.trainedAveragePrecision,
        q.trainedCalibrationError,
        q.drifted,
      ],
    };
  },
  byRun(runId: number): Sql {
    return { text: `SELECT ${QUALITY_COLUMNS} FROM model_quality_runs q JOIN batch_runs b ON b.id = q.run_id WHERE q.run_id = $1`, values: [runId] };
  },
  /** Each window's latest evaluated run. */
  latestByWindow(): Sql {
    return {
      text: `SELECT DISTINCT ON (b.window_name) ${QUALITY_COLUMNS}
               FROM model_quality_runs q JOIN batch_runs b ON b.id = q.run_id
              ORDER BY b.window_name, b.expires_at DESC, q.run_id DESC`,
    };
  },
  /** Per model: evaluated runs, mean live AP and calibration error, runs that drifted. */
  summaryByModel(): Sql {
    return {
      text: `SELECT model_version, count(*) AS runs, avg(average_precision) AS average_precision, avg(calibration_error) AS calibration_error,
                    count(*) FILTER (WHERE drifted) AS drifted
               FROM model_quality_runs WHERE model_version IS NOT NULL GROUP BY model_version`,
    };
  },
  byModel(version: string): Sql {
    return {
      text: `SELECT ${QUALITY_COLUMNS} FROM model_quality_runs q JOIN batch_runs b ON b.id = q.run_id
              WHERE q.model_version = $1 ORDER BY b.expires_at DESC, q.run_id DESC`,
      values: [version],
    };
  },
};

interface QualityRow {
  run_id: string;
  window_name: string;
  scheduled_for: Date;
  expires_at: Date;
  model_version: string | null;
  computed_at: Date;
  recorded_users: string;
  scored_users: number;
  logged_in: number;
  average_precision: number | null;
  roc_auc: number | null;
  calibration_error: number | null;
  reliability: ReliabilityBin[];
  coverage: number | null;
  waste: number | null;
  holdout_users: string;
  holdout_logged_in: string;
  holdout_miss_rate: number | null;
  trained_average_precision: number | null;
  trained_calibration_error: number | null;
  drifted: boolean;
}

const nanIfNull = (x: number | null): number => (x === null ? Number.NaN : x);

function fromRow(row: QualityRow): RunQuality {
  return {
    runId: Number(row.run_id),
    window: row.window_name,
    scheduledFor: row.scheduled_for,
    expiresAt: row.expires_at,
    modelVersion: row.model_version,
    computedAt: row.computed_at,
    recordedUsers: Number(row.recorded_users),
    scoredUsers: row.scored_users,
    loggedIn: row.logged_in,
    averagePrecision: nanIfNull(row.average_precision),
    rocAuc: nanIfNull(row.roc_auc),
    calibrationError: nanIfNull(row.calibration_error),
    reliability: row.reliability.map((bin) => ({ ...bin, minPredicted: nanIfNull(bin.minPredicted), maxPredicted: nanIfNull(bin.maxPredicted), meanPredicted: nanIfNull(bin.meanPredicted), observedRate: nanIfNull(bin.observedRate) })),
    coverage: row.coverage === null ? null : Number(row.coverage),
    waste: row.waste === null ? null : Number(row.waste),
    holdoutUsers: Number(row.holdout_users),
    holdoutLoggedIn: Number(row.holdout_logged_in),
    holdoutMissRate: row.holdout_miss_rate,
    trainedAveragePrecision: row.trained_average_precision,
    trainedCalibrationError: row.trained_calibration_error,
    drifted: row.drifted,
  };
}

export interface RecordQualityOptions {
  pool: Queryable;
  log: Logger;
  clock: Clock;
  /** PREWARM_PROPENSITY_DRIFT_MARGIN. */
  driftMargin: number;
  /** Runs evaluated per call at most. Default 20. */
  limit?: number;
}

/**
 * Evaluates the runs whose horizon ended and that have no quality row yet, stores their rows,
 * and logs a warning for each that drifted. Returns the new rows.
 */
export async function recordModelQuality(options: RecordQualityOptions): Promise<RunQuality[]> {
  const { pool, log, clock } = options;
  const now = clock.now();
  const pending = qualitySql.pendingRuns(now, options.limit ?? 20);
  const runs = await pool.query<{ id: string; window_name: string; scheduled_for: Date; expires_at: Date; model_version: string | null }>(pending.text, pending.values);
  const recorded: RunQuality[] = [];
  for (const run of runs.rows) {
    const runId = Number(run.id);
    const rowsSql = qualitySql.runRows(runId, run.scheduled_for, run.expires_at);
    const rows = await pool.query<{ p: number; weight: number; holdout: boolean; logged_in: boolean }>(rowsSql.text, rowsSql.values);
    const n = rows.rows.length;
    const p = new Float64Array(n);
    const labels = new Uint8Array(n);
    const weights = new Float64Array(n);
    let holdoutUsers = 0;
    let holdoutLoggedIn = 0;
    rows.rows.forEach((row, i) => {
      p[i] = Number(row.p);
      labels[i] = row.logged_in ? 1 : 0;
      weights[i] = Number(row.weight);
      if (row.holdout) {
        holdoutUsers++;
        if (row.logged_in) holdoutLoggedIn++;
      }
    });
    const quality = weightedQuality(p, labels, weights, n);
    const outcomes = qualitySql.coverageAndWaste(runId);
    const measured = (await pool.query<{ coverage: number | null; waste: number | null }>(outcomes.text, outcomes.values)).rows[0];
    let trained: { ap: number | null; ece: number | null } | undefined;
    if (run.model_version) {
      const figures = qualitySql.trainedFigures(run.model_version);
      trained = (await pool.query<{ ap: number | null; ece: number | null }>(figures.text, figures.values)).rows[0];
    }
    const live = { averagePrecision: finite(quality.averagePrecision), calibrationError: finite(quality.calibrationError) };
    const trainedFigures = { averagePrecision: trained?.ap ?? null, calibrationError: trained?.ece ?? null };
    const row: RunQuality = {
      ...quality,
      runId,
      window: run.window_name,
      scheduledFor: run.scheduled_for,
      expiresAt: run.expires_at,
      modelVersion: run.model_version,
      computedAt: now,
      recordedUsers: n,
      coverage: measured?.coverage === null || measured?.coverage === undefined ? null : Number(measured.coverage),
      waste: measured?.waste === null || measured?.waste === undefined ? null : Number(measured.waste),
      holdoutUsers,
      holdoutLoggedIn,
      holdoutMissRate: holdoutUsers > 0 ? holdoutLoggedIn / holdoutUsers : null,
      trainedAveragePrecision: trainedFigures.averagePrecision,
      trainedCalibrationError: trainedFigures.calibrationError,
      drifted: isDrift(live, trainedFigures, options.driftMargin),
    };
    const insert = qualitySql.insert(row);
    await pool.query(insert.text, insert.values);
    recorded.push(row);
    const figures = { runId, window: row.window, modelVersion: row.modelVersion, averagePrecision: live.averagePrecision, trainedAveragePrecision: trainedFigures.averagePrecision, calibrationError: live.calibrationError, trainedCalibrationError: trainedFigures.calibrationError, margin: options.driftMargin };
    if (row.drifted) log.warn(figures, 'propensity model drift: live quality below its training figures by more than the margin');
    else log.debug(figures, 'live model quality recorded');
  }
  return recorded;
}

export async function loadRunQuality(pool: Queryable, runId: number): Promise<RunQuality | undefined> {
  const sql = qualitySql.byRun(runId);
  const row = (await pool.query<QualityRow>(sql.text, sql.values)).rows[0];
  return row ? fromRow(row) : undefined;
}

export async function latestQualityByWindow(pool: Queryable): Promise<RunQuality[]> {
  return (await pool.query<QualityRow>(qualitySql.latestByWindow().text)).rows.map(fromRow);
}

export async function qualityOfModel(pool: Queryable, version: string): Promise<RunQuality[]> {
  const sql = qualitySql.byModel(version);
  return (await pool.query<QualityRow>(sql.text, sql.values)).rows.map(fromRow);
}

/** A model's live record: runs evaluated, mean AP and calibration error over them, runs that drifted. */
export interface LiveSummary {
  runs: number;
  averagePrecision: number | null;
  calibrationError: number | null;
  drifted: number;
}

export async function liveSummaryByModel(pool: Queryable): Promise<Map<string, LiveSummary>> {
  const rows = await pool.query<{ model_version: string; runs: string; average_precision: number | null; calibration_error: number | null; drifted: string }>(qualitySql.summaryByModel().text);
  return new Map(
    rows.rows.map((row) => [
      row.model_version,
      { runs: Number(row.runs), averagePrecision: row.average_precision, calibrationError: row.calibration_error, drifted: Number(row.drifted) },
    ]),
  );
}
