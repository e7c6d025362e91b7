import type { LoginLog } from './login-log.ts';
import { observeLogin, resetState, STATE_SIZE, windowIndex, type StateGrid } from './state.ts';

/** What a visitor sees of one window. */
export interface WindowVisit {
  /** Grid index of the window. */
  index: number;
  startMs: number;
  /** Users 0 … knownCount−1 are known: their first login is before startMs. */
  knownCount: number;
  /** Activity states of all users, STATE_SIZE values each, user u at u·STATE_SIZE. */
  states: Float64Array;
}

export interface WindowOutcome extends WindowVisit {
  /** Known users with a login in the window, in order of their first login in it. */
  activeKnown: Int32Array;
  /** activeStamp[u] === index ⇔ user u logged in during this window (known or not). */
  activeStamp: Int32Array;
}

export interface WalkVisitor {
  /** Called at each window start, when the states hold exactly the logins before startMs. */
  windowStart?(visit: WindowVisit): void;
  /** Called once the window's logins have been folded into the states. */
  windowEnd?(outcome: WindowOutcome): void;
}

/**
 * Walks the log once, window by window, over [fromMs, toMs) (both on the grid): all logins
 * before fromMs are folded in first, then for each window the visitor reads the states before
 * any of the window's logins is folded in. A login exactly at a window start belongs to that
 * window and is therefore never seen by features read at its start.
 */
export function walkWindows(log: LoginLog, grid: StateGrid, fromMs: number, toMs: number, visitor: WalkVisitor): void {
  const userCount = log.userIds.length;
  const states = new Float64Array(userCount * STATE_SIZE);
  for (let u = 0; u < userCount; u++) resetState(states, u * STATE_SIZE);
  const activeStamp = new Int32Array(userCount).fill(-1);
  const active = new Int32Array(userCount);
  const { user, at } = log;
  const n = at.length;
  let next = 0;
  let knownCount = 0;
  while (next < n && (at[next] as number) < fromMs) {
    const u = user[next] as number;
    observeLogin(states, at[next] as number, grid, u * STATE_SIZE);
    if (u >= knownCount) knownCount = u + 1;
    next++;
  }
  for (let startMs = fromMs; startMs < toMs; startMs += grid.windowMs) {
    const index = windowIndex(startMs, grid);
    const visit: WindowVisit = { index, startMs, knownCount, states };
    visitor.windowStart?.(visit);
    const endMs = startMs + grid.windowMs;
    let activeCount = 0;
    while (next < n && (at[next] as number) < endMs) {
      const u = user[next] as number;
      observeLogin(states, at[next] as number, grid, u * STATE_SIZE);
      if (activeStamp[u] !== index) {
        activeStamp[u] = index;
        if (u < visit.knownCount) active[activeCount++] = u;
      }
      if (u >= knownCount) knownCount = u + 1;
      next++;
    }
    visitor.windowEnd?.({ ...visit, activeKnown: active.subarray(0, activeCount), activeStamp });
  }
}

/** First window start on the grid at or before `ms`. */
export function floorToGrid(ms: number, grid: StateGrid): number {
  return windowIndex(ms, grid) * grid.windowMs + (grid.phaseMs ?? 0);
}
