import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addScores, createController, DEFAULT_FEEDBACK, emptyHistogram, EXPECTED_FEEDBACK, heldPolicy, nextTarget, thresholdFor, type FeedbackSettings } from '../src/planner/feedback.ts';
import { byPropensity, formatPolicy, parsePolicy, selectUsers, type Policy } from '../src/planner/policy.ts';

/**
 * A synthetic window: what a run measures when it applies `applied` — a line (a model whose
 * calibration is off by a constant and a slope) plus noise, clamped to [0, 1].
 */
interface Plant {
  bias: number;
  slope: number;
}
const measure = (plant: Plant, applied: number, noise = 0) => Math.min(1, Math.max(0, plant.bias + plant.slope * applied + noise));

/** Runs the controller for `runs` windows and returns the applied targets and the measurements. */
function simulate(goal: number, plants: (run: number) => Plant, runs: number, noise: (run: number) => number = () => 0, evidence = 10_000, settings: FeedbackSettings = DEFAULT_FEEDBACK) {
  const applied: number[] = [];
  const measured: number[] = [];
  let last: { applied: number; measured: number; evidence: number } | undefined;
  for (let run = 0; run < runs; run++) {
    const target = nextTarget(goal, last, settings);
    const m = measure(plants(run), target, noise(run));
    applied.push(target);
    measured.push(m);
    last = { applied: target, measured: m, evidence };
  }
  return { applied, measured };
}

/** Plants whose fixed point (bias + slope·x = goal) lies well inside the controller's bounds (0.8 of its largest offset). */
const plantFor = (goal: number, settings: FeedbackSettings) => {
  const reach = 0.8 * settings.maxOffset;
  return fc.record({ slope: fc.double({ min: 0.4, max: 2, noNaN: true }), offset: fc.double({ min: -reach, max: reach, noNaN: true }) }).map(({ slope, offset }) => {
    const fixedPoint = Math.min(0.99, Math.max(0.01, goal + offset));
    return { plant: { slope, bias: goal - slope * fixedPoint }, fixedPoint };
  });
};

const goals = fc.double({ min: 0.3, max: 0.9, noNaN: true });

/**
 * The integral part of the controller against a line (`nextTarget`), with the shipped settings
 * (slow, ±0.1: on the threshold from outcomes it only corrects a level) and those of the first
 * held threshold (fast, ±0.3: on Σp it corrected the calibration). `recoverRuns`: the runs the
 * slowest plant (slope 0.4) needs after the largest shift inside the bounds (twice 0.8·maxOffset)
 * to come back within a point: (1 − gain·w·0.4)^n·0.4·1.6·maxOffset < 0.01.
 */
describe.each([
  { name: 'shipped (outcomes, slow integral)', settings: DEFAULT_FEEDBACK, settleRuns: 80, recoverRuns: 60 },
  { name: 'first held threshold (Σp, fast integral)', settings: EXPECTED_FEEDBACK, settleRuns: 80, recoverRuns: 30 },
])('the feedback controller (src/planner/feedback.ts), $name', ({ settings, settleRuns, recoverRuns }) => {
  it('takes bounded steps and stays within the goal ± maxOffset, whatever it measures', () => {
    fc.assert(
      fc.property(goals, fc.array(fc.record({ measured: fc.double({ min: 0, max: 1, noNaN: true }), evidence: fc.integer({ min: 0, max: 10_000 }) }), { maxLength: 60 }), (goal, outcomes) => {
        let applied = nextTarget(goal, undefined, settings);
        expect(applied).toBe(goal);
        for (const outcome of outcomes) {
          const next = nextTarget(goal, { applied, ...outcome }, settings);
          expect(Math.abs(next - applied)).toBeLessThanOrEqual(settings.maxStep + 1e-4);
          expect(next).toBeGreaterThanOrEqual(Math.max(0, goal - settings.maxOffset) - 1e-4);
          expect(next).toBeLessThanOrEqual(Math.min(1, goal + settings.maxOffset) + 1e-4);
          if (outcome.evidence === 0) expect(Math.abs(next - applied)).toBeLessThanOrEqual(1e-4);
          applied = next;
        }
      }),
    );
  });

  it('does not oscillate on a stationary window: the error keeps its sign, shrinks, and vanishes', () => {
    fc.assert(
      fc.property(goals.chain((goal) => plantFor(goal, settings).map((p) => ({ goal, ...p }))), ({ goal, plant }) => {
        const { measured } = simulate(goal, () => plant, settleRuns, undefined, undefined, settings);
        const errors = measured.map((m) => goal - m);
        const first = errors[0] as number;
        for (let i = 1; i < errors.length; i++) {
          const error = errors[i] as number;
          // Never past the goal (beyond the 1e-4 resolution of a recorded target) …
          if (Math.abs(error) > 5e-4 && Math.abs(first) > 5e-4) expect(Math.sign(error)).toBe(Math.sign(first));
          // … and never further from it than the run before.
          expect(Math.abs(error)).toBeLessThanOrEqual(Math.abs(errors[i - 1] as number) + 5e-4);
        }
        expect(Math.abs(errors.at(-1) as number)).toBeLessThan(0.005);
      }),
    );
  });

  it('keeps a noisy stationary window near its goal without drifting: the applied target wanders less than the noise', () => {
    fc.assert(
      fc.property(goals.chain((goal) => plantFor(goal, settings).map((p) => ({ goal, ...p }))), fc.integer({ min: 1, max: 2 ** 30 }), ({ goal, plant, fixedPoint }, seed) => {
        let state = seed;
        const uniform = () => ((state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0) / 2 ** 32);
        const sd = 0.05;
        const noise = () => sd * Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
        const { applied, measured } = simulate(goal, () => plant, 400, noise, 100, settings);
        const settled = applied.slice(100);
        const meanApplied = settled.reduce((a, b) => a + b, 0) / settled.length;
        const spread = Math.sqrt(settled.reduce((a, b) => a + (b - meanApplied) ** 2, 0) / settled.length);
        // The applied target's spread is a fraction of the measurement noise (its steps are damped).
        expect(spread).toBeLessThan(sd / plant.slope);
        expect(Math.abs(meanApplied - fixedPoint)).toBeLessThan(0.03 / plant.slope);
        const meanMeasured = measured.slice(100).reduce((a, b) => a + b, 0) / 300;
        expect(Math.abs(meanMeasured - goal)).toBeLessThan(0.02);
      }),
      { numRuns: 60 },
    );
  });

  it(`recovers after a shift: back within a point of the goal within ${recoverRuns} daily runs`, () => {
    fc.assert(
      fc.property(
        goals.chain((goal) => fc.tuple(plantFor(goal, settings), plantFor(goal, settings)).map(([before, after]) => ({ goal, before: before.plant, after: after.plant }))),
        ({ goal, before, after }) => {
          const { measured } = simulate(goal, (run) => (run < 60 ? before : after), 60 + recoverRuns + 30, undefined, undefined, settings);
          expect(Math.abs((measured[59] as number) - goal)).toBeLessThan(0.01);
          // 1.6·maxOffset apart at most, ≤ maxStep a step and a geometric approach after that.
          for (const m of measured.slice(60 + recoverRuns)) expect(Math.abs(m - goal)).toBeLessThan(0.01);
        },
      ),
    );
  });

  it('anti-wind-up: never raises the target after a run that selected almost every candidate, and still lowers it', () => {
    fc.assert(
      fc.property(goals, fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1_000, max: 10_000 }), (goal, measured, share, evidence) => {
        // A target as runs record it (four decimals), so that a step of 0 leaves it where it was.
        const applied = Math.round(goal * 1e4) / 1e4;
        const next = nextTarget(goal, { applied, measured, evidence, selectedShare: share }, settings);
        if (share >= settings.antiWindupShare) expect(next).toBeLessThanOrEqual(applied);
        // Over-covered by 5 points with at least 1 000 users behind it: the target falls, whatever the share.
        if (measured > goal + 0.05) expect(next).toBeLessThan(applied);
      }),
    );
  });
});

describe('the feedback controller (src/planner/feedback.ts)', () => {
  it('leaves alone what it does not hold, and starts each window at the goal', () => {
    const pooled = addScores(emptyHistogram(), [0.9, 0.5, 0.1]);
    for (const text of ['coverage:0.8,fixed', 'waste:0.5,fixed', 'budget:10', 'threshold:0.2', 'recent:3', 'all', 'none', 'cost:4']) {
      const policy = parsePolicy(text);
      expect(heldPolicy(policy, { policy, measured: 0.1, evidence: 1_000 }, pooled)).toEqual(policy);
    }
    // No earlier run: the goal, as a per-window share.
    expect(heldPolicy(parsePolicy('coverage:0.8'), undefined, undefined)).toEqual({ kind: 'coverage', target: 0.8 });
    // Under-covered: the target rises; over-wasted: the waste bound falls (applied as thresholds on the pool).
    const under = heldPolicy(parsePolicy('coverage:0.8'), { policy: { kind: 'coverage', target: 0.8 }, measured: 0.7, evidence: 1_000 }, pooled);
    expect(under.kind === 'threshold' && under.held?.kind === 'coverage' && under.held.target).toBeGreaterThan(0.8);
    const over = heldPolicy(parsePolicy('waste:0.5'), { policy: { kind: 'threshold', p: 0.3, held: { kind: 'waste', target: 0.5 } }, measured: 0.6, evidence: 1_000 }, pooled);
    expect(over.kind === 'threshold' && over.held?.kind === 'waste' && over.held.target).toBeLessThan(0.5);
    // A last run of another kind (the operator switched policies) does not count.
    const switched = heldPolicy(parsePolicy('coverage:0.8'), { policy: { kind: 'waste', max: 0.3 } as Policy, measured: 0.1, evidence: 1_000 }, undefined);
    expect(switched).toEqual({ kind: 'coverage', target: 0.8 });
    // The recorded form reads back as it was applied.
    expect(parsePolicy(formatPolicy(under))).toEqual(under);
  });

  it('createController: the held target, applied as one threshold on the pooled scores of the windows before', () => {
    const { gain, evidenceHalf } = DEFAULT_FEEDBACK;
    const coverage = createController(parsePolicy('coverage:0.8'));
    expect(coverage.policy()).toEqual({ kind: 'coverage', target: 0.8 });
    // Ten users of p 0.1 … 1.0 (Σp 5.5), coverage measured 0.6 of 100 active known users.
    const scores = [1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1];
    coverage.observe({ selected: 6, hits: 60, activeKnown: 100, scores });
    const target = nextTarget(0.8, { applied: 0.8, measured: 0.6, evidence: 100 });
    expect(target).toBeCloseTo(0.8 + Math.min(DEFAULT_FEEDBACK.maxStep, gain * (100 / (100 + evidenceHalf)) * 0.2), 4);
    expect(target).toBeGreaterThan(0.8);
    // Without the users' logins the pool's Σp stands for them.
    const raised = coverage.policy();
    expect(raised).toEqual({ kind: 'threshold', p: thresholdFor('coverage', addScores(emptyHistogram(), scores), target), held: { kind: 'coverage', target } });
    // The smallest top of the scores whose Σp reaches target·5.5 = 4.44 (target 0.808) ends at p = 0.5 (Σp 4.5): θ is at most 0.5 and above 0.4.
    expect(raised.kind === 'threshold' && raised.p).toBeLessThanOrEqual(0.5);
    expect(raised.kind === 'threshold' && raised.p).toBeGreaterThan(0.4);
    // Waste: 40% < 50%, the bound may rise by gain·w·0.1.
    const waste = createController(parsePolicy('waste:0.5'));
    waste.observe({ selected: 100, hits: 60, activeKnown: 1_000, scores, candidates: 1_000 });
    const relaxed = waste.policy();
    expect(relaxed.kind === 'threshold' && relaxed.held?.target).toBeCloseTo(0.5 + gain * (100 / (100 + evidenceHalf)) * 0.1, 3);
  });

  it('thresholdFor: weighted scores pool as the same scores repeated; the threshold selects the prefix that reaches the target', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ p: fc.double({ min: 0.0001, max: 0.9999, noNaN: true }), w: fc.integer({ min: 1, max: 5 }) }), { minLength: 1, maxLength: 40 }),
        fc.double({ min: 0.05, max: 0.95, noNaN: true }),
        (rows, x) => {
          const weighted = addScores(emptyHistogram(), rows.map((r) => r.p), rows.map((r) => r.w));
          const repeated = addScores(emptyHistogram(), rows.flatMap((r) => Array<number>(r.w).fill(r.p)));
          let differences = 0;
          for (let b = 0; b < weighted.count.length; b++) {
            if (weighted.count[b] !== repeated.count[b] || Math.abs((weighted.sum[b] as number) - (repeated.sum[b] as number)) > 1e-9) differences++;
          }
          expect(differences).toBe(0);
          // Coverage: the users at or above θ hold at least x of Σp; one bin higher, less.
          const theta = thresholdFor('coverage', weighted, x) as number;
          const all = rows.flatMap((r) => Array<number>(r.w).fill(r.p));
          const total = all.reduce((a, b) => a + b, 0);
          // At or above θ, as the planner selects (policy.ts): θ is rounded down to six digits, which
          // only adds users; a margin above θ dropped a score just over its bin's edge (p 0.9995651).
          const above = all.filter((p) => p >= theta).reduce((a, b) => a + b, 0);
          expect(above).toBeGreaterThanOrEqual(x * total - 1e-6);
        },
      ),
    );
  });

  it('thresholdFor on outcomes: the users at or above θ hold x of the pooled logins, the users of the next bin up less; no login, no threshold', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ p: fc.double({ min: 0.0001, max: 0.9999, noNaN: true }), w: fc.integer({ min: 1, max: 5 }), y: fc.boolean() }), { minLength: 1, maxLength: 60 }),
        fc.double({ min: 0.05, max: 0.95, noNaN: true }),
        (rows, x) => {
          const histogram = addScores(emptyHistogram(), rows.map((r) => r.p), rows.map((r) => r.w), rows.map((r) => (r.y ? 1 : 0)));
          const logins = rows.reduce((a, r) => a + (r.y ? r.w : 0), 0);
          const theta = thresholdFor('coverage', histogram, x, 'outcomes');
          if (logins === 0) {
            expect(theta).toBeUndefined();
            return;
          }
          const above = (t: number) => rows.filter((r) => r.p >= t && r.y).reduce((a, r) => a + r.w, 0);
          expect(above(theta as number)).toBeGreaterThanOrEqual(x * logins - 1e-9);
          // One bin (0.01 in log-odds) higher, the users above hold less than x of the logins.
          const higher = 1 / (1 + Math.exp(-(Math.log((theta as number) / (1 - (theta as number))) + 0.0101)));
          if ((theta as number) > 0) expect(above(higher)).toBeLessThan(x * logins + 1e-9);
        },
      ),
      { seed: 14, numRuns: 300 },
    );
  });

  it('createController on outcomes: the threshold comes from who logged in, not from the scores\' Σp', () => {
    const controller = createController(parsePolicy('coverage:0.8'), { ...DEFAULT_FEEDBACK, gain: 0 });
    // The model is over-confident at the top: the users of p 1.0 … 0.6 never log in, those of 0.5 … 0.1 do.
    const scores = [1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1];
    const loggedIn = scores.map((p) => (p <= 0.5 ? 1 : 0));
    controller.observe({ selected: 6, hits: 1, activeKnown: 5, scores, loggedIn });
    const policy = controller.policy();
    // 0.8 of the 5 logins is 4: from the top, the users down to 0.2 (on Σp it would stop above 0.3).
    expect(policy).toEqual({ kind: 'threshold', p: thresholdFor('coverage', addScores(emptyHistogram(), scores, undefined, loggedIn), 0.8, 'outcomes'), held: { kind: 'coverage', target: 0.8 } });
    expect(policy.kind === 'threshold' && policy.p).toBeLessThanOrEqual(0.2);
    expect(policy.kind === 'threshold' && policy.p).toBeGreaterThan(0.1);
    // A pool without a login (a dead month) falls back to Σp.
    const dead = createController(parsePolicy('coverage:0.8'), { ...DEFAULT_FEEDBACK, gain: 0 });
    dead.observe({ selected: 6, hits: 0, activeKnown: 0, scores, loggedIn: scores.map(() => 0) });
    expect(dead.policy()).toEqual({ kind: 'threshold', p: thresholdFor('coverage', addScores(emptyHistogram(), scores), 0.8), held: { kind: 'coverage', target: 0.8 } });
  });

  it('anti-wind-up in the loop: a dead fortnight, where the threshold takes everyone, does not wind the target up', () => {
    const controller = createController(parsePolicy('coverage:0.8'));
    const scores = Array.from({ length: 1_000 }, (_v, i) => 0.001 + i / 2_000);
    // Every candidate selected, a third of the few active users covered (they were not known yet, say).
    for (let t = 0; t < 14; t++) controller.observe({ selected: 1_000, hits: 100, activeKnown: 300, scores, loggedIn: scores.map((_p, i) => (i % 10 === 0 ? 1 : 0)) });
    const policy = controller.policy();
    expect(policy.kind === 'threshold' && policy.held?.target).toBe(0.8);
    // The same fortnight with a threshold that left room: the target rises.
    const room = createController(parsePolicy('coverage:0.8'));
    for (let t = 0; t < 14; t++) room.observe({ selected: 300, hits: 100, activeKnown: 300, scores, loggedIn: scores.map((_p, i) => (i % 10 === 0 ? 1 : 0)) });
    const raised = room.policy();
    expect(raised.kind === 'threshold' && raised.held?.target).toBeGreaterThan(0.8);
  });
});

/**
 * The held target on synthetic days: each day's users have true probabilities q, the model reports
 * σ(logit q − bias) (miscalibrated by `bias`), days differ in size and activity (busy and quiet
 * days in a week); the measured coverage of a threshold is the true expected share of logins above it.
 */
describe.each([
  // recoverDays: the 28 pooled runs turn over, then the integral unwinds what it gathered meanwhile
  // (the shipped one slowly: a tenth of the error a day, from at most ±0.05 — 16 days more).
  { name: 'shipped: threshold from outcomes', settings: DEFAULT_FEEDBACK, recoverDays: 56 },
  { name: 'first held threshold: on Σp', settings: EXPECTED_FEEDBACK, recoverDays: 42 },
])('the held threshold on synthetic days (createController), $name', ({ settings, recoverDays }) => {
  const logit = (p: number) => Math.log(p / (1 - p));
  const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
  function day(seed: number, users: number, busy: number): number[] {
    let state = seed >>> 0 || 1;
    const uniform = () => ((state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0) / 2 ** 32);
    return Array.from({ length: users }, () => sigmoid(-4 + 5 * uniform() ** 2 + busy));
  }
  function run(goal: number, days: number, plant: (t: number) => { q: number[]; bias: number }, overrides: Partial<FeedbackSettings> = {}) {
    const controller = createController({ kind: 'coverage', target: goal }, { ...settings, ...overrides });
    const measured: number[] = [];
    const policies: Policy[] = [];
    const selectedCounts: number[] = [];
    for (let t = 0; t < days; t++) {
      const { q, bias } = plant(t);
      // Ranked once (selectUsers' own sort of a ranked array is linear): the controller observes the scores in that order.
      const users = q.map((v, i) => ({ userId: String(i).padStart(6, '0'), p: sigmoid(logit(v) - bias), q: v, lastLoginAt: 0 })).sort(byPropensity);
      const policy = controller.policy();
      const { selected } = selectUsers(users, policy, { windowStart: 0, windowMs: 1 });
      const total = q.reduce((a, b) => a + b, 0);
      const m = selected.reduce((a, u) => a + u.q, 0) / total;
      measured.push(m);
      policies.push(policy);
      selectedCounts.push(selected.length);
      // Expected outcomes (no sampling noise): hits = Σq of the selected, of Σq active; each user's login is q.
      controller.observe({ selected: selected.length, hits: m * 10_000, activeKnown: 10_000, scores: users.map((u) => u.p), loggedIn: users.map((u) => u.q) });
    }
    return { measured, policies, selectedCounts };
  }
  const goalsMid = fc.double({ min: 0.5, max: 0.9, noNaN: true });
  const biases = fc.double({ min: -0.7, max: 0.7, noNaN: true });

  it('settles on a stationary log whose days differ: weekly coverage approaches the goal from one side and stays within a point', () => {
    fc.assert(
      fc.property(goalsMid, biases, fc.integer({ min: 1, max: 1000 }), (goal, bias, seed) => {
        const week = Array.from({ length: 7 }, (_v, d) => day(seed + d, 400 + 80 * d, d % 3 === 0 ? 0.4 : 0));
        const { measured } = run(goal, 140, (t) => ({ q: week[t % 7] as number[], bias }));
        const weekly = Array.from({ length: 20 }, (_v, w) => measured.slice(7 * w, 7 * w + 7).reduce((a, b) => a + b, 0) / 7);
        // From the fifth week (the pool holds four weeks), within a point of the goal, and staying there.
        for (const m of weekly.slice(5)) expect(Math.abs(m - goal)).toBeLessThan(0.01);
      }),
      { numRuns: 15 },
    );
  }, 240_000);

  it('holds one threshold across days: on goal, a busy day selects more users than a quiet one', () => {
    const quiet = day(11, 800, 0);
    const busy = day(11, 800, 0.8);
    const { policies, selectedCounts } = run(0.8, 70, (t) => ({ q: t % 2 === 0 ? quiet : busy, bias: 0 }));
    const late = policies.slice(56).map((policy) => (policy.kind === 'threshold' ? policy.p : NaN));
    // The threshold barely moves between a busy and a quiet day …
    expect(Math.max(...late) - Math.min(...late)).toBeLessThan(0.02);
    // … so the busy days select more.
    const busyCount = selectedCounts.slice(56).filter((_n, i) => (56 + i) % 2 === 1);
    const quietCount = selectedCounts.slice(56).filter((_n, i) => (56 + i) % 2 === 0);
    expect(Math.min(...busyCount)).toBeGreaterThan(Math.max(...quietCount));
  });

  it(`recovers after a shift in calibration: back within a point of the goal within ${recoverDays} daily runs`, () => {
    fc.assert(
      fc.property(goalsMid, biases, biases, fc.integer({ min: 1, max: 1000 }), (goal, before, after, seed) => {
        // 4 000 users: the threshold moves in bins of 0.01 in log-odds, and among 800 a few users
        // with near-equal scores can fill one bin worth more than a point of coverage (seed 173,
        // goal 0.5228: 116 or 120 users selected, 51.3% or 52.5%), so no threshold could be within
        // a point and the test would measure the sample's granularity, not the controller.
        const q = day(seed, 4_000, 0);
        const { measured } = run(goal, 60 + recoverDays + 20, (t) => ({ q, bias: t < 60 ? before : after }));
        expect(Math.abs((measured[59] as number) - goal)).toBeLessThan(0.01);
        // Back within a point once the 28 pooled runs hold the new calibration and the target has
        // settled. (The first controller at 30 days: a shift of 1.27 in log-odds, goal 0.5, seed 310,
        // was still 1.02 points over, the pool still holding pre-shift scores while the target wound
        // down. The shipped one at 42 days: a shift of −0.46, goal 0.5, seed 906, 1.0008 points: the
        // pool had turned over, the slow integral not yet unwound.)
        for (const m of measured.slice(60 + recoverDays)) expect(Math.abs(m - goal)).toBeLessThan(0.01);
      }),
      { numRuns: 15, examples: [[0.5, 0, -0.46439308700939624, 906]] },
    );
  }, 240_000);

  it.runIf(settings.basis === 'outcomes')('needs no calibration: without the integral, a miscalibrated model is on goal from the second day, and back on it once the pool has turned over after a shift', () => {
    fc.assert(
      fc.property(goalsMid, biases, biases, fc.integer({ min: 1, max: 1000 }), (goal, before, after, seed) => {
        const q = day(seed, 4_000, 0);
        const { measured } = run(goal, 100, (t) => ({ q, bias: t < 40 ? before : after }), { gain: 0 });
        for (const m of measured.slice(1, 40)) expect(Math.abs(m - goal)).toBeLessThan(0.01);
        for (const m of measured.slice(40 + settings.poolRuns)) expect(Math.abs(m - goal)).toBeLessThan(0.01);
      }),
      { numRuns: 15 },
    );
  }, 240_000);
});

