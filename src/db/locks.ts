/**
 * Every Postgres advisory lock prewarm takes, in one place so that no two uses share a key by
 * accident. The one-key (bigint) and two-key (int4, int4) forms are separate key spaces in
 * Postgres, so a bigint here can never collide with a namespace pair.
 */
export const ADVISORY_LOCKS = {
  /** Session lock held while applying migrations: every process migrating a database waits here (src/db/migrate.ts). */
  migration: 7_265_108_331,
  /** Session try-lock: one scheduler replica at a time retrains the propensity model (src/propensity/retrain-schedule.ts). */
  propensityRetrain: 7_265_108_332,
  /** Session try-lock: one process at a time maintains partitions and rollups (src/maintenance/partitions.ts). */
  partitionMaintenance: 7_265_108_333,
  /**
   * Transaction lock per activity-state grid, two-key form `(hashtext(namespace), hashtext(grid))`:
   * serialises writers of one grid (src/propensity/state-store.ts).
   */
  propensityStateNamespace: 'prewarm-propensity-state',
} as const;
