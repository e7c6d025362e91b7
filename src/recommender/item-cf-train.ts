import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Queryable } from '../db/pool.ts';
import { userItemWeightsBefore } from './sql.ts';
import { topK } from './top-k.ts';
import type { ScoredItem } from './types.ts';

export const ITEM_CF_KIND = 'item-cf';

export interface ItemCfParams {
  /** Neighbours kept per item (those with similarity > 0). */
  neighbours: number;
  /** Length of the stored popular list (fallback and padding). */
  popularCount: number;
  /** How summed interaction weights enter the user–item matrix. */
  weighting: 'log1p';
}

export interface ItemCfStats {
  items: number;
  users: number;
  /** Distinct (user, item) pairs. */
  userItems: number;
  /** Unordered item pairs with a similarity > 0 (before keeping the top neighbours). */
  pairs: number;
  /** Item→neighbour links stored. */
  links: number;
  /** Milliseconds reading interactions (0 for an in-memory build). */
  readMs: number;
  /** Milliseconds in total, reading included. */
  trainMs: number;
}

/**
 * An item-item cosine neighbour model. Items are indexed in item-id order (JavaScript string
 * order), so an index comparison is an item-id comparison when breaking ties.
 */
export interface ItemCfModel {
  readonly kind: typeof ITEM_CF_KIND;
  /** `item-cf-<until, compact ISO>-<content hash>`, e.g. `item-cf-20131201T000000Z-3f2a9c1d`. */
  readonly version: string;
  /** The model learnt only from interactions strictly before this instant. */
  readonly dataUntil: Date;
  readonly params: ItemCfParams;
  readonly stats: ItemCfStats;
  readonly itemIds: readonly string[];
  readonly itemIndex: ReadonlyMap<string, number>;
  /** Neighbours of item i: positions [offsets[i], offsets[i + 1]) of neighbourIdx/neighbourSim, best first. */
  readonly offsets: Int32Array;
  readonly neighbourIdx: Int32Array;
  readonly neighbourSim: Float64Array;
  /** Most popular items before dataUntil by distinct users (ties by item id); score = share of users. */
  readonly popular: readonly ScoredItem[];
}

export interface InteractionInput {
  userId: string;
  itemId: string;
  /** Default 1. Summed per (user, item). */
  weight?: number;
  /** When given, interactions at or after `until` are skipped. */
  at?: Date;
}

export interface BuildItemCfOptions {
  /** The model's data horizon: what it may be used for starts here. */
  until: Date;
  /** Default 50. */
  neighbours?: number;
  /** Default 1000. */
  popularCount?: number;
}

export const DEFAULT_NEIGHBOURS = 50;
export const DEFAULT_POPULAR_COUNT = 1000;

/**
 * Builds the model in memory from interactions (any order; a replay calls this as its clock
 * advances, and trainItemCf feeds it from Postgres).
 *
 * Matrix value r(u, i) = ln(1 + Σ weight): weights are click counts whose tail is long (one
 * student clicks a page 300 times), and raw counts would let a few heavy clickers define
 * every similarity. The log keeps "clicked more" meaningful, unlike a binary matrix, while
 * bounding its pull. Non-positive sums give r = 0: the pair still counts as owned and for
 * popularity, but adds nothing to similarities.
 *
 * sim(i, j) = Σ_u r(u,i)·r(u,j) / sqrt(Σ_u r(u,i)² · Σ_u r(u,j)²), computed one item row at a
 * time over per-user item lists (cost Σ_u n_u², memory O(items + pairs)), never as a dense
 * item × item matrix and never as an SQL self-join.
 */
export function buildItemCfModel(interactions: Iterable<InteractionInput>, options: BuildItemCfOptions): ItemCfModel {
  const started = performance.now();
  const neighbours = options.neighbours ?? DEFAULT_NEIGHBOURS;
  const popularCount = options.popularCount ?? DEFAULT_POPULAR_COUNT;
  const untilMs = options.until.getTime();

  // 1. Sum weights per (user, item), with dense ids in order of appearance.
  const userIndex = new Map<string, number>();
  const seenItemIndex = new Map<string, number>();
  const seenItemIds: string[] = [];
  const perUser: Map<number, number>[] = [];
  for (const interaction of interactions) {
    if (interaction.at !== undefined && !(interaction.at.getTime() < untilMs)) continue;
    let user = userIndex.get(interaction.userId);
    if (user === undefined) {
      user = perUser.length;
      userIndex.set(interaction.userId, user);
      perUser.push(new Map());
    }
    let item = seenItemIndex.get(interaction.itemId);
    if (item === undefined) {
      item = seenItemIds.length;
      seenItemIndex.set(interaction.itemId, item);
      seenItemIds.push(interaction.itemId);
    }
    const sums = perUser[user] as Map<number, number>;
    sums.set(item, (sums.get(item) ?? 0) + (interaction.weight ?? 1));
  }

  // 2. Re-index items in id order; user rows (CSR) of (item, r) and user counts per item.
  const itemCount = seenItemIds.length;
  const order = seenItemIds.map((_, index) => index).sort((a, b) => compareIds(seenItemIds[a] as string, seenItemIds[b] as string));
  const itemIds = order.map((index) => seenItemIds[index] as string);
  const position = new Int32Array(itemCount);
  order.forEach((seen, pos) => (position[seen] = pos));
  const usersPerItem = new Int32Array(itemCount);
  let userItems = 0;
  let nonZero = 0;
  for (const sums of perUser) {
    userItems += sums.size;
    for (const [item, weight] of sums) {
      usersPerItem[position[item] as number]! += 1;
      if (weight > 0) nonZero++;
    }
  }
  const userOffsets = new Int32Array(perUser.length + 1);
  const userItemIdx = new Int32Array(nonZero);
  const userItemValue = new Float64Array(nonZero);
  let cursor = 0;
  perUser.forEach((sums, user) => {
    for (const [item, weight] of sums) {
      if (weight <= 0) continue;
      userItemIdx[cursor] = position[item] as number;
      userItemValue[cursor] = Math.log1p(weight);
      cursor++;
    }
    userOffsets[user + 1] = cursor;
  });

  // 3. Item columns (CSR) of (user, r) and squared norms.
  const itemOffsets = new Int32Array(itemCount + 1);
  for (let n = 0; n < nonZero; n++) itemOffsets[(userItemIdx[n] as number) + 1]! += 1;
  for (let i = 0; i < itemCount; i++) itemOffsets[i + 1]! += itemOffsets[i] as number;
  const fill = itemOffsets.slice(0, itemCount);
  const itemUser = new Int32Array(nonZero);
  const itemUserValue = new Float64Array(nonZero);
  const norm = new Float64Array(itemCount);
  for (let user = 0; user < perUser.length; user++) {
    for (let n = userOffsets[user] as number; n < (userOffsets[user + 1] as number); n++) {
      const item = userItemIdx[n] as number;
      const value = userItemValue[n] as number;
      const at = fill[item]!++;
      itemUser[at] = user;
      itemUserValue[at] = value;
      norm[item]! += value * value;
    }
  }

  // 4. One row of the similarity matrix at a time; keep the top neighbours.
  const dot = new Float64Array(itemCount);
  const touched = new Int32Array(itemCount);
  const offsets = new Int32Array(itemCount + 1);
  const links: number[] = [];
  const sims: number[] = [];
  let pairs = 0;
  for (let i = 0; i < itemCount; i++) {
    let touchedCount = 0;
    for (let n = itemOffsets[i] as number; n < (itemOffsets[i + 1] as number); n++) {
      const user = itemUser[n] as number;
      const ri = itemUserValue[n] as number;
      for (let m = userOffsets[user] as number; m < (userOffsets[user + 1] as number); m++) {
        const j = userItemIdx[m] as number;
        if (j === i) continue;
        // Every product is > 0, so a zero means "not seen in this row yet".
        if (dot[j] === 0) touched[touchedCount++] = j;
        dot[j]! += ri * (userItemValue[m] as number);
      }
    }
    const normI = norm[i] as number;
    for (let n = 0; n < touchedCount; n++) {
      const j = touched[n] as number;
      dot[j] = (dot[j] as number) / Math.sqrt(normI * (norm[j] as number));
      if (j > i) pairs++;
    }
    for (const j of topK(touched, touchedCount, dot, neighbours)) {
      links.push(j);
      sims.push(dot[j] as number);
    }
    for (let n = 0; n < touchedCount; n++) dot[touched[n] as number] = 0;
    offsets[i + 1] = links.length;
  }

  // 5. Popular items: distinct users, ties by item id (index order).
  const popularIdx = topK(Int32Array.from({ length: itemCount }, (_, i) => i), itemCount, usersPerItem, popularCount);
  const popular = popularIdx.map((i) => ({ itemId: itemIds[i] as string, score: (usersPerItem[i] as number) / perUser.length }));

  const params: ItemCfParams = { neighbours, popularCount, weighting: 'log1p' };
  const trainMs = Math.round(performance.now() - started);
  return assembleModel({
    dataUntil: options.until,
    params,
    stats: { items: itemCount, users: perUser.length, userItems, pairs, links: links.length, readMs: 0, trainMs },
    itemIds,
    offsets,
    neighbourIdx: Int32Array.from(links),
    neighbourSim: Float64Array.from(sims),
    popular,
  });
}

export interface TrainItemCfOptions {
  pool: Queryable;
  /** Only interactions strictly before this instant are used. */
  until: Date;
  /** Default 50. */
  neighbours?: number;
  /** Default 1000. */
  popularCount?: number;
  log: Logger;
}

/** Trains from the interactions table (one aggregated read, then buildItemCfModel). */
export async function trainItemCf(options: TrainItemCfOptions): Promise<ItemCfModel> {
  const started = performance.now();
  const result = await options.pool.query<[string, string, number]>({ ...userItemWeightsBefore(options.until), rowMode: 'array' });
  const readMs = Math.round(performance.now() - started);
  const rows = result.rows;
  function* interactions(): Iterable<InteractionInput> {
    for (const [userId, itemId, weight] of rows) yield { userId, itemId, weight };
  }
  const built = buildItemCfModel(interactions(), options);
  const model = { ...built, stats: { ...built.stats, readMs, trainMs: Math.round(performance.now() - started) } };
  options.log.info({ version: model.version, ...model.stats }, 'item-cf model trained');
  return model;
}

/** The model with its derived index and content-hashed version (also used when loading). */
export function assembleModel(parts: Omit<ItemCfModel, 'kind' | 'version' | 'itemIndex'> & { version?: string }): ItemCfModel {
  const itemIndex = new Map(parts.itemIds.map((id, index) => [id, index]));
  const version = parts.version ?? `${ITEM_CF_KIND}-${compactIso(parts.dataUntil)}-${contentHash(parts)}`;
  return { ...parts, kind: ITEM_CF_KIND, version, itemIndex };
}

/** `2013-12-01T00:00:00.000Z` → `20131201T000000Z` (milliseconds kept only when not zero). */
export function compactIso(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/\.000Z$/, 'Z');
}

function contentHash(parts: Omit<ItemCfModel, 'kind' | 'version' | 'itemIndex'>): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ until: parts.dataUntil.toISOString(), params: parts.params, items: parts.itemIds, popular: parts.popular }));
  hash.update(new Uint8Array(parts.offsets.buffer, parts.offsets.byteOffset, parts.offsets.byteLength));
  hash.update(new Uint8Array(parts.neighbourIdx.buffer, parts.neighbourIdx.byteOffset, parts.neighbourIdx.byteLength));
  hash.update(new Uint8Array(parts.neighbourSim.buffer, parts.neighbourSim.byteOffset, parts.neighbourSim.byteLength));
  return hash.digest('hex').slice(0, 8);
}

/** Code-unit order, the same as Postgres `COLLATE "C"` for ordinary ids. */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
