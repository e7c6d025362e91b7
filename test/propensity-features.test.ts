import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FEATURE_COUNT, FEATURE_NAMES, featureRowsAt } from '../src/propensity/features.ts';
import { loginLogFrom } from '../src/propensity/login-log.ts';
import { activeWindowsBefore, createState, maskBit, observeLogin, S, stateFromBytes, stateToBytes, STATE_SIZE } from '../src/propensity/state.ts';
import { walkWindows } from '../src/propensity/walk.ts';

const DAY = 86_400_000;
const T0 = Date.UTC(2024, 0, 1);
const grid = { windowMs: DAY, phaseMs: 0 };

type Login = { userId: string; at: number };

/**
 * Features of every user known at window start `tMs`, by user id, computed the way `evaluate`
 * does: walking the log and reading the states before the window's logins are folded in.
 */
function featuresAtWindow(logins: Login[], tMs: number): Map<string, number[]> {
  const log = loginLogFrom(logins);
  const result = new Map<string, number[]>();
  walkWindows(log, grid, tMs, tMs + DAY, {
    windowStart: ({ knownCount, states, startMs }) => {
      const { rows } = featureRowsAt(states, knownCount, startMs, grid);
      for (let u = 0; u < knownCount; u++) result.set(log.userIds[u] as string, Array.from(rows.subarray(u * FEATURE_COUNT, (u + 1) * FEATURE_COUNT)));
    },
  });
  return result;
}

const history: Login[] = [
  { userId: 'a', at: T0 + 0 * DAY + 9 * 3_600_000 },
  { userId: 'a', at: T0 + 3 * DAY + 20 * 3_600_000 },
  { userId: 'a', at: T0 + 7 * DAY + 8 * 3_600_000 },
  { userId: 'b', at: T0 + 1 * DAY + 12 * 3_600_000 },
  { userId: 'b', at: T0 + 8 * DAY + 12 * 3_600_000 },
  { userId: 'c', at: T0 + 2 * DAY },
];
const t = T0 + 10 * DAY;

describe('propensity features see no login at or after the window start', () => {
  it('moving a login from after t to before t changes the features at t', () => {
    const after = [...history, { userId: 'a', at: t + 5 * 3_600_000 }];
    const before = [...history, { userId: 'a', at: t - 5 * 3_600_000 }];
    const seenAfter = featuresAtWindow(after, t).get('a');
    const seenBefore = featuresAtWindow(before, t).get('a');
    expect(seenAfter).toEqual(featuresAtWindow(history, t).get('a'));
    expect(seenBefore).not.toEqual(seenAfter);
    // Recency, lag_1 and the decayed counts are among what moved.
    const changed = FEATURE_NAMES.filter((_name, i) => seenBefore?.[i] !== seenAfter?.[i]);
    expect(changed).toEqual(expect.arrayContaining(['recency_log', 'lag_1', 'decayed_1d', 'logins_log']));
  });

  it('a login after t changes nothing at t, for any user', () => {
    const base = featuresAtWindow(history, t);
    for (const extra of [t + 1, t + DAY - 1, t + 3 * DAY, t + 40 * DAY]) {
      for (const userId of ['a', 'b', 'c', 'new-user']) {
        expect(featuresAtWindow([...history, { userId, at: extra }], t)).toEqual(base);
      }
    }
  });

  it('a login exactly at t belongs to window t and is not seen at its start', () => {
    const atBoundary = featuresAtWindow([...history, { userId: 'b', at: t }], t);
    expect(atBoundary).toEqual(featuresAtWindow(history, t));
    // …but it is seen one window later.
    const next = featuresAtWindow([...history, { userId: 'b', at: t }], t + DAY);
    expect(next.get('b')).not.toEqual(featuresAtWindow(history, t + DAY).get('b'));
  });

  it('a user whose first login is at t is not known at t', () => {
    expect(featuresAtWindow([...history, { userId: 'new-user', at: t }], t).has('new-user')).toBe(false);
    expect(featuresAtWindow([...history, { userId: 'new-user', at: t - 1 }], t).has('new-user')).toBe(true);
  });

  it('property: logins at or after t never change any feature at t', () => {
    const loginArb = (from: number, to: number) =>
      fc.record({ userId: fc.constantFrom('u1', 'u2', 'u3', 'u4'), at: fc.integer({ min: from, max: to - 1 }) });
    fc.assert(
      fc.property(fc.array(loginArb(T0, t), { minLength: 1, maxLength: 40 }), fc.array(loginArb(t, t + 30 * DAY), { maxLength: 20 }), (past, future) => {
        expect(featuresAtWindow([...past, ...future], t)).toEqual(featuresAtWindow(past, t));
      }),
      { numRuns: 60 },
    );
  });
});

describe('activity state', () => {
  it('keeps the 64-window mask, counts and decays exact', () => {
    const state = createState();
    const days = [0, 1, 1, 3, 40, 70];
    for (const d of days) observeLogin(state, T0 + d * DAY + 3_600_000, grid);
    expect(state[S.COUNT]).toBe(6);
    expect(state[S.WINDOWS]).toBe(5);
    const current = Math.floor((T0 + 71 * DAY) / DAY);
    // Active 1, 31 windows before day 71; days 0–3 are more than 64 windows back.
    expect(activeWindowsBefore(state, 0, current, 1)).toBe(1);
    expect(activeWindowsBefore(state, 0, current, 31)).toBe(2);
    expect(activeWindowsBefore(state, 0, current, 63)).toBe(2);
    expect(maskBit(state, 0, 0)).toBe(true);
    expect(maskBit(state, 0, 30)).toBe(true);
    expect(state[S.GAP_MAX]).toBe(37);
    expect(state[S.GAP_LAST]).toBe(30);
    // The 1-day counter decayed exactly: 2^-(30 days) after day 40, plus the last login.
    expect(state[S.DECAY]).toBeCloseTo(1 + Math.pow(2, -30), 12);
  });

  it('round-trips through bytes', () => {
    const state = createState();
    observeLogin(state, T0 + 5_000, grid);
    observeLogin(state, T0 + 2 * DAY, grid);
    const copy = stateFromBytes(stateToBytes(state));
    expect(Array.from(copy)).toEqual(Array.from(state));
    expect(copy.length).toBe(STATE_SIZE);
  });

  it('folds a late login into the counters as if it had come in order', () => {
    const inOrder = createState();
    const late = createState();
    for (const d of [0, 2, 5]) observeLogin(inOrder, T0 + d * DAY, grid);
    for (const d of [0, 5, 2]) observeLogin(late, T0 + d * DAY, grid);
    for (const offset of [S.COUNT, S.WINDOWS, S.LAST, S.FIRST, S.MASK_LO, S.DECAY, S.DECAY + 3, S.WEEKDAY + 3]) {
      expect(late[offset]).toBeCloseTo(inOrder[offset] as number, 12);
    }
  });
});
