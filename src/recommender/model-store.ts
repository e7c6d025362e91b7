import { z } from 'zod';
import type { Queryable } from '../db/pool.ts';
import { PrewarmError } from '../errors.ts';
import { assembleModel, ITEM_CF_KIND, type ItemCfModel } from './item-cf-train.ts';
import { latestModelVersion, modelByVersion, upsertModel } from './sql.ts';

// The `model` column's shape, format 1: neighbour lists in CSR form, the three long arrays as
// base64 of little-endian int32 / float64. As JSON number arrays the oulad-2013 model took
// ~300 ms of blocked event loop to parse and validate, a stall the API would feel at each
// reload; as base64 it loads in a few ms, and the doubles come back bit for bit, so a loaded
// model scores exactly as the one that was trained.
const storedModelSchema = z.object({
  format: z.literal(1),
  items: z.array(z.string()),
  offsets: z.string(),
  neighbours: z.string(),
  sims: z.string(),
  popular: z.array(z.object({ itemId: z.string(), score: z.number() })),
});

const storedRowSchema = z.object({
  version: z.string(),
  kind: z.literal(ITEM_CF_KIND),
  data_until: z.date(),
  params: z.object({ neighbours: z.number(), popularCount: z.number(), weighting: z.literal('log1p') }),
  stats: z.object({
    items: z.number(),
    users: z.number(),
    userItems: z.number(),
    pairs: z.number(),
    links: z.number(),
    readMs: z.number(),
    trainMs: z.number(),
  }),
  model: storedModelSchema,
});

/** Writes the model as a `recommender_models` row; saving the same version again refreshes it. */
export async function saveModel(pool: Queryable, model: ItemCfModel): Promise<void> {
  await pool.query(
    upsertModel({
      version: model.version,
      kind: model.kind,
      dataUntil: model.dataUntil,
      params: model.params,
      stats: model.stats,
      model: {
        format: 1,
        items: model.itemIds,
        offsets: encodeInt32(model.offsets),
        neighbours: encodeInt32(model.neighbourIdx),
        sims: encodeFloat64(model.neighbourSim),
        popular: model.popular,
      },
    }),
  );
}

/** Version of the newest item-cf model (by training time), or undefined when none was trained. */
export async function latestItemCfVersion(pool: Queryable): Promise<string | undefined> {
  const result = await pool.query<{ version: string }>(latestModelVersion(ITEM_CF_KIND));
  return result.rows[0]?.version;
}

/** The newest item-cf model, or undefined when none was trained. */
export async function loadLatestModel(pool: Queryable): Promise<ItemCfModel | undefined> {
  const version = await latestItemCfVersion(pool);
  return version === undefined ? undefined : loadModel(pool, version);
}

/** One stored model by version; undefined when absent; PREWARM_ERR_RECOMMENDER when unreadable. */
export async function loadModel(pool: Queryable, version: string): Promise<ItemCfModel | undefined> {
  const result = await pool.query(modelByVersion(version));
  if (result.rows.length === 0) return undefined;
  const parsed = storedRowSchema.safeParse(result.rows[0]);
  if (!parsed.success) {
    throw new PrewarmError('PREWARM_ERR_RECOMMENDER', `stored model ${version} is not a readable item-cf model: ${parsed.error.message}`, {
      cause: parsed.error,
    });
  }
  const row = parsed.data;
  const stored = row.model;
  const items = stored.items.length;
  const offsets = decodeInt32(stored.offsets);
  const neighbours = decodeInt32(stored.neighbours);
  const sims = decodeFloat64(stored.sims);
  let consistent =
    offsets !== undefined &&
    neighbours !== undefined &&
    sims !== undefined &&
    offsets.length === items + 1 &&
    offsets[0] === 0 &&
    offsets[items] === neighbours.length &&
    sims.length === neighbours.length;
  for (let i = 0; consistent && i < items; i++) consistent = (offsets as Int32Array)[i + 1]! >= (offsets as Int32Array)[i]!;
  for (let n = 0; consistent && n < (neighbours as Int32Array).length; n++) {
    const j = (neighbours as Int32Array)[n]!;
    consistent = j >= 0 && j < items && Number.isFinite((sims as Float64Array)[n]);
  }
  if (!consistent) throw new PrewarmError('PREWARM_ERR_RECOMMENDER', `stored model ${version} has inconsistent neighbour lists`);
  return assembleModel({
    version: row.version,
    dataUntil: row.data_until,
    params: row.params,
    stats: row.stats,
    itemIds: stored.items,
    offsets: offsets as Int32Array,
    neighbourIdx: neighbours as Int32Array,
    neighbourSim: sims as Float64Array,
    popular: stored.popular,
  });
}

// Explicit little-endian through DataView, so the stored bytes do not depend on the host.
function encodeInt32(values: Int32Array): string {
  const view = new DataView(new ArrayBuffer(values.length * 4));
  values.forEach((value, n) => view.setInt32(n * 4, value, true));
  return Buffer.from(view.buffer).toString('base64');
}

function encodeFloat64(values: Float64Array): string {
  const view = new DataView(new ArrayBuffer(values.length * 8));
  values.forEach((value, n) => view.setFloat64(n * 8, value, true));
  return Buffer.from(view.buffer).toString('base64');
}

function decodeInt32(text: string): Int32Array | undefined {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length % 4 !== 0) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  return Int32Array.from({ length: bytes.length / 4 }, (_, n) => view.getInt32(n * 4, true));
}

function decodeFloat64(text: string): Float64Array | undefined {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length % 8 !== 0) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  return Float64Array.from({ length: bytes.length / 8 }, (_, n) => view.getFloat64(n * 8, true));
}
