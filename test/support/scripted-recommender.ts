import type { Recommender, ScoredItem, UserRecommendations } from '../../src/recommender/types.ts';

/**
 * A deterministic Recommender for serving tests: users in `histories` get their listed items,
 * others are unknown. Delay and failure are controllable; calls are counted.
 */
export function createScriptedRecommender(histories: Record<string, string[]>, popularItems: string[] = ['p1', 'p2', 'p3']) {
  const state = { delayMs: 0, fail: false, calls: 0, usersAsked: [] as string[] };
  const recommender: Recommender = {
    kind: 'scripted',
    modelVersion: () => 'scripted-v1',
    async recommend(userIds, _at, k) {
      state.calls++;
      state.usersAsked.push(...userIds);
      if (state.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, state.delayMs));
      if (state.fail) throw new Error('model exploded');
      const result = new Map<string, UserRecommendations>();
      for (const userId of userIds) {
        const items = histories[userId];
        result.set(
          userId,
          items
            ? { personalised: true, items: items.slice(0, k).map((itemId, i) => ({ itemId, score: 1 - i / 100 })) }
            : { personalised: false, items: popular(k) },
        );
      }
      return result;
    },
    async popular(_at, k) {
      return popular(k);
    },
    async close() {},
  };
  function popular(k: number): ScoredItem[] {
    return popularItems.slice(0, k).map((itemId, i) => ({ itemId, score: popularItems.length - i }));
  }
  return { recommender, state };
}
