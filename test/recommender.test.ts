import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseInstant } from '../src/cli/flags.ts';
import { createRecommender } from '../src/recommender/index.ts';
import {
  buildItemCfModel,
  createItemCfRecommender,
  loadLatestModel,
  saveModel,
  trainItemCf,
  type ItemCfModel,
} from '../src/recommender/item-cf.ts';
import type { Recommender } from '../src/recommender/types.ts';
import { createTestDb, silentLog, TEST_DATABASE_URL, type TestDb } from './helpers.ts';

/*
 * The hand-worked example. Training data (all before T = 2024-02-01, weight 1 each):
 *
 *   u1: A B C        (2024-01-10)
 *   u2: A B          (2024-01-10)
 *   u3: B C D        (2024-01-20)
 *   u4: C D E F      (2024-01-20)
 *   u5: A E          (2024-01-20)
 *
 * With every weight 1, r(u,i) = ln 2 everywhere and cancels out of the cosine, so
 * sim(i,j) = co-occurrences / sqrt(users(i) · users(j)). Users per item: A 3, B 3, C 3, D 2,
 * E 2, F 1.
 *
 *   A-B 2/√9 = 0.6667   A-C 1/3 = 0.3333   A-E 1/√6 = 0.4082
 *   B-C 2/3  = 0.6667   B-D 1/√6 = 0.4082
 *   C-D 2/√6 = 0.8165   C-E 1/√6 = 0.4082  C-F 1/√3 = 0.5774
 *   D-E 1/√4 = 0.5      D-F 1/√2 = 0.7071
 *   E-F 1/√2 = 0.7071
 *   (A-D, A-F, B-E, B-F never co-occur: 11 pairs with sim > 0.)
 *
 * Popular before T by distinct users (ties by id), score = share of the 5 users:
 *   A 0.6, B 0.6, C 0.6, D 0.4, E 0.4, F 0.2.
 *
 * After T (never seen by the model; used as histories at `at` = 2024-02-02):
 *   u6: A weight 3, D weight 1   (2024-02-01T12:00)
 *   u7: Z                        (2024-02-01T12:00; Z is unknown to the model)
 *   u2: C at exactly `at`, E after it: both must be invisible at `at`.
 */
const T = new Date('2024-02-01T00:00:00Z');
const AT = new Date('2024-02-02T00:00:00Z');
const LN2 = Math.log(2);
const LN4 = Math.log(4);
const S6 = 1 / Math.sqrt(6);

const INTERACTIONS: { userId: string; itemId: string; at: Date; weight: number }[] = [
  ...['A', 'B', 'C'].map((itemId) => ({ userId: 'u1', itemId, at: new Date('2024-01-10T00:00:00Z'), weight: 1 })),
  ...['A', 'B'].map((itemId) => ({ userId: 'u2', itemId, at: new Date('2024-01-10T00:00:00Z'), weight: 1 })),
  ...['B', 'C', 'D'].map((itemId) => ({ userId: 'u3', itemId, at: new Date('2024-01-20T00:00:00Z'), weight: 1 })),
  ...['C', 'D', 'E', 'F'].map((itemId) => ({ userId: 'u4', itemId, at: new Date('2024-01-20T00:00:00Z'), weight: 1 })),
  ...['A', 'E'].map((itemId) => ({ userId: 'u5', itemId, at: new Date('2024-01-20T00:00:00Z'), weight: 1 })),
  { userId: 'u6', itemId: 'A', at: new Date('2024-02-01T12:00:00Z'), weight: 3 },
  { userId: 'u6', itemId: 'D', at: new Date('2024-02-01T12:00:00Z'), weight: 1 },
  { userId: 'u7', itemId: 'Z', at: new Date('2024-02-01T12:00:00Z'), weight: 1 },
  { userId: 'u2', itemId: 'C', at: AT, weight: 1 },
  { userId: 'u2', itemId: 'E', at: new Date('2024-02-03T00:00:00Z'), weight: 1 },
];

async function insertInteractions(db: TestDb): Promise<void> {
  await db.pool.query(
    `INSERT INTO interactions (user_id, item_id, at, weight)
     SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::real[])`,
    [INTERACTIONS.map((i) => i.userId), INTERACTIONS.map((i) => i.itemId), INTERACTIONS.map((i) => i.at), INTERACTIONS.map((i) => i.weight)],
  );
}

function neighboursOf(model: ItemCfModel, itemId: string): [string, number][] {
  const i = model.itemIndex.get(itemId) as number;
  const out: [string, number][] = [];
  for (let n = model.offsets[i] as number; n < (model.offsets[i + 1] as number); n++) {
    out.push([model.itemIds[model.neighbourIdx[n] as number] as string, model.neighbourSim[n] as number]);
  }
  return out;
}

function expectItems(actual: { itemId: string; score: number }[] | undefined, expected: [string, number][]): void {
  expect(actual?.map((item) => item.itemId)).toEqual(expected.map(([id]) => id));
  expected.forEach(([, score], n) => expect(actual?.[n]?.score).toBeCloseTo(score, 10));
}

describe('item-cf recommender', () => {
  let db: TestDb;
  let model: ItemCfModel;
  const open: Recommender[] = [];
  const track = <R extends Recommender>(recommender: R): R => {
    open.push(recommender);
    return recommender;
  };

  beforeEach(async () => {
    db = await createTestDb();
    await insertInteractions(db);
    model = await trainItemCf({ pool: db.pool, until: T, neighbours: 50, log: silentLog });
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((recommender) => recommender.close()));
    await db.drop();
  });

  it('learns the cosine similarities and popularity worked out by hand, from data before `until` only', () => {
    expect(model.stats).toMatchObject({ items: 6, users: 5, userItems: 14, pairs: 11 });
    // C's neighbours, best first.
    const c = neighboursOf(model, 'C');
    expect(c.map(([id]) => id)).toEqual(['D', 'B', 'F', 'E', 'A']);
    [2 * S6, 2 / 3, 1 / Math.sqrt(3), S6, 1 / 3].forEach((sim, n) => expect(c[n]?.[1]).toBeCloseTo(sim, 12));
    // A never co-occurs with D or F.
    expect(neighboursOf(model, 'A').map(([id]) => id)).toEqual(['B', 'E', 'C']);
    expectItems([...model.popular], [['A', 0.6], ['B', 0.6], ['C', 0.6], ['D', 0.4], ['E', 0.4], ['F', 0.2]]);
    expect(model.version).toMatch(/^item-cf-20240201T000000Z-[0-9a-f]{8}$/);
  });

  it('ranks unowned items by Σ ln(1+w)·sim, ties by item id, padding with popular items', async () => {
    const recommender = track(createItemCfRecommender({ pool: db.pool, log: silentLog, model, reloadIntervalMs: 0 }));
    const result = await recommender.recommend(['u2', 'u3', 'u6'], AT, 5);
    // u2 owns A, B.  C: ln2·(1/3 + 2/3) = 0.6931; D: ln2·sim(B,D) = 0.2830; E: ln2·sim(A,E) =
    // 0.2830, tied with D and after it by id; F has no link to A or B: popular padding, score 0.
    // C (at `at`) and E (after it) in u2's own log are future, so not owned.
    expect(result.get('u2')?.personalised).toBe(true);
    expectItems(result.get('u2')?.items, [['C', LN2], ['D', LN2 * S6], ['E', LN2 * S6], ['F', 0]]);
    // u3 owns B, C, D.  F: ln2·(1/√3 + 1/√2) = 0.8903; A: ln2·(2/3 + 1/3) = 0.6931;
    // E: ln2·(1/√6 + 1/2) = 0.6296.
    expectItems(result.get('u3')?.items, [['F', LN2 * (1 / Math.sqrt(3) + Math.SQRT1_2)], ['A', LN2], ['E', LN2 * (S6 + 0.5)]]);
    // u6 (history after T only) owns A with weight 3 (r = ln 4) and D with weight 1 (r = ln 2).
    // B: ln4·2/3 + ln2·1/√6 = 1.2072; C: ln4·1/3 + ln2·2/√6 = 1.0280;
    // E: ln4·1/√6 + ln2·1/2 = 0.9125; F: ln2·1/√2 = 0.4901.
    expectItems(result.get('u6')?.items, [
      ['B', LN4 * (2 / 3) + LN2 * S6],
      ['C', LN4 / 3 + LN2 * 2 * S6],
      ['E', LN4 * S6 + LN2 * 0.5],
      ['F', LN2 * Math.SQRT1_2],
    ]);
    expect(result.get('u6')?.personalised).toBe(true);
    // k cuts the list.
    expectItems((await recommender.recommend(['u2'], AT, 2)).get('u2')?.items, [['C', LN2], ['D', LN2 * S6]]);
  });

  it('gives users without usable history the popular items they do not have, unpersonalised', async () => {
    const recommender = track(createItemCfRecommender({ pool: db.pool, log: silentLog, model, reloadIntervalMs: 0 }));
    const result = await recommender.recommend(['nobody', 'u7', 'nobody'], AT, 4);
    expect([...result.keys()]).toEqual(['nobody', 'u7']);
    expect(result.get('nobody')).toEqual({ personalised: false, items: expect.any(Array) });
    expectItems(result.get('nobody')?.items, [['A', 0.6], ['B', 0.6], ['C', 0.6], ['D', 0.4]]);
    // u7 has history, but only an item the model does not know.
    expect(result.get('u7')?.personalised).toBe(false);
    expectItems(result.get('u7')?.items, [['A', 0.6], ['B', 0.6], ['C', 0.6], ['D', 0.4]]);
    expectItems(await recommender.popular(AT, 2), [['A', 0.6], ['B', 0.6]]);
    expect(recommender.modelVersion()).toBe(model.version);
  });

  it('sees interactions once `at` has passed them: C is owned by u2 just after it', async () => {
    const recommender = track(createItemCfRecommender({ pool: db.pool, log: silentLog, model, reloadIntervalMs: 0 }));
    const later = new Date(AT.getTime() + 1);
    // Owned now: A, B, C.  D: ln2·(1/√6 + 2/√6) = 0.8489; E: ln2·(1/√6 + 1/√6) = 0.5660;
    // F: ln2·1/√3 = 0.4002.
    expectItems((await recommender.recommend(['u2'], later, 3)).get('u2')?.items, [
      ['D', LN2 * 3 * S6],
      ['E', LN2 * 2 * S6],
      ['F', LN2 / Math.sqrt(3)],
    ]);
  });

  it('never answers from a model trained after `at`: popularity before `at` instead', async () => {
    const recommender = track(createItemCfRecommender({ pool: db.pool, log: silentLog, model, reloadIntervalMs: 0 }));
    const early = new Date('2024-01-15T00:00:00Z');
    // Before Jan 15 only u1 (A B C) and u2 (A B) exist: A 2/2, B 2/2, C 1/2.
    const result = await recommender.recommend(['nobody', 'u2'], early, 5);
    expectItems(result.get('nobody')?.items, [['A', 1], ['B', 1], ['C', 0.5]]);
    expect(result.get('u2')).toEqual({ personalised: false, items: [{ itemId: 'C', score: 0.5 }] });
    expectItems(await recommender.popular(early, 5), [['A', 1], ['B', 1], ['C', 0.5]]);
  });

  it('serves popularity from the interactions table while no model is trained', async () => {
    const recommender = track(createItemCfRecommender({ pool: db.pool, log: silentLog, reloadIntervalMs: 0 }));
    expect(recommender.modelVersion()).toBe('popularity-only');
    // Users before AT: u1..u7. A 4/7 (u1 u2 u5 u6), B C D 3/7, E 2/7, F Z 1/7.
    const result = await recommender.recommend(['u2'], AT, 3);
    expect(result.get('u2')?.personalised).toBe(false);
    expectItems(result.get('u2')?.items, [['C', 3 / 7], ['D', 3 / 7], ['E', 2 / 7]]);
  });

  it('saves and loads a model exactly; the same data and parameters give the same version', async () => {
    expect(await loadLatestModel(db.pool)).toBeUndefined();
    await saveModel(db.pool, model);
    const loaded = await loadLatestModel(db.pool);
    expect(loaded?.version).toBe(model.version);
    expect(loaded?.dataUntil).toEqual(T);
    expect(loaded?.itemIds).toEqual(model.itemIds);
    expect(loaded?.neighbourIdx).toEqual(model.neighbourIdx);
    expect(loaded?.neighbourSim).toEqual(model.neighbourSim);
    expect(loaded?.popular).toEqual(model.popular);
    const row = await db.pool.query('SELECT kind, params, stats FROM recommender_models');
    expect(row.rows).toEqual([
      { kind: 'item-cf', params: { neighbours: 50, popularCount: 1000, weighting: 'log1p' }, stats: expect.objectContaining({ items: 6, users: 5, pairs: 11 }) },
    ]);
    // Retraining the same data, from SQL or in memory (future rows filtered by `at`), is the same model.
    expect((await trainItemCf({ pool: db.pool, until: T, log: silentLog })).version).toBe(model.version);
    const inMemory = buildItemCfModel(INTERACTIONS, { until: T });
    expect(inMemory.version).toBe(model.version);
    expect(buildItemCfModel(INTERACTIONS, { until: T, neighbours: 2 }).version).not.toBe(model.version);
    await saveModel(db.pool, model);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM recommender_models')).rows[0].n).toBe(1);
  });

  it('picks up a model saved by another process, and keeps only neighbours asked for', async () => {
    const recommender = track(createItemCfRecommender({ pool: db.pool, log: silentLog, reloadIntervalMs: 20 }));
    expect(recommender.modelVersion()).toBe('popularity-only');
    const small = await trainItemCf({ pool: db.pool, until: T, neighbours: 1, log: silentLog });
    expect(neighboursOf(small, 'C')).toEqual([['D', expect.closeTo(2 * S6, 12)]]);
    await saveModel(db.pool, small);
    await vi.waitFor(() => expect(recommender.modelVersion()).toBe(small.version), { timeout: 2_000, interval: 10 });
    // u3 owns B C D; one neighbour each: B→A (2/3, tied with C, A first by id), C→D and D→C
    // (0.8165, both owned). Only A scores, ln2·2/3; then the most popular unowned item, E, at 0.
    expectItems((await recommender.recommend(['u3'], AT, 2)).get('u3')?.items, [['A', (LN2 * 2) / 3], ['E', 0]]);
  });

  it('createRecommender serves the newest stored model, or popularity when there is none', async () => {
    const config = { recommender: 'item-cf' as const, recommenderUrl: undefined, recommenderTimeoutMs: 1_000 };
    const before = track(await createRecommender({ config, pool: db.pool, log: silentLog }));
    expect(before.kind).toBe('item-cf');
    expect(before.modelVersion()).toBe('popularity-only');
    await saveModel(db.pool, model);
    const after = track(await createRecommender({ config, pool: db.pool, log: silentLog }));
    expect(after.modelVersion()).toBe(model.version);
    const http = track(
      await createRecommender({ config: { recommender: 'http', recommenderUrl: 'http://127.0.0.1:9', recommenderTimeoutMs: 100 }, pool: db.pool, log: silentLog }),
    );
    expect(http.kind).toBe('http');
  });

  it('prewarm train-recommender trains, saves and prints a summary; bad flags exit 2', async () => {
    const run = promisify(execFile);
    const env = { ...process.env, DATABASE_URL: TEST_DATABASE_URL, PREWARM_DB_SCHEMA: db.schema, PREWARM_LOG_LEVEL: 'silent' };
    const [ok, bad] = await Promise.all([
      run('node', ['src/cli/bin.mjs', 'train-recommender', '--until', '2024-02-01', '--neighbours', '50'], { env }),
      run('node', ['src/cli/bin.mjs', 'train-recommender', '--until', '2024-02-01T10:00'], { env }).catch((error: { code: number; stderr: string }) => error),
    ]);
    expect(ok.stdout).toMatch(new RegExp(`^trained ${model.version}: 6 items, 5 users, 11 pairs, \\d+ ms\n$`));
    expect((await loadLatestModel(db.pool))?.version).toBe(model.version);
    expect(bad).toMatchObject({ code: 2, stderr: expect.stringContaining('PREWARM_ERR_BAD_INPUT: --until') });
  });
});

describe('--until parsing', () => {
  it('accepts dates and zoned date-times, rejects the rest', () => {
    expect(parseInstant('2013-12-01', '--until')).toEqual(new Date('2013-12-01T00:00:00Z'));
    expect(parseInstant('2013-12-01T06:30:00+02:00', '--until')).toEqual(new Date('2013-12-01T04:30:00Z'));
    for (const bad of ['2013-12-01T06:30', '2013-13-01', '2013-02-30', 'yesterday', '']) {
      expect(() => parseInstant(bad, '--until')).toThrow(expect.objectContaining({ code: 'PREWARM_ERR_BAD_INPUT' }));
    }
  });
});
