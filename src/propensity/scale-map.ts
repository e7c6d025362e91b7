import type { Pool, Sql } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import type { ScaleMapper } from '../planner/feedback.ts';
import { scaleMapsOnDays, type ScoredDay } from '../planner/score-histogram.ts';
import { FEATURE_COUNT, featuresAt, populationContext } from './features.ts';
import { assertScorable, modelProbabilities, type PropensityModel } from './model.ts';
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

/**
 * With the maps estimated on the pooled runs' days, the sample is drawn on each day: about
 * SCALE_SAMPLE_USERS over all the days, but at least this many a day (the standard error of a
 * share of 5 000 users is at most 0.7 percentage points).
 */
export const SCALE_SAMPLE_USERS_PER_DAY = 5_000;

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
 * known users on each day one of the earlier model's pooled runs started (`days`; without them,
 * at the run's start) — states rewound to it, features as in scoring — and the earlier model's
 * scores are mapped onto the serving model's by quantile over those days (`scaleMapsOnDays`):
 * the map is estimated on the inputs whose recorded scores it moves. Versions
 * that are not stored models (a test scorer), models of another window length or that cannot
 * score are left out: their runs pool as recorded.
 */
export function createScaleMapper(deps: { pool: Pool; log: Logger }): ScaleMapper {
  const { pool, log } = deps;
  return async (versions, at, horizonMs, days) => {
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
    const grid = gridFor(servingModel.windowMs, at.getTime());
    await syncGrid(pool, grid, log);
    const estimate = Number((await pool.query<{ n: number }>(scaleMapSql.estimateUsers())).rows[0]?.n ?? 0);
    const windows = horizonMs / servingModel.windowMs;
    // Each earlier model's map on the days its pooled runs started (the users as they were then),
    // or, without them, on the run's start.
    const startsOf = new Map<number, string[]>();
    for (const version of models.keys()) {
      const starts = days?.get(version)?.map((d) => d.getTime()) ?? [at.getTime()];
      for (const startMs of starts) startsOf.set(startMs, [...(startsOf.get(startMs) ?? []), version]);
    }
    const perDay = Math.max(SCALE_SAMPLE_USERS_PER_DAY, SCALE_SAMPLE_USERS / startsOf.size);
    const shard = { index: 0, count: Math.max(1, Math.ceil(estimate / perDay)) };
    const scored: ScoredDay[] = [];
    let users = 0;
    for (const [startMs, dayVersions] of startsOf) {
      const sample = await sampleFeatures(pool, grid, startMs, shard);
      if (!sample) continue;
      users += sample.count;
      const servingScores = scoreSample(servingModel, sample, windows);
      for (const version of dayVersions) scored.push({ model: version, from: scoreSample(models.get(version) as PropensityModel, sample, windows), to: servingScores });
    }
    if (scored.length === 0) return undefined;
    const maps = scaleMapsOnDays(scored);
    log.debug({ at, serving: serving.version, models: maps.size, days: startsOf.size, users }, 'held target: pooled scores mapped onto the serving model');
    return maps;
  };
}

/** Known users of one hash shard at `startMs` (states rewound to it), as feature rows. */
async function sampleFeatures(pool: Pool, grid: ReturnType<typeof gridFor>, startMs: number, shard: { index: number; count: number }): Promise<{ features: Float64Array; count: number } | undefined> {
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
  const row = new Float64Array(FEATURE_COUNT);
  const features = new Float64Array(users * FEATURE_COUNT);
  let count = 0;
  for (let u = 0; u < users; u++) {
    const base = u * STATE_SIZE;
    if (!((states[base + S.COUNT] as number) > 0) || !((states[base + S.FIRST] as number) < startMs)) continue;
    featuresAt(states, base, context, row, 0);
    features.set(row, count * FEATURE_COUNT);
    count++;
  }
  return count > 0 ? { features, count } : undefined;
}

/** A model's scores of the sample, over the run's horizon (`windows` of the model's length). */
function scoreSample(model: PropensityModel, sample: { features: Float64Array; count: number }, windows: number): Float64Array {
  const out = modelProbabilities(model, sample.features, sample.count);
  if (windows !== 1) for (let i = 0; i < out.length; i++) out[i] = 1 - Math.pow(1 - (out[i] as number), windows);
  return out;
}

function scorable(model: PropensityModel): boolean {
  try {
    assertScorable(model);
    return true;
  } catch {
    return false;
  }
}
