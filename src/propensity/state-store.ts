import { createInterface } from 'node:readline';
import { to as copyTo } from 'pg-copy-streams';
import { ADVISORY_LOCKS } from '../db/locks.ts';
import type { Pool, Queryable, Sql } from '../db/pool.ts';
import { withTransaction } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { LoginLogBuilder, type LoginLog } from './login-log.ts';
import { sampleLoginStream, type TrainingPeriod, type TrainingSample } from './training-sample.ts';
import { hasLogins, observeLogin, resetState, S, stateFromBytes, STATE_SIZE, stateToBytes, type StateGrid } from './state.ts';

/**
 * Persisted activity states (`propensity_state`), one set per window grid, so that the planner
 * scores every user from one scan of a table instead of re-reading the login history.
 *
 * How a grid stays current:
 * - `applyLoginsToState(client, rows)` folds newly recorded logins into every grid (call it in
 *   the transaction that inserted them);
 * - before each scoring, `syncGrid` catches up with `logins` rows newer than the grid's
 *   `observed_through` (minus a few minutes, for writers that flush late), so logins recorded by
 *   a path that does not call applyLoginsToState are folded in too;
 * - `rebuildGrid` recomputes a grid from the whole `logins` table (a new grid, `train-propensity`).
 * Both incremental paths fold a login only if it is later than the user's latest folded login:
 * that makes them idempotent (a login is never counted twice), at the price of ignoring a login
 * that arrives after a later one of the same user was folded — a rebuild restores it.
 */

/** Catch-up scans start this long before the latest folded login, for late flushes. */
export const CATCH_UP_OVERLAP_MS = 5 * 60_000;
const PAGE = 20_000;

export function gridKey(grid: StateGrid): string {
  return `${grid.windowMs}@${grid.phaseMs ?? 0}`;
}

/** The grid on which a window starting at `windowStartMs` with length `windowMs` falls. */
export function gridFor(windowMs: number, windowStartMs: number): Required<StateGrid> {
  return { windowMs, phaseMs: ((windowStartMs % windowMs) + windowMs) % windowMs };
}

interface GridRow {
  grid: string;
  window_ms: number;
  phase_ms: number;
  state_size: number;
  observed_through: Date | null;
}

/** The SQL of the persisted states and of the login scans that feed them, parameterised. */
export const stateSql = {
  grids(): Sql {
    return { text: 'SELECT grid, window_ms, phase_ms, state_size, observed_through FROM propensity_state_grids ORDER BY grid' };
  },
  grid(key: string): Sql {
    return { text: 'SELECT grid, window_ms, phase_ms, state_size, observed_through FROM propensity_state_grids WHERE grid = $1', values: [key] };
  },
  registerGrid(key: string, grid: StateGrid): Sql {
    return {
      text: `INSERT INTO propensity_state_grids (grid, window_ms, phase_ms, state_size) VALUES ($1, $2, $3, $4)
             ON CONFLICT (grid) DO NOTHING`,
      values: [key, grid.windowMs, grid.phaseMs ?? 0, STATE_SIZE],
    };
  },
  /** Serialises writers of one grid for the rest of the transaction. */
  lockGrid(key: string): Sql {
    return { text: 'SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))', values: [ADVISORY_LOCKS.propensityStateNamespace, key] };
  },
  /** After a catch-up: the grid has seen every login up to `observedThrough`. */
  markCaughtUp(key: string, observedThrough: Date): Sql {
    return {
      text: `UPDATE propensity_state_grids
                SET observed_through = greatest(coalesce(observed_through, $2), $2), updated_at = now()
              WHERE grid = $1`,
      values: [key, observedThrough],
    };
  },
  /** After a rebuild from the whole table. */
  markRebuilt(key: string, observedThrough: Date | null): Sql {
    return {
      text: `UPDATE propensity_state_grids
                SET observed_through = $2, state_size = $3, built_at = now(), updated_at = now()
              WHERE grid = $1`,
      values: [key, observedThrough, STATE_SIZE],
    };
  },
  clearGrid(key: string): Sql {
    return { text: 'DELETE FROM propensity_state WHERE grid = $1', values: [key] };
  },
  statesOf(key: string, userIds: readonly string[]): Sql {
    return { text: 'SELECT user_id, state FROM propensity_state WHERE grid = $1 AND user_id = ANY($2::text[])', values: [key, userIds] };
  },
  upsertStates(key: string, userIds: readonly string[], first: Date[], last: Date[], states: Buffer[]): Sql {
    return {
      text: `INSERT INTO propensity_state (grid, user_id, first_login_at, last_login_at, state)
             SELECT $1, u, f, l, s FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[], $5::bytea[]) AS t (u, f, l, s)
             ORDER BY u
             ON CONFLICT (grid, user_id) DO UPDATE
               SET first_login_at = excluded.first_login_at, last_login_at = excluded.last_login_at, state = excluded.state`,
      values: [key, userIds, first, last, states],
    };
  },
  /** One page of a grid's states, by user id (keyset pagination). */
  statePage(key: string, afterUserId: string | null, limit: number): Sql {
    return {
      text: `SELECT user_id, state FROM propensity_state
              WHERE grid = $1 AND ($2::text IS NULL OR user_id > $2)
              ORDER BY user_id LIMIT $3`,
      values: [key, afterUserId, limit],
    };
  },
  /** Logins after an instant, in time order, one page (keyset on (at, user_id)). */
  loginsAfter(afterMs: number, afterUserId: string | null, limit: number): Sql {
    return {
      text: `SELECT user_id, (extract(epoch FROM at) * 1000)::float8 AS at_ms FROM logins
              WHERE at > to_timestamp($1::float8 / 1000) OR (at = to_timestamp($1::float8 / 1000) AND user_id > $2)
              ORDER BY at, user_id LIMIT $3`,
      values: [afterMs, afterUserId ?? '', limit],
    };
  },
  /** Every login of some users before an instant, in time order. */
  loginsOfUsersBefore(userIds: readonly string[], beforeMs: number): Sql {
    return {
      text: `SELECT user_id, (extract(epoch FROM at) * 1000)::float8 AS at_ms FROM logins
              WHERE user_id = ANY($1::text[]) AND at < to_timestamp($2::float8 / 1000)
              ORDER BY at, user_id`,
      values: [userIds, beforeMs],
    };
  },
  /** Every login, in time order, for COPY (which takes no parameters). */
  copyAllLogins(): string {
    return `COPY (SELECT user_id, (extract(epoch FROM at) * 1000)::float8 FROM logins ORDER BY at, user_id) TO STDOUT`;
  },
  /** First and latest login before an instant (two ends of the `at` index). */
  loginExtent(beforeMs: number): Sql {
    return {
      text: `SELECT (extract(epoch FROM min(at)) * 1000)::float8 AS first_ms, (extract(epoch FROM max(at)) * 1000)::float8 AS last_ms
               FROM logins WHERE at < to_timestamp($1::float8 / 1000)`,
      values: [beforeMs],
    };
  },
  /**
   * Every login before an instant, by user then time, as binary COPY (user_id, at): the order of
   * the primary key, so Postgres streams it from the index without sorting, and the reader sees
   * each user's logins together. COPY takes no parameters: the instant is inlined from a Date.
   */
  copyLoginsByUser(beforeMs: number): string {
    const before = new Date(beforeMs).toISOString();
    return `COPY (SELECT user_id, at FROM logins WHERE at < '${before}'::timestamptz ORDER BY user_id, at) TO STDOUT (FORMAT binary)`;
  },
};

/** First and latest login (epoch ms) of the `logins` table before `beforeMs`; undefined when none. */
export async function readLoginExtentFromDb(db: Queryable, options: { beforeMs: number }): Promise<{ firstMs: number; lastMs: number } | undefined> {
  const sql = stateSql.loginExtent(options.beforeMs);
  const result = await db.query<{ first_ms: number | null; last_ms: number | null }>(sql.text, sql.values);
  const row = result.rows[0];
  if (!row || row.first_ms === null || row.last_ms === null) return undefined;
  return { firstMs: Math.round(toMs(row.first_ms)), lastMs: Math.round(toMs(row.last_ms)) };
}

/**
 * The training sample of the `logins` table for a training period (training-sample.ts): one
 * binary COPY of the logins before the period's end, by user, from which everybody's activity is
 * counted and only the sampled users' logins are kept. Memory is bounded by the sample, not by
 * the table.
 */
export async function readTrainingSampleFromDb(pool: Pool, options: { grid: StateGrid; period: TrainingPeriod; maxRows: number }): Promise<TrainingSample> {
  const client = await pool.connect();
  let failed: Error | undefined;
  try {
    const stream = client.query(copyTo(stateSql.copyLoginsByUser(options.period.toMs)));
    return await sampleLoginStream(stream, options.grid, options.period, options.maxRows);
  } catch (error) {
    // A COPY abandoned half-way leaves the connection mid-protocol: do not return it to the pool.
    failed = error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    client.release(failed);
  }
}

/**
 * Streams the whole `logins` table, in time order, into an in-memory log (COPY: one round trip,
 * no per-row query cost). Logins at or after `beforeMs` are left out.
 */
export async function readLoginLogFromDb(pool: Pool, options: { beforeMs?: number } = {}): Promise<LoginLog> {
  const client = await pool.connect();
  const builder = new LoginLogBuilder();
  const before = options.beforeMs ?? Number.POSITIVE_INFINITY;
  try {
    const stream = client.query(copyTo(stateSql.copyAllLogins()));
    const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
    for await (const line of lines) {
      const tab = line.lastIndexOf('\t');
      if (tab < 0) continue;
      const atMs = Math.round(Number(line.slice(tab + 1)));
      if (atMs >= before) continue;
      builder.add(unescapeCopyText(line.slice(0, tab)), atMs);
    }
  } finally {
    client.release();
  }
  return builder.build();
}

/** COPY's text format escapes backslashes and control characters (which ids never contain). */
function unescapeCopyText(text: string): string {
  if (!text.includes('\\')) return text;
  const map: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };
  return text.replace(/\\(.)/g, (_match, char: string) => map[char] ?? char);
}

/** States of many users in one typed array: user i at i·STATE_SIZE. */
export interface StateTable {
  userIds: string[];
  states: Float64Array;
}

function toMs(value: unknown): number {
  return typeof value === 'number' ? value : Number(value);
}

/** Writes the states of `userIndexes` (rows of `table`) to the grid. */
async function upsertRows(db: Queryable, key: string, table: StateTable, userIndexes: readonly number[]): Promise<void> {
  for (let from = 0; from < userIndexes.length; from += PAGE) {
    const slice = userIndexes.slice(from, from + PAGE).filter((i) => hasLogins(table.states, i * STATE_SIZE));
    if (slice.length === 0) continue;
    const ids = slice.map((i) => table.userIds[i] as string);
    const first = slice.map((i) => new Date(table.states[i * STATE_SIZE + S.FIRST] as number));
    const last = slice.map((i) => new Date(table.states[i * STATE_SIZE + S.LAST] as number));
    const bytes = slice.map((i) => stateToBytes(table.states, i * STATE_SIZE));
    const sql = stateSql.upsertStates(key, ids, first, last, bytes);
    await db.query(sql.text, sql.values);
  }
}

/**
 * Folds logins into a grid's stored states: loads the states of their users, folds each login
 * later than the user's latest folded one, writes the changed states back. Returns how many
 * logins were folded.
 */
async function foldIntoGrid(db: Queryable, key: string, grid: StateGrid, logins: readonly { userId: string; atMs: number }[]): Promise<number> {
  if (logins.length === 0) return 0;
  const sorted = [...logins].sort((a, b) => a.atMs - b.atMs);
  const index = new Map<string, number>();
  const userIds: string[] = [];
  for (const login of sorted) {
    if (!index.has(login.userId)) {
      index.set(login.userId, userIds.length);
      userIds.push(login.userId);
    }
  }
  const states = new Float64Array(userIds.length * STATE_SIZE);
  for (let i = 0; i < userIds.length; i++) resetState(states, i * STATE_SIZE);
  for (let from = 0; from < userIds.length; from += PAGE) {
    const sql = stateSql.statesOf(key, userIds.slice(from, from + PAGE));
    const result = await db.query<{ user_id: string; state: Buffer }>(sql.text, sql.values);
    for (const row of result.rows) stateFromBytes(row.state, states, (index.get(row.user_id) as number) * STATE_SIZE);
  }
  const changed = new Set<number>();
  let folded = 0;
  for (const login of sorted) {
    const i = index.get(login.userId) as number;
    const base = i * STATE_SIZE;
    if (hasLogins(states, base) && login.atMs <= (states[base + S.LAST] as number)) continue;
    observeLogin(states, login.atMs, grid, base);
    changed.add(i);
    folded++;
  }
  await upsertRows(db, key, { userIds, states }, [...changed]);
  return folded;
}

/**
 * Folds newly recorded logins into every registered grid. Meant to be called by the code that
 * inserts logins, inside its transaction, with the rows it inserted (re-applying rows is
 * harmless: a login not later than the user's latest folded one is skipped). The per-grid
 * advisory lock keeps concurrent writers from losing each other's updates.
 */
export async function applyLoginsToState(client: Queryable, rows: readonly { userId: string; at: Date }[]): Promise<{ grids: number; logins: number }> {
  if (rows.length === 0) return { grids: 0, logins: 0 };
  const grids = await client.query<GridRow>(stateSql.grids().text);
  const logins = rows.map((row) => ({ userId: row.userId, atMs: row.at.getTime() }));
  for (const row of grids.rows) {
    const lock = stateSql.lockGrid(row.grid);
    await client.query(lock.text, lock.values);
    await foldIntoGrid(client, row.grid, { windowMs: toMs(row.window_ms), phaseMs: toMs(row.phase_ms) }, logins);
  }
  return { grids: grids.rows.length, logins: rows.length };
}

/**
 * Recomputes a grid from the whole `logins` table (registering it if new): one ordered COPY
 * scan, every user folded in memory, written back in pages.
 */
export async function rebuildGrid(pool: Pool, grid: StateGrid, log?: Logger): Promise<{ users: number; logins: number }> {
  const key = gridKey(grid);
  const started = Date.now();
  const loginLog = await readLoginLogFromDb(pool);
  const table = statesFromLog(loginLog, grid);
  await withTransaction(pool, async (client) => {
    const register = stateSql.registerGrid(key, grid);
    await client.query(register.text, register.values);
    const lock = stateSql.lockGrid(key);
    await client.query(lock.text, lock.values);
    const clear = stateSql.clearGrid(key);
    await client.query(clear.text, clear.values);
    await upsertRows(client, key, table, table.userIds.map((_id, i) => i));
    const lastMs = loginLog.at.length > 0 ? (loginLog.at[loginLog.at.length - 1] as number) : undefined;
    const mark = stateSql.markRebuilt(key, lastMs === undefined ? null : new Date(lastMs));
    await client.query(mark.text, mark.values);
  });
  log?.info({ grid: key, users: table.userIds.length, logins: loginLog.at.length, ms: Date.now() - started }, 'propensity state rebuilt');
  return { users: table.userIds.length, logins: loginLog.at.length };
}

/** Folds every login of an in-memory log into fresh states. */
export function statesFromLog(loginLog: LoginLog, grid: StateGrid): StateTable {
  const states = new Float64Array(loginLog.userIds.length * STATE_SIZE);
  for (let u = 0; u < loginLog.userIds.length; u++) resetState(states, u * STATE_SIZE);
  for (let i = 0; i < loginLog.at.length; i++) observeLogin(states, loginLog.at[i] as number, grid, (loginLog.user[i] as number) * STATE_SIZE);
  return { userIds: loginLog.userIds, states };
}

/**
 * Makes a grid current: builds it from `logins` if it does not exist yet, else folds in the
 * logins recorded since its last catch-up.
 */
export async function syncGrid(pool: Pool, grid: StateGrid, log?: Logger): Promise<{ rebuilt: boolean; folded: number }> {
  const key = gridKey(grid);
  const existing = await pool.query<GridRow>(stateSql.grid(key).text, stateSql.grid(key).values);
  if (existing.rows.length === 0 || existing.rows[0]?.state_size !== STATE_SIZE) {
    await rebuildGrid(pool, grid, log);
    return { rebuilt: true, folded: 0 };
  }
  return withTransaction(pool, async (client) => {
    const lock = stateSql.lockGrid(key);
    await client.query(lock.text, lock.values);
    const current = await client.query<GridRow>(stateSql.grid(key).text, stateSql.grid(key).values);
    const observed = current.rows[0]?.observed_through;
    // A grid built on an empty table has seen nothing yet: scan from long before any login.
    let afterMs = observed ? observed.getTime() - CATCH_UP_OVERLAP_MS : Date.UTC(1900, 0, 1);
    let afterUser: string | null = null;
    let folded = 0;
    let seenThrough: number | undefined;
    for (;;) {
      const sql = stateSql.loginsAfter(afterMs, afterUser, PAGE * 5);
      const page = await client.query<{ user_id: string; at_ms: number }>(sql.text, sql.values);
      if (page.rows.length === 0) break;
      const logins = page.rows.map((row) => ({ userId: row.user_id, atMs: Math.round(toMs(row.at_ms)) }));
      folded += await foldIntoGrid(client, key, grid, logins);
      const tail = page.rows[page.rows.length - 1] as { user_id: string; at_ms: number };
      afterMs = toMs(tail.at_ms);
      afterUser = tail.user_id;
      seenThrough = Math.round(afterMs);
      if (page.rows.length < PAGE * 5) break;
    }
    if (seenThrough !== undefined) {
      const mark = stateSql.markCaughtUp(key, new Date(seenThrough));
      await client.query(mark.text, mark.values);
    }
    return { rebuilt: false, folded };
  });
}

/** Every state of a grid, paged by user id. */
export async function loadGrid(db: Queryable, grid: StateGrid): Promise<StateTable> {
  const key = gridKey(grid);
  const userIds: string[] = [];
  let states = new Float64Array(PAGE * STATE_SIZE);
  let after: string | null = null;
  for (;;) {
    const sql = stateSql.statePage(key, after, PAGE);
    const page = await db.query<{ user_id: string; state: Buffer }>(sql.text, sql.values);
    if (userIds.length + page.rows.length > states.length / STATE_SIZE) {
      const grown = new Float64Array(Math.max(states.length * 2, (userIds.length + page.rows.length) * STATE_SIZE));
      grown.set(states);
      states = grown;
    }
    for (const row of page.rows) {
      stateFromBytes(row.state, states, userIds.length * STATE_SIZE);
      userIds.push(row.user_id);
    }
    if (page.rows.length < PAGE) break;
    after = (page.rows[page.rows.length - 1] as { user_id: string }).user_id;
  }
  return { userIds, states: states.subarray(0, userIds.length * STATE_SIZE) };
}

/**
 * Replaces, in `table`, the states of users who have a login at or after `beforeMs` by states
 * rebuilt from their logins before it (none: the user is not known then). Used when scoring a
 * window that starts before the latest logins (a replay, a dry run of a past window).
 */
export async function rewindStates(db: Queryable, table: StateTable, grid: StateGrid, beforeMs: number): Promise<number> {
  const late: number[] = [];
  for (let i = 0; i < table.userIds.length; i++) {
    if ((table.states[i * STATE_SIZE + S.LAST] as number) >= beforeMs) late.push(i);
  }
  for (let from = 0; from < late.length; from += PAGE) {
    const slice = late.slice(from, from + PAGE);
    const index = new Map(slice.map((i) => [table.userIds[i] as string, i]));
    for (const i of slice) resetState(table.states, i * STATE_SIZE);
    const sql = stateSql.loginsOfUsersBefore([...index.keys()], beforeMs);
    const result = await db.query<{ user_id: string; at_ms: number }>(sql.text, sql.values);
    for (const row of result.rows) {
      const i = index.get(row.user_id);
      if (i !== undefined) observeLogin(table.states, Math.round(toMs(row.at_ms)), grid, i * STATE_SIZE);
    }
  }
  return late.length;
}
