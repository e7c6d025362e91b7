/** One recommended item with the recommender's score (higher is better). */
export interface ScoredItem {
  itemId: string;
  score: number;
}

export interface UserRecommendations {
  items: ScoredItem[];
  /**
   * False when the user had no usable history before `at`: the items are then the popular
   * ones, and the serving path answers `fallback` with reason `unknown_user`.
   */
  personalised: boolean;
}

/**
 * What prewarm needs from a recommender. Implementations must only use data from before `at`
 * (a replay runs them at past instants), and should be efficient for many users at once: batch
 * workers call it with a whole chunk.
 */
export interface Recommender {
  /** `item-cf`, `http`, … */
  readonly kind: string;
  /** Version of the model that the next call will use; stored with every computed set. */
  modelVersion(): string;
  /** Top `k` items for each user, best first; every requested user id is in the result. */
  recommend(userIds: readonly string[], at: Date, k: number): Promise<Map<string, UserRecommendations>>;
  /** The most popular items before `at`: the fallback answer. Must be cheap (cached). */
  popular(at: Date, k: number): Promise<ScoredItem[]>;
  /** Releases timers or connections; idempotent. */
  close(): Promise<void>;
}
