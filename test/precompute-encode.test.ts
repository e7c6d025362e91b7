import { afterEach, describe, expect, it } from 'vitest';
import type { Recommender, ScoredItem, UserRecommendations } from '../src/recommender/types.ts';
import { batchSetId, storedItems } from '../src/sets/set.ts';
import { createPlannerHarness, recencyPopulation, type PlannerHarness } from './fixtures/precompute-harness.ts';

const START = Date.parse('2024-03-01T00:00:00Z');

/** Users get sets of different lengths (0 to 12 items), so a short set follows a long one in a chunk. */
function itemsOf(userId: string): ScoredItem[] {
  const n = Number(userId.slice(1));
  const count = (n * 7) % 13;
  return Array.from({ length: count }, (_, i) => ({ itemId: `i-${n}-${i}${n % 3 === 0 ? '-é' : ''}`, score: 1 / (n + i + 1) + i * 1e-9 }));
}

const recommender: Recommender = {
  kind: 'test',
  modelVersion: () => 'encode-v1',
  async recommend(userIds) {
    return new Map(userIds.map((userId): [string, UserRecommendations] => [userId, { personalised: true, items: itemsOf(userId) }]));
  },
  async popular() {
    return [];
  },
  async close() {},
};

describe('precompute worker: encoding a chunk', () => {
  let h: PlannerHarness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('writes every user its own items, in Postgres and in the cache, whatever the lengths of the sets before it', async () => {
    h = await createPlannerHarness({ start: START });
    await h.seedLogins(recencyPopulation(START, 90));
    const { window } = await h.windows.set('nightly', { cron: '0 0 * * *', policy: 'budget:90', chunkSize: 30, holdoutRate: 0 });
    const run = (await h.planner.planRun(window, new Date(START)))!.run;
    h.clock.set(START + 60_000);
    h.startWorker(recommender);
    expect(await h.waitForRun(run.id)).toMatchObject({ status: 'completed', precomputed: 90, failed: 0 });

    const rows = await h.pool.query<{ id: string; user_id: string; item_ids: string[]; scores: number[] }>('SELECT id, user_id, item_ids, scores FROM recommendations WHERE run_id = $1', [run.id]);
    expect(rows.rowCount).toBe(90);
    for (const row of rows.rows) {
      const expected = storedItems(itemsOf(row.user_id));
      expect(row).toEqual({ id: batchSetId(run.id, row.user_id), user_id: row.user_id, item_ids: expected.itemIds, scores: expected.scores });
      const cached = await h.cache.get(row.user_id);
      expect(cached && { id: cached.id, itemIds: [...cached.itemIds], scores: [...cached.scores] }).toEqual({ id: row.id, ...expected });
    }
  });
});
