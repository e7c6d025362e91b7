import type { Sql } from '../db/pool.ts';

/**
 * Every statement of timed precompute (timing.ts): the windows' timing settings, the marks on a
 * timed run, the cut of its chunks by compute time, and the dispatch of the chunks that are due.
 * Instants are passed in from a Clock, never taken from now(), so a replay records virtual time.
 */

export interface WindowTimingRow {
  name: string;
  timing: 'midnight' | 'predicted';
  timing_slot_ms: number;
  timing_risk: number;
}

export interface RunGateRow {
  timed: boolean;
  prepared: boolean;
  /** The run's end and horizon, from which a timed run's sets get their expiry (timedExpiry). */
  expires_at: Date;
  horizon_ms: number | string;
  /** Timed runs only: the chunks (among those asked for) a dispatcher has released. */
  released: number[] | null;
}

export interface DueChunkRow {
  run_id: number;
  chunk_no: number;
}

export interface DispatchRunRow {
  id: number;
  window_name: string;
  scheduled_for: Date;
  expires_at: Date;
  shards: number;
  priority: number;
}

export const windowTimingSql = {
  of(names: readonly string[]): Sql {
    return { text: `SELECT name, timing, timing_slot_ms, timing_risk FROM windows WHERE name = ANY($1::text[])`, values: [names] };
  },
  set(name: string, timing: string, slotMs: number, risk: number): Sql {
    return { text: `UPDATE windows SET timing = $2, timing_slot_ms = $3, timing_risk = $4 WHERE name = $1`, values: [name, timing, slotMs, risk] };
  },
};

export const timedRunSql = {
  /** At planning, before any shard selects: from here on no chunk is enqueued until dispatched. */
  mark(runId: number, slotMs: number, risk: number): Sql {
    return {
      text: `UPDATE batch_runs SET timing = 'predicted', timing_slot_ms = $2, timing_risk = $3 WHERE id = $1 AND timing IS NULL`,
      values: [runId, slotMs, risk],
    };
  },
  /** The run's timing, locked for the cut (no row: not timed, or already cut). */
  lockUncut(runId: number): Sql {
    return {
      text: `SELECT scheduled_for, horizon_ms, timing_slot_ms, timing_risk FROM batch_runs WHERE id = $1 AND timing IS NOT NULL AND timed_at IS NULL FOR UPDATE`,
      values: [runId],
    };
  },
  chunkCount(runId: number): Sql {
    return { text: `SELECT count(*)::int AS n FROM batch_chunks WHERE run_id = $1`, values: [runId] };
  },
  /** Whether chunks of a run may be enqueued: an untimed run's all, a timed run's once released. */
  gate(runId: number, chunkNos: readonly number[] | null): Sql {
    return {
      text: `SELECT r.timing IS NOT NULL AS timed, r.timed_at IS NOT NULL AS prepared, r.expires_at, r.horizon_ms,
                    CASE WHEN r.timing IS NULL THEN NULL ELSE
                      coalesce((SELECT array_agg(c.chunk_no ORDER BY c.chunk_no) FROM batch_chunks c
                                 WHERE c.run_id = r.id AND c.dispatched_at IS NOT NULL
                                   AND ($2::int[] IS NULL OR c.chunk_no = ANY($2::int[]))), '{}') END AS released
               FROM batch_runs r WHERE r.id = $1`,
      values: [runId, chunkNos],
    };
  },
  /** Chunks not yet released: the sweep leaves them alone (no job is expected for them yet). */
  held(runId: number): Sql {
    return { text: `SELECT chunk_no FROM batch_chunks WHERE run_id = $1 AND due_at IS NOT NULL AND dispatched_at IS NULL`, values: [runId] };
  },
};

/** The cut: selected and holdout users staged with their compute time, then chunked by it. */
export const cutSql = {
  /** Every user the run precomputes (chunk_no set by the select phase), a page at a time. */
  usersPage(runId: number, afterUserId: string | null, limit: number): Sql {
    return {
      text: `SELECT user_id FROM predictions WHERE run_id = $1 AND chunk_no IS NOT NULL AND ($2::text IS NULL OR user_id > $2)
              ORDER BY user_id LIMIT $3`,
      values: [runId, afterUserId, limit],
    };
  },
  createStage: `CREATE TEMP TABLE timed_users (user_id text PRIMARY KEY, due_ms bigint NOT NULL) ON COMMIT DROP`,
  stage(userIds: readonly string[], dueMs: readonly number[]): Sql {
    return { text: `INSERT INTO timed_users (user_id, due_ms) SELECT * FROM unnest($1::text[], $2::bigint[])`, values: [userIds, dueMs] };
  },
  /**
   * Renumbers the run's chunks: by compute time, then as the select ranked them (p, then user id),
   * `chunkSize` users a chunk, so a chunk's users share one compute time.
   */
  renumber(runId: number, chunkSize: number): Sql {
    return {
      text: `WITH ranked AS (
               SELECT p.user_id, t.due_ms,
                      (row_number() OVER (PARTITION BY t.due_ms ORDER BY p.p DESC, p.user_id COLLATE "C") - 1) / $2::int AS part
                 FROM predictions p JOIN timed_users t ON t.user_id = p.user_id
                WHERE p.run_id = $1 AND p.chunk_no IS NOT NULL
             ), numbered AS (
               SELECT user_id, (dense_rank() OVER (ORDER BY due_ms, part) - 1)::int AS chunk_no FROM ranked
             )
             UPDATE predictions p SET chunk_no = n.chunk_no FROM numbered n WHERE p.run_id = $1 AND p.user_id = n.user_id`,
      values: [runId, chunkSize],
    };
  },
  dropChunks(runId: number): Sql {
    return { text: `DELETE FROM batch_chunks WHERE run_id = $1`, values: [runId] };
  },
  insertChunks(runId: number): Sql {
    return {
      text: `INSERT INTO batch_chunks (run_id, chunk_no, users, due_at)
             SELECT $1::bigint, p.chunk_no, count(*)::int, to_timestamp(min(t.due_ms)::float8 / 1000)
               FROM predictions p JOIN timed_users t ON t.user_id = p.user_id
              WHERE p.run_id = $1 AND p.chunk_no IS NOT NULL
              GROUP BY p.chunk_no`,
      values: [runId],
    };
  },
  markCut(runId: number, at: Date): Sql {
    return { text: `UPDATE batch_runs SET timed_at = $2 WHERE id = $1`, values: [runId, at.toISOString()] };
  },
  /** Logins by UTC hour over a period: the population's habit, the prior of every user's. */
  hourCounts(from: Date, to: Date): Sql {
    return {
      text: `SELECT extract(hour FROM at AT TIME ZONE 'UTC')::int AS hour, count(*)::float8 AS n FROM logins WHERE at >= $1 AND at < $2 GROUP BY 1`,
      values: [from.toISOString(), to.toISOString()],
    };
  },
  /** The grid whose states are the most current (any grid's hour histogram is the same). */
  freshestGrid: `SELECT window_ms, phase_ms FROM propensity_state_grids ORDER BY observed_through DESC NULLS LAST, grid LIMIT 1`,
  /**
   * Whether the run follows a timed run of its window whose sets chain into it: one scheduled in
   * (from, before) and cut (its users placed). Then every user is placed for young serves
   * (timing.ts); a window's first timed run places them against early logins.
   */
  followsTimedRun(runId: number, from: Date, before: Date): Sql {
    return {
      text: `SELECT EXISTS (SELECT 1 FROM batch_runs p JOIN batch_runs r ON r.window_name = p.window_name
                              WHERE r.id = $1 AND p.id <> r.id AND p.timed_at IS NOT NULL
                                AND p.scheduled_for > $2 AND p.scheduled_for < $3) AS follows`,
      values: [runId, from.toISOString(), before.toISOString()],
    };
  },
  states(grid: string, userIds: readonly string[]): Sql {
    return { text: `SELECT user_id, state FROM propensity_state WHERE grid = $1 AND user_id = ANY($2::text[])`, values: [grid, userIds] };
  },
};

export const dispatchSql = {
  /**
   * Releases the chunks of planned, cut runs that are due by `now` (of one run, or all): the
   * claim is the UPDATE, so two replicas release a chunk once. A dispatcher that dies after this
   * commit, before enqueueing, leaves released chunks without a job: the sweep enqueues them.
   */
  release(now: Date, runId: number | null): Sql {
    return {
      text: `UPDATE batch_chunks c SET dispatched_at = $1
               FROM batch_runs r
              WHERE c.run_id = r.id AND r.timed_at IS NOT NULL AND r.planned_at IS NOT NULL AND r.status IN ('planning', 'running')
                AND c.due_at <= $1 AND c.dispatched_at IS NULL AND c.done_at IS NULL
                AND ($2::bigint IS NULL OR r.id = $2)
             RETURNING c.run_id, c.chunk_no`,
      values: [now.toISOString(), runId],
    };
  },
  runs(runIds: readonly number[]): Sql {
    return {
      text: `SELECT r.id, r.window_name, r.scheduled_for, r.expires_at, r.shards, coalesce(w.priority, 0) AS priority
               FROM batch_runs r LEFT JOIN windows w ON w.name = r.window_name WHERE r.id = ANY($1::bigint[])`,
      values: [runIds],
    };
  },
  /** Released chunks not done yet, of open runs: what a replay waits for before its logins. */
  pending(now: Date): Sql {
    return {
      text: `SELECT count(*)::int AS n FROM batch_chunks c JOIN batch_runs r ON r.id = c.run_id
              WHERE r.status IN ('planning', 'running') AND c.done_at IS NULL AND (c.due_at IS NULL OR c.due_at <= $1)`,
      values: [now.toISOString()],
    };
  },
};
