import type { Pool, Sql } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { scaleMap, type ScaleMapper } from '../planner/feedback.ts';
import { FEATURE_COUNT, featuresAt, populationContext } from './features.ts';
import { assertScorable, modelProbability, type PropensityModel } from './model.ts';
import { knownStateBatches } from './model-scorer.ts';
import { latestModelVersion, loadModel } from './model-store.ts';
import { S, STATE_SIZE } from './state.ts';
import { gridFor, syncGrid } from './state-store.ts';

/**
 * Known users the scale maps are computed on: one hash shard of the known users, as many shards
 * as make it about this size (all of them on a small log). A quantile map needs the shape of the
 * score distribution, not every user: the standard error of a share of 20 000 users is at most
 * √(0.25 / 20 000) ≈ 0.35 percentage points.
 */
export const SCALE_SAMPLE_USERS = 20_000;

/** The SQL of this module, parameterised. */
export const scaleMapSql = {
  /** The planner's estimate of the known users (the statistics' row count, no scan). */
  estimateUsers(): Sql {
    return { text: `SELECT greatest(reltuples, 0)::float8 AS n FROM pg_class WHERE oid = 'user_activity'::regclass` };
  },
};

/**
 * The held target's scale maps for the planner (`resolveHeldPolicy`): the runs pooled to turn a
 * coverage or waste target into a threshold were scored by the models that served then (daily
 * retraining: up to 28 of them), whose scores are on scales of their own. Each earlier model and
 * the serving one (the newest that serves, as the scorer loads it) score the same sample of
 * known users at the run's start — states rewound to it, features as in scoring — and the
 * earlier model's scores are mapped onto the serving model's by quantile (`scaleMap`). Versions
 * that are not stored models (a test scorer), models of another window length or that cannot
 * score are left out: their runs pool as recorded.
 */
export function createScaleMapper(deps: { pool: Pool; log: Logger }): ScaleMapper {
  const { pool, log } = deps;
  return async (versions, at, horizonMs) => {
    const serving = await latestModelVersion(pool);
    if (!serving) return undefined;
    const earlier = versions.filter((version) => version !== '' && version !== serving.version);
    if (earlier.length === 0) return undefined;
    const servingModel = (await loadModel(pool, serving.version))?.model;
    if (!servingModel || !scorable(servingModel)) return undefined;
    const models = new Map<string, PropensityModel>();
    for (const version of earlier) {
      const model = (await loadModel(pool, version))?.model;
      if (model && model.windowMs === servingModel.windowMs && scorable(model)) models.set(version, model);
    }
    if (models.size === 0) return undefined;
    const startMs = at.getTime();
    const grid = gridFor(servingModel.windowMs, startMs);
    await syncGrid(pool, grid, log);
    const estimate = Number((await pool.query<{ n: number }>(scaleMapSql.estimateUsers())).rows[0]?.n ?? 0);
    const shard = { index: 0, count: Math.max(1, Math.ceil(estimate / SCALE_SAMPLE_USERS)) };
    const parts: Float64Array[] = [];
    let users = 0;
    for await (const table of knownStateBatches(pool, grid, startMs, shard, 10_000)) {
      parts.push(table.states.slice(0, table.userIds.length * STATE_SIZE));
      users += table.userIds.length;
    }
    const states = new Float64Array(users * STATE_SIZE);
    let offset = 0;
    for (const part of parts) {
      states.set(part, offset);
      offset += part.length;
    }
    // The sample's population features: its rates are the population's up to sampling error, and
    // every model sees the same inputs, which is what the map compares.
    const context = populationContext(states, users, startMs, grid);
    const windows = horizonMs / servingModel.windowMs;
    const rows: number[] = [];
    const row = new Float64Array(FEATURE_COUNT);
    const features = new Float64Array(users * FEATURE_COUNT);
    for (let u = 0; u < users; u++) {
      const base = u * STATE_SIZE;
      if (!((states[base + S.COUNT] as number) > 0) || !((states[base + S.FIRST] as number) < startMs)) continue;
      featuresAt(states, base, context, row, 0);
      features.set(row, rows.length * FEATURE_COUNT);
      rows.push(u);
    }
    if (rows.length === 0) return undefined;
    const scoreWith = (model: PropensityModel): Float64Array => {
      const out = new Float64Array(rows.length);
      for (let i = 0; i < rows.length; i++) {
        const p = modelProbability(model, features, i * FEATURE_COUNT);
        out[i] = windows === 1 ? p : 1 - Math.pow(1 - p, windows);
      }
      return out;
    };
    const servingScores = scoreWith(servingModel);
    const maps = new Map<string, Int32Array>();
    for (const [version, model] of models) {
      const map = scaleMap(scoreWith(model), servingScores);
      if (map) maps.set(version, map);
    }
    log.debug({ at, serving: serving.version, models: maps.size, users: rows.length }, 'held target: pooled scores mapped onto the serving model');
    return maps;
  };
}

function scorable(model: PropensityModel): boolean {
  try {
    assertScorable(model);
    return true;
  } catch {
    return false;
  }
}
