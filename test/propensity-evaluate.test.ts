import { describe, expect, it } from 'vitest';
import { isPrewarmError } from '../src/errors.ts';
import { evaluateLog, type PolicyResult } from '../src/propensity/evaluate.ts';
import { loginLogFrom } from '../src/propensity/login-log.ts';

const DAY = 86_400_000;
const D = (day: number, hour = 0, minute = 0) => Date.UTC(2024, 0, 1) + day * DAY + hour * 3_600_000 + minute * 60_000;

/*
 * A hand-made log, daily windows D0 … D4, test period [D2, D5):
 *   a: D0 10:00, D1 00:00 (exactly on the window boundary: belongs to D1), D2 09:00, D4 12:00
 *   b: D0 08:00, D3 23:59
 *   c: D2 05:00, D2 06:00 (two logins, one active window), D3 07:00
 *   d: D4 00:00 (first login inside the test period: never known in it)
 *   e: D0 00:00 only
 *
 * Known at the start of (first login before it):   D2: a b e    D3: a b c e    D4: a b c e
 *   → knownUserWindows = 3 + 4 + 4 = 11
 * Active known (a login in the window):              D2: a        D3: b c        D4: a
 *   (c is active in D2 but not yet known; d is active in D4 but not known)
 *   → activeUserWindows = 1 + 2 + 1 = 4
 *
 * all:      S = known.                                selected 11, hits 4, wasted 7
 * recent-1: last login in [t−1d, t):
 *   D2: {a} (D1 00:00)           hits a                → 1 selected, 1 hit
 *   D3: {a, c} (D2)              hits c, wastes a      → 2 selected, 1 hit
 *   D4: {b, c} (D3)              hits none             → 2 selected, 0 hits
 *                                                       selected 5, hits 2, wasted 3
 * recent-3: last login in [t−3d, t):
 *   D2: {a, b, e} (D1, D0 08:00, D0 00:00 ≥ D−1)        → 3 selected, 1 hit (a)
 *   D3: {a, b, c, e} (e's D0 00:00 ≥ D0: still in)      → 4 selected, 2 hits (b, c)
 *   D4: {a, b, c} (e's D0 00:00 < D1: out)              → 3 selected, 1 hit (a)
 *                                                       selected 10, hits 4, wasted 6
 * recent-7 and recent-28: everyone known every time:   selected 11, hits 4, wasted 7
 * oracle:   S = active known:                          selected 4, hits 4, wasted 0
 */
const logins = [
  ['e', D(0)],
  ['b', D(0, 8)],
  ['a', D(0, 10)],
  ['a', D(1)],
  ['a', D(2, 9)],
  ['c', D(2, 5)],
  ['c', D(2, 6)],
  ['c', D(3, 7)],
  ['b', D(3, 23, 59)],
  ['d', D(4)],
  ['a', D(4, 12)],
] as const;

function evaluateHandLog(policy = 'recent:1') {
  const log = loginLogFrom(logins.map(([userId, at]) => ({ userId, at })));
  const [kind, k] = policy.split(':');
  return evaluateLog(log, {
    windowMs: DAY,
    testFromMs: D(2),
    testToMs: D(5),
    policy: kind === 'recent' ? { kind: 'recent', k: Number(k) } : { kind: 'all' },
  });
}

function row(policies: PolicyResult[], name: string): PolicyResult {
  const found = policies.find((p) => p.name === name);
  if (!found) throw new Error(`no ${name}`);
  return found;
}

describe('offline evaluation counts on a hand-made log', () => {
  it('counts known and active user-windows', () => {
    const report = evaluateHandLog();
    expect(report.window).toBe('1d');
    expect(report.testFrom).toBe('2024-01-03T00:00:00.000Z');
    expect(report.testTo).toBe('2024-01-06T00:00:00.000Z');
    expect(report.testWindows).toBe(3);
    expect(report.knownUserWindows).toBe(11);
    expect(report.activeUserWindows).toBe(4);
    expect(report.policies.map((p) => p.name)).toEqual(['model', 'all', 'recent-1', 'recent-3', 'recent-7', 'recent-28', 'oracle']);
  });

  it.each([
    ['all', 11, 4],
    ['recent-1', 5, 2],
    ['recent-3', 10, 4],
    ['recent-7', 11, 4],
    ['recent-28', 11, 4],
    ['oracle', 4, 4],
  ])('%s: %i selected, %i hits', (name, selected, hits) => {
    const p = row(evaluateHandLog().policies, name);
    expect(p.precomputes).toBe(selected);
    expect(p.hits).toBe(hits);
    expect(p.wasted).toBe(selected - hits);
    expect(p.volume).toBeCloseTo(selected / 11, 12);
    expect(p.waste).toBeCloseTo((selected - hits) / selected, 12);
    expect(p.coverage).toBeCloseTo(hits / 4, 12);
  });

  it('reports a model-free --policy under `model`, with the same figures as its rule', () => {
    const report = evaluateHandLog('recent:3');
    const model = row(report.policies, 'model');
    expect(model.policy).toBe('recent:3');
    expect({ ...model, name: 'recent-3' }).toEqual(row(report.policies, 'recent-3'));
    // No model was trained, so there are no ranking metrics.
    expect(model.averagePrecision).toBeUndefined();
    expect(report.model).toBeUndefined();
  });

  it('refuses a model policy without two training windows before --test-from', () => {
    const log = loginLogFrom(logins.map(([userId, at]) => ({ userId, at })));
    let thrown: unknown;
    try {
      evaluateLog(log, { windowMs: DAY, testFromMs: D(2), testToMs: D(5) });
    } catch (error) {
      thrown = error;
    }
    expect(isPrewarmError(thrown, 'PREWARM_ERR_BAD_INPUT')).toBe(true);
    expect((thrown as Error).message).toMatch(/--test-from/);
  });

  it('refuses a --test-from that is not a window start', () => {
    const log = loginLogFrom(logins.map(([userId, at]) => ({ userId, at })));
    expect(() => evaluateLog(log, { windowMs: DAY, testFromMs: D(2, 6), policy: { kind: 'all' } })).toThrow(/--test-from .* is not the start of a 1d window/);
  });
});
