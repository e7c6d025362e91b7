import { applyInsertedInteractions, type InteractionInput } from '../activity/user-activity.ts';
import { createBatchBuffer, type BatchBufferOptions } from '../db/batch-buffer.ts';
import type { Pool } from '../db/pool.ts';
import type { Freshness } from '../freshness/freshness.ts';
import type { Logger } from '../log.ts';

export type { InteractionInput } from '../activity/user-activity.ts';

export interface InteractionRecorderOptions extends Pick<BatchBufferOptions<InteractionInput>, 'flushIntervalMs' | 'maxBatch' | 'maxPending'> {
  pool: Pool;
  log: Logger;
  /**
   * Told every acknowledged interaction's time, so that a login can tell whether its set is
   * behind (src/freshness/freshness.ts). Default: none.
   */
  freshness?: Pick<Freshness, 'record'>;
}

export interface InteractionRecorder {
  /** Buffers a request's interactions, all or none: false when the buffer cannot take them all. */
  offer(rows: readonly InteractionInput[]): boolean;
  /**
   * True while some of this user's acknowledged interactions are not in Postgres yet: a
   * computation for the user should `flush()` first, so the recommender sees everything the
   * user did up to the instant it computes.
   */
  hasPending(userId: string): boolean;
  flush(): Promise<void>;
  pending(): number;
  isFull(): boolean;
  close(deadlineMs?: number): Promise<void>;
}

/**
 * The interactions API's write path: acknowledged means buffered, written in batches (one
 * statement per batch, which also makes new users known — src/activity/user-activity.ts),
 * bounded, flushed at shutdown; the same promise as the logins the event recorder keeps.
 */
export function createInteractionRecorder(options: InteractionRecorderOptions): InteractionRecorder {
  const { pool, log } = options;
  const unwrittenByUser = new Map<string, number>();
  const buffer = createBatchBuffer<InteractionInput>({
    name: 'interactions',
    log,
    flushIntervalMs: options.flushIntervalMs,
    maxBatch: options.maxBatch,
    maxPending: options.maxPending,
    async write(batch) {
      await applyInsertedInteractions(pool, { rows: batch });
      for (const row of batch) {
        const left = (unwrittenByUser.get(row.userId) ?? 1) - 1;
        if (left > 0) unwrittenByUser.set(row.userId, left);
        else unwrittenByUser.delete(row.userId);
      }
    },
  });
  return {
    offer(rows) {
      if (!buffer.offer(rows)) return false;
      for (const row of rows) unwrittenByUser.set(row.userId, (unwrittenByUser.get(row.userId) ?? 0) + 1);
      // In Redis at once (it never rejects): the next login of the user knows its set is behind,
      // before the batch reaches Postgres.
      void options.freshness?.record(rows);
      return true;
    },
    hasPending: (userId) => unwrittenByUser.has(userId),
    flush: buffer.flush,
    pending: buffer.pending,
    isFull: buffer.isFull,
    close: buffer.close,
  };
}
