// Property tests of the parsers and rules every outside input goes through: durations,
// timestamps, ids, policies, the policy's selection, and the environment.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { MAX_DURATION_MS, formatDuration, parseDuration } from '../src/duration.ts';
import { isPrewarmError } from '../src/errors.ts';
import { MAX_ID_LENGTH, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, codePointLength, idProblem, parseTimestamp } from '../src/ids.ts';
import { byPropensity, formatPolicy, parsePolicy, selectUsers, type Candidate, type Policy } from '../src/planner/policy.ts';

/** Runs `f`; returns what it threw, or undefined. */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (error) {
    return error;
  }
  return undefined;
}

const UNITS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
const anyText = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }));

describe('parseDuration', () => {
  it('sums its parts, in any order and repetition', () => {
    const part = fc.record({ n: fc.integer({ min: 0, max: 100_000 }), unit: fc.constantFrom(...(Object.keys(UNITS) as Array<keyof typeof UNITS>)) });
    fc.assert(
      fc.property(fc.array(part, { minLength: 1, maxLength: 5 }), (parts) => {
        const expected = parts.reduce((total, { n, unit }) => total + n * UNITS[unit], 0);
        fc.pre(expected <= MAX_DURATION_MS);
        expect(parseDuration(parts.map(({ n, unit }) => `${n}${unit}`).join(''))).toBe(expected);
      }),
    );
  });

  it('reads back what formatDuration writes', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: MAX_DURATION_MS }), (ms) => {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }));;
  });

  it('on any text: a whole number of ms within bounds, or PREWARM_ERR_BAD_DURATION, never another failure', () => {
    const durationish = fc.stringMatching(/^[ 0-9.+\-e]{0,6}(ms|s|m|h|d|w|x|)[0-9.]{0,4}(ms|s|m|h|d|w|)$/);
    fc.assert(
      fc.property(fc.oneof(anyText, durationish), (text) => {
        const error = thrown(() => parseDuration(text));
        if (error === undefined) {
          const ms = parseDuration(text);
          expect(Number.isSafeInteger(ms) && ms >= 0 && ms <= MAX_DURATION_MS).toBe(true);
        } else {
          expect(isPrewarmError(error, 'PREWARM_ERR_BAD_DURATION')).toBe(true);
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it.each(['24', '0', '', ' ', '-1h', '+1h', '1e3ms', '1 h', '1h 30m', 'h', '1.h', '.5h', '1H', 'Infinityh', `${'9'.repeat(400)}d`, '99999999999999999999d', '1001y', '366000d'])(
    'refuses %j',
    (text) => expect(() => parseDuration(text)).toThrow(expect.objectContaining({ code: 'PREWARM_ERR_BAD_DURATION' })),
  );
});

describe('parseTimestamp', () => {
  const daysIn = (year: number, month: number) => new Date(Date.UTC(2000, month, 0)).getUTCDate() - (month === 2 && !(year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)) ? 1 : 0);
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  const parts = fc.record({
    year: fc.integer({ min: 1, max: 9999 }),
    month: fc.integer({ min: 1, max: 12 }),
    dayFraction: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
    hour: fc.integer({ min: 0, max: 23 }),
    minute: fc.integer({ min: 0, max: 59 }),
    second: fc.integer({ min: 0, max: 59 }),
    fraction: fc.option(fc.stringMatching(/^[0-9]{1,9}$/), { nil: undefined }),
    offsetMinutes: fc.option(fc.integer({ min: -(23 * 60 + 59), max: 23 * 60 + 59 }), { nil: undefined }),
  });

  it('reads every valid ISO instant exactly, the zone applied', () => {
    fc.assert(
      fc.property(parts, (p) => {
        const day = 1 + Math.floor(p.dayFraction * daysIn(p.year, p.month));
        const offset = p.offsetMinutes === undefined ? 'Z' : `${p.offsetMinutes < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(p.offsetMinutes) / 60))}:${pad(Math.abs(p.offsetMinutes) % 60)}`;
        const text = `${pad(p.year, 4)}-${pad(p.month)}-${pad(day)}T${pad(p.hour)}:${pad(p.minute)}:${pad(p.second)}${p.fraction === undefined ? '' : `.${p.fraction}`}${offset}`;
        const utc = new Date(0);
        utc.setUTCFullYear(p.year, p.month - 1, day);
        utc.setUTCHours(p.hour, p.minute, p.second, p.fraction === undefined ? 0 : Math.floor(Number(`0.${p.fraction}`) * 1000));
        const expected = utc.getTime() - (p.offsetMinutes ?? 0) * 60_000;
        const parsed = parseTimestamp(text);
        if (expected < MIN_TIMESTAMP_MS || expected > MAX_TIMESTAMP_MS) expect(parsed).toBeUndefined();
        else expect(parsed?.getTime(), text).toBe(expected);
      }),
      { numRuns: 2_000 },
    );
  });

  it('reads back toISOString of any instant it accepts', () => {
    fc.assert(
      fc.property(fc.date({ min: new Date(MIN_TIMESTAMP_MS), max: new Date(MAX_TIMESTAMP_MS), noInvalidDate: true }), (date) => {
        expect(parseTimestamp(date.toISOString())?.getTime()).toBe(date.getTime());
      }),
    );
  });

  it('refuses impossible dates and times instead of rolling them over', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9999 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 3 }), (year, month, extra) => {
        const day = daysIn(year, month) + extra;
        expect(parseTimestamp(`${pad(year, 4)}-${pad(month)}-${pad(day)}T00:00:00Z`)).toBeUndefined();
      }),
    );
    for (const text of ['2020-01-01T24:00:00Z', '2020-01-01T23:60:00Z', '2020-01-01T23:59:60Z', '2020-13-01T00:00:00Z', '2020-00-10T00:00:00Z', '0000-06-01T00:00:00Z', '0001-01-01T00:30:00+01:00', '9999-12-31T23:30:00-01:00', '2020-01-01T00:00:00+24:00']) {
      expect(parseTimestamp(text), text).toBeUndefined();
    }
  });

  it('on any text: undefined or a valid instant within bounds, never a throw', () => {
    const near = fc.stringMatching(/^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,10})?(Z|z|[+-][0-9]{2}:?[0-9]{2}|)$/);
    fc.assert(
      fc.property(fc.oneof(anyText, near), (text) => {
        const parsed = parseTimestamp(text);
        if (parsed !== undefined) {
          expect(Number.isNaN(parsed.getTime())).toBe(false);
          expect(parsed.getTime()).toBeGreaterThanOrEqual(MIN_TIMESTAMP_MS);
          expect(parsed.getTime()).toBeLessThanOrEqual(MAX_TIMESTAMP_MS);
        }
      }),
      { numRuns: 3_000 },
    );
  });
});

describe('idProblem', () => {
  it('counts code points, as the API does: n emoji are n characters', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.constantFrom('😀', '𝔸', 'a', 'é', '東'), (n, char) => {
        const id = char.repeat(n);
        expect(idProblem(id) === undefined).toBe(n <= MAX_ID_LENGTH);
      }),
    );
  });

  it('agrees with its own definition on any text', () => {
    fc.assert(
      fc.property(fc.oneof(anyText, fc.string({ unit: 'binary', minLength: 100, maxLength: 300 })), (id) => {
        const forbidden = [...id].some((char) => {
          const code = char.codePointAt(0) as number;
          return code <= 0x1f || (code >= 0x7f && code <= 0x9f) || code === 0x2028 || code === 0x2029 || (code >= 0xd800 && code <= 0xdfff);
        });
        const ok = id.length > 0 && codePointLength(id) <= MAX_ID_LENGTH && !forbidden;
        expect(idProblem(id) === undefined).toBe(ok);
      }),
      { numRuns: 2_000 },
    );
  });
});

describe('parsePolicy', () => {
  const fraction = fc.double({ min: 0, max: 1, noNaN: true });
  const policy: fc.Arbitrary<Policy> = fc.oneof(
    fraction.map((p) => ({ kind: 'threshold' as const, p })),
    fraction.map((target) => ({ kind: 'coverage' as const, target })),
    fraction.map((max) => ({ kind: 'waste' as const, max })),
    fc.nat({ max: 10_000_000 }).map((n) => ({ kind: 'budget' as const, n })),
    fc.integer({ min: 1, max: 1_000 }).map((k) => ({ kind: 'recent' as const, k })),
    fc.double({ min: Number.MIN_VALUE, max: 1e6, noNaN: true }).map((ratio) => ({ kind: 'cost' as const, ratio })),
    fc.constantFrom({ kind: 'all' as const }, { kind: 'none' as const }),
  );

  it('reads back what formatPolicy writes', () => {
    fc.assert(fc.property(policy, (p) => {
      expect(parsePolicy(formatPolicy(p))).toEqual(p);
    }));
  });

  it('on any text: a policy within its domain, or PREWARM_ERR_BAD_POLICY', () => {
    const policyish = fc
      .tuple(fc.constantFrom('threshold', 'coverage', 'waste', 'budget', 'recent', 'cost', 'all', 'none', 'bogus', ''), fc.constantFrom('', ':'), fc.oneof(fc.string({ maxLength: 8 }), fc.double().map(String), fc.integer().map(String)))
      .map(([name, colon, arg]) => `${name}${colon}${arg}`);
    fc.assert(
      fc.property(fc.oneof(anyText, policyish), (text) => {
        const error = thrown(() => parsePolicy(text));
        if (error !== undefined) {
          expect(isPrewarmError(error, 'PREWARM_ERR_BAD_POLICY')).toBe(true);
          return;
        }
        const p = parsePolicy(text);
        switch (p.kind) {
          case 'threshold':
            expect(p.p >= 0 && p.p <= 1).toBe(true);
            break;
          case 'coverage':
            expect(p.target >= 0 && p.target <= 1).toBe(true);
            break;
          case 'waste':
            expect(p.max >= 0 && p.max <= 1).toBe(true);
            break;
          case 'budget':
            expect(Number.isSafeInteger(p.n) || Number.isInteger(p.n)).toBe(true);
            expect(p.n).toBeGreaterThanOrEqual(0);
            break;
          case 'recent':
            expect(Number.isInteger(p.k) && p.k >= 1).toBe(true);
            break;
          case 'cost':
            expect(Number.isFinite(p.ratio) && p.ratio > 0).toBe(true);
            break;
        }
      }),
      { numRuns: 3_000 },
    );
  });
});

describe('selectUsers', () => {
  const WINDOW = 86_400_000;
  const START = Date.parse('2024-03-01T00:00:00Z');
  const candidates = fc.uniqueArray(
    fc.record({
      userId: fc.string({ minLength: 1, maxLength: 4 }),
      p: fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), fc.constantFrom(0, 0.5, 1)),
      lastLoginAt: fc.integer({ min: START - 10 * WINDOW, max: START + WINDOW }),
    }),
    { selector: (c) => c.userId, maxLength: 60 },
  );
  const fraction = fc.double({ min: 0, max: 1, noNaN: true });
  const context = { windowStart: START, windowMs: WINDOW };
  const ids = (selected: readonly Candidate[]) => selected.map((c) => c.userId);
  const sum = (cs: readonly Candidate[]) => cs.reduce((total, c) => total + c.p, 0);

  it('selects distinct candidates, best first, with expectations in [0, 1]; whatever the input order', () => {
    const policy = fc.oneof(
      fraction.map((p): Policy => ({ kind: 'threshold', p })),
      fraction.map((target): Policy => ({ kind: 'coverage', target })),
      fraction.map((max): Policy => ({ kind: 'waste', max })),
      fc.nat(80).map((n): Policy => ({ kind: 'budget', n })),
      fc.integer({ min: 1, max: 12 }).map((k): Policy => ({ kind: 'recent', k })),
      fc.double({ min: 0.01, max: 100, noNaN: true }).map((ratio): Policy => ({ kind: 'cost', ratio })),
      fc.constantFrom<Policy>({ kind: 'all' }, { kind: 'none' }),
    );
    fc.assert(
      fc.property(candidates, policy, fc.integer(), (cs, p, seed) => {
        const selection = selectUsers(cs, p, context);
        const chosen = ids(selection.selected);
        expect(new Set(chosen).size).toBe(chosen.length);
        expect(chosen.every((id) => cs.some((c) => c.userId === id))).toBe(true);
        expect([...selection.selected].sort(byPropensity).map((c) => c.userId)).toEqual(chosen);
        expect(selection.expectedCoverage).toBeGreaterThanOrEqual(0);
        expect(selection.expectedCoverage).toBeLessThanOrEqual(1 + 1e-9);
        expect(selection.expectedWaste).toBeGreaterThanOrEqual(-1e-9);
        expect(selection.expectedWaste).toBeLessThanOrEqual(1);
        // Input order does not matter.
        const shuffled = [...cs].sort((a, b) => ((a.userId.charCodeAt(0) * 31 + seed) % 7) - ((b.userId.charCodeAt(0) * 31 + seed) % 7));
        expect(ids(selectUsers(shuffled, p, context).selected)).toEqual(chosen);
        // Every policy but recent:K takes a prefix of the ranking.
        if (p.kind !== 'recent') expect(chosen).toEqual(ids([...cs].sort(byPropensity).slice(0, chosen.length)));
      }),
      { numRuns: 1_000 },
    );
  });

  it('each policy selects what its definition says', () => {
    fc.assert(
      fc.property(candidates, fraction, fc.nat(80), fc.integer({ min: 1, max: 12 }), fc.double({ min: 0.01, max: 100, noNaN: true }), (cs, f, n, k, ratio) => {
        const ranked = [...cs].sort(byPropensity);
        const total = sum(cs);
        expect(ids(selectUsers(cs, { kind: 'all' }, context).selected)).toEqual(ids(ranked));
        expect(selectUsers(cs, { kind: 'none' }, context).selected).toEqual([]);
        expect(ids(selectUsers(cs, { kind: 'budget', n }, context).selected)).toEqual(ids(ranked.slice(0, n)));
        expect(ids(selectUsers(cs, { kind: 'threshold', p: f }, context).selected)).toEqual(ids(ranked.filter((c) => c.p >= f)));
        expect(ids(selectUsers(cs, { kind: 'cost', ratio }, context).selected)).toEqual(ids(ranked.filter((c) => c.p * ratio > 1)));
        expect(ids(selectUsers(cs, { kind: 'recent', k }, context).selected)).toEqual(
          ids(ranked.filter((c) => c.lastLoginAt >= START - k * WINDOW && c.lastLoginAt < START)),
        );
        // coverage:F — the shortest prefix whose Σp reaches F of the total.
        const covered = selectUsers(cs, { kind: 'coverage', target: f }, context).selected;
        if (total > 0 && f > 0) {
          expect(sum(covered)).toBeGreaterThanOrEqual(f * total - 1e-6);
          // No shorter non-empty prefix reaches it (within the selection's own tolerance of 1e-9).
          if (covered.length > 1) expect(sum(covered.slice(0, -1))).toBeLessThan(f * total - 1e-9);
        } else {
          expect(covered).toEqual([]);
        }
        // waste:F — the longest prefix whose expected waste stays ≤ F.
        const kept = selectUsers(cs, { kind: 'waste', max: f }, context);
        expect(kept.expectedWaste).toBeLessThanOrEqual(f + 1e-9);
        const next = ranked.slice(0, kept.selected.length + 1);
        if (next.length > kept.selected.length) expect(1 - sum(next) / next.length).toBeGreaterThan(f - 1e-9);
      }),
      { numRuns: 1_000 },
    );
  });

  it('grows with its parameter', () => {
    fc.assert(
      fc.property(candidates, fraction, fraction, (cs, a, b) => {
        const [low, high] = a <= b ? [a, b] : [b, a];
        const size = (p: Policy) => selectUsers(cs, p, context).selected.length;
        expect(size({ kind: 'threshold', p: high })).toBeLessThanOrEqual(size({ kind: 'threshold', p: low }));
        expect(size({ kind: 'coverage', target: low })).toBeLessThanOrEqual(size({ kind: 'coverage', target: high }));
        expect(size({ kind: 'waste', max: low })).toBeLessThanOrEqual(size({ kind: 'waste', max: high }));
      }),
      { numRuns: 500 },
    );
  });
});

describe('environment', () => {
  const VARIABLES = [
    'DATABASE_URL', 'REDIS_URL', 'PORT', 'PREWARM_HOST', 'PREWARM_API_TOKENS', 'PREWARM_ADMIN_TOKEN', 'PREWARM_LOG_LEVEL', 'PREWARM_DB_SCHEMA',
    'PREWARM_DB_POOL_SIZE', 'PREWARM_CACHE_REDIS_URL', 'PREWARM_LATENCY_BUDGET_MS', 'PREWARM_DEFAULT_LIMIT', 'PREWARM_MAX_LIMIT',
    'PREWARM_ON_DEMAND_TTL', 'PREWARM_ON_DEMAND_CONCURRENCY', 'PREWARM_ON_DEMAND_QUEUE', 'PREWARM_RECOMMENDER', 'PREWARM_RECOMMENDER_URL',
    'PREWARM_RECOMMENDER_TIMEOUT_MS', 'PREWARM_RECOMMENDER_TOKEN', 'PREWARM_FLUSH_INTERVAL_MS', 'PREWARM_FLUSH_MAX_BATCH', 'PREWARM_EVENT_BUFFER_MAX',
    'PREWARM_WORKER_CONCURRENCY', 'PREWARM_SHUTDOWN_TIMEOUT_MS', 'PREWARM_PROPENSITY_WINDOW', 'PREWARM_PROPENSITY_RETRAIN_EVERY',
  ];
  const SECRET_VARIABLES = new Set(['PREWARM_API_TOKENS', 'PREWARM_ADMIN_TOKEN', 'PREWARM_RECOMMENDER_TOKEN']);
  const value = fc.oneof(
    anyText,
    fc.constantFrom('0', '-1', '1.5', '1e3', '0x10', 'Infinity', 'NaN', ' 8', '99999999999999999999', '1h', '24', 'http://x', 'postgres://', 'redis://h:1', '::::', '\u0000', 'é'),
  );

  it('a bad value of any variable is a one-line PREWARM_ERR_CONFIG naming it, never echoing a secret', () => {
    fc.assert(
      fc.property(fc.constantFrom(...VARIABLES), value, (name, text) => {
        const error = thrown(() => loadConfig({ [name]: text }));
        if (error === undefined) return;
        expect(isPrewarmError(error, 'PREWARM_ERR_CONFIG'), String(error)).toBe(true);
        const message = (error as Error).message;
        expect(message).not.toContain('\n');
        expect(message).toContain(name);
        if (SECRET_VARIABLES.has(name) && text.trim().length >= 4) expect(message).not.toContain(text.trim());
      }),
      { numRuns: 3_000 },
    );
  });

  it('a duration that would leave the range of a date is refused at start-up', () => {
    expect(() => loadConfig({ PREWARM_ON_DEMAND_TTL: '99999999999999999999d' })).toThrow(/PREWARM_ON_DEMAND_TTL: .*longer than 1000 years/);
  });
});
