import { randomBytes } from 'node:crypto';
import type { Queryable, Sql } from '../db/pool.ts';
import type { ModelMetrics, PropensityModel } from './model.ts';

/** A propensity model with what it was trained on, as stored in `propensity_models`. */
export interface StoredPropensityModel {
  version: string;
  trainedAt: Date;
  trainFrom: Date;
  trainTo: Date;
  model: PropensityModel;
  metrics: ModelMetrics;
}

interface ModelRow {
  version: string;
  kind: string;
  trained_at: Date;
  train_from: Date;
  train_to: Date;
  window_ms: number;
  feature_names: string[];
  parameters: { format: 1; logistic: PropensityModel['logistic'] };
  calibration: PropensityModel['calibration'];
  metrics: ModelMetrics;
}

const COLUMNS = 'version, kind, trained_at, train_from, train_to, window_ms, feature_names, parameters, calibration, metrics';

/** The SQL of this module, parameterised. */
export const modelSql = {
  insert(stored: StoredPropensityModel): Sql {
    const { model } = stored;
    return {
      text: `INSERT INTO propensity_models (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      values: [
        stored.version,
        model.kind,
        stored.trainedAt,
        stored.trainFrom,
        stored.trainTo,
        model.windowMs,
        model.featureNames,
        JSON.stringify({ format: model.format, logistic: model.logistic }),
        JSON.stringify(model.calibration),
        // JSON has no NaN: an undefined metric (no positives in a slice) is stored as null.
        JSON.stringify(stored.metrics),
      ],
    };
  },
  latest(): Sql {
    return { text: `SELECT ${COLUMNS} FROM propensity_models ORDER BY trained_at DESC, version DESC LIMIT 1` };
  },
  latestVersion(): Sql {
    return { text: 'SELECT version, trained_at FROM propensity_models ORDER BY trained_at DESC, version DESC LIMIT 1' };
  },
  byVersion(version: string): Sql {
    return { text: `SELECT ${COLUMNS} FROM propensity_models WHERE version = $1`, values: [version] };
  },
};

/** `propensity-20131201T000000Z-3fa9c1`: sortable by training time, unique across replicas. */
export function newModelVersion(trainedAt: Date): string {
  const stamp = trainedAt.toISOString().replace(/\.\d{3}Z$/, 'Z').replaceAll('-', '').replaceAll(':', '');
  return `propensity-${stamp}-${randomBytes(3).toString('hex')}`;
}

export async function saveModel(db: Queryable, stored: StoredPropensityModel): Promise<void> {
  const sql = modelSql.insert(stored);
  await db.query(sql.text, sql.values);
}

export async function loadLatestModel(db: Queryable): Promise<StoredPropensityModel | undefined> {
  const result = await db.query<ModelRow>(modelSql.latest().text);
  return result.rows[0] ? fromRow(result.rows[0]) : undefined;
}

export async function loadModel(db: Queryable, version: string): Promise<StoredPropensityModel | undefined> {
  const sql = modelSql.byVersion(version);
  const result = await db.query<ModelRow>(sql.text, sql.values);
  return result.rows[0] ? fromRow(result.rows[0]) : undefined;
}

export async function latestModelVersion(db: Queryable): Promise<{ version: string; trainedAt: Date } | undefined> {
  const result = await db.query<{ version: string; trained_at: Date }>(modelSql.latestVersion().text);
  const row = result.rows[0];
  return row ? { version: row.version, trainedAt: row.trained_at } : undefined;
}

function fromRow(row: ModelRow): StoredPropensityModel {
  return {
    version: row.version,
    trainedAt: row.trained_at,
    trainFrom: row.train_from,
    trainTo: row.train_to,
    model: {
      format: row.parameters.format,
      kind: row.kind as PropensityModel['kind'],
      windowMs: Number(row.window_ms),
      featureNames: row.feature_names,
      logistic: row.parameters.logistic,
      calibration: row.calibration,
    },
    metrics: row.metrics,
  };
}
