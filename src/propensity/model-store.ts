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
const PREFIXED = COLUMNS.split(', ').map((column) => `m.${column}`).join(', ');
const SERVING = `FROM propensity_models m LEFT JOIN propensity_model_roles r USING (version)
  WHERE r.role IS NULL OR r.role = 'champion'
  ORDER BY coalesce(r.decided_at, m.trained_at) DESC, m.trained_at DESC, m.version DESC LIMIT 1`;

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
  /**
   * The serving model (migration 0013): the latest, by when it started serving, of the models
   * without a role (the newest of them serves, as before roles existed) or promoted to champion.
   * A challenger or a rejected model never serves.
   */
  latest(): Sql {
    return { text: `SELECT ${PREFIXED} ${SERVING}` };
  },
  latestVersion(): Sql {
    return { text: `SELECT m.version, m.trained_at ${SERVING}` };
  },
  /** Every model, newest first, with its role (null: none recorded). */
  list(limit: number): Sql {
    return {
      text: `SELECT ${PREFIXED}, r.role, r.decided_at, r.decided_by, r.figures, r.reason
               FROM propensity_models m LEFT JOIN propensity_model_roles r USING (version)
              ORDER BY m.trained_at DESC, m.version DESC LIMIT $1`,
      values: [limit],
    };
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

/** The serving model (see modelSql.latest: the newest, unless roles say otherwise). */
export async function loadLatestModel(db: Queryable): Promise<StoredPropensityModel | undefined> {
  const result = await db.query<ModelRow>(modelSql.latest().text);
  return result.rows[0] ? fromRow(result.rows[0]) : undefined;
}

export async function loadModel(db: Queryable, version: string): Promise<StoredPropensityModel | undefined> {
  const sql = modelSql.byVersion(version);
  const result = await db.query<ModelRow>(sql.text, sql.values);
  return result.rows[0] ? fromRow(result.rows[0]) : undefined;
}

/** The serving model's version and training time. */
export async function latestModelVersion(db: Queryable): Promise<{ version: string; trainedAt: Date } | undefined> {
  const result = await db.query<{ version: string; trained_at: Date }>(modelSql.latestVersion().text);
  const row = result.rows[0];
  return row ? { version: row.version, trainedAt: row.trained_at } : undefined;
}

/** A stored model with its role (migration 0013) and whether it is the one serving now. */
export interface ListedModel extends StoredPropensityModel {
  role: 'challenger' | 'champion' | 'rejected' | null;
  decidedAt: Date | null;
  decidedBy: string | null;
  /** The comparison that decided it (src/propensity/champion.ts), if any. */
  figures: unknown;
  reason: string | null;
  serving: boolean;
}

export async function listModels(db: Queryable, limit = 50): Promise<ListedModel[]> {
  const sql = modelSql.list(limit);
  const rows = await db.query<ModelRow & { role: ListedModel['role']; decided_at: Date | null; decided_by: string | null; figures: unknown; reason: string | null }>(sql.text, sql.values);
  const serving = await latestModelVersion(db);
  return rows.rows.map((row) => ({
    ...fromRow(row),
    role: row.role,
    decidedAt: row.decided_at,
    decidedBy: row.decided_by,
    figures: row.figures,
    reason: row.reason,
    serving: row.version === serving?.version,
  }));
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
