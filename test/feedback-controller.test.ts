import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createController, DEFAULT_FEEDBACK, heldPolicy, nextTarget } from '../src/planner/feedback.ts';
import { parsePolicy, type Policy } from '../src/planner/policy.ts';

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
function simulate(goal: number, plants: (run: number) => Plant, runs: number, noise: (run: number) => number = () => 0, evidence = 10_000) {
  const applied: number[] = [];
  const measured: number[] = [];
  let last: { applied: number; measured: number; evidence: number } | undefined;
  for (let run = 0; run < runs; run++) {
    const target = nextTarget(goal, last);
    const m = measure(plants(run), target, noise(run));
    applied.push(target);
    measured.push(m);
    last = { applied: target, measured: m, evidence };
  }
  return { applied, measured };
}

/** Plants whose fixed point (bias + slope·x = goal) lies well inside the controller's bounds. */
const plantFor = (goal: number) =>
  fc.record({ slope: fc.double({ min: 0.4, max: 2, noNaN: true }), offset: fc.double({ min: -0.2, max: 0.2, noNaN: true }) }).map(({ slope, offset }) => {
    const fixedPoint = Math.min(0.99, Math.max(0.01, goal + offset));
    return { plant: { slope, bias: goal - slope * fixedPoint }, fixedPoint };
  });

const goals = fc.double({ min: 0.3, max: 0.9, noNaN: true });

describe('the feedback controller (src/planner/feedback.ts)', () => {
  it('takes bounded steps and stays within the goal ± maxOffset, whatever it measures', () => {
    fc.assert(
      fc.property(goals, fc.array(fc.record({ measured: fc.double({ min: 0, max: 1, noNaN: true }), evidence: fc.integer({ min: 0, max: 10_000 }) }), { maxLength: 60 }), (goal, outcomes) => {
        let applied = nextTarget(goal, undefined);
        expect(applied).toBe(goal);
        for (const outcome of outcomes) {
          const next = nextTarget(goal, { applied, ...outcome });
          expect(Math.abs(next - applied)).toBeLessThanOrEqual(DEFAULT_FEEDBACK.maxStep + 1e-4);
          expect(next).toBeGreaterThanOrEqual(Math.max(0, goal - DEFAULT_FEEDBACK.maxOffset) - 1e-4);
          expect(next).toBeLessThanOrEqual(Math.min(1, goal + DEFAULT_FEEDBACK.maxOffset) + 1e-4);
          if (outcome.evidence === 0) expect(Math.abs(next - applied)).toBeLessThanOrEqual(1e-4);
          applied = next;
        }
      }),
    );
  });

  it('does not oscillate on a stationary window: the error keeps its sign, shrinks, and vanishes', () => {
    fc.assert(
      fc.property(goals.chain((goal) => plantFor(goal).map((p) => ({ goal, ...p }))), ({ goal, plant }) => {
        const { measured } = simulate(goal, () => plant, 80);
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
      fc.property(goals.chain((goal) => plantFor(goal).map((p) => ({ goal, ...p }))), fc.integer({ min: 1, max: 2 ** 30 }), ({ goal, plant, fixedPoint }, seed) => {
        let state = seed;
        const uniform = () => ((state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0) / 2 ** 32);
        const sd = 0.05;
        const noise = () => sd * Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
        const { applied, measured } = simulate(goal, () => plant, 400, noise, 100);
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

  it('recovers after a shift: back within a point of the goal in a few weeks of daily runs', () => {
    fc.assert(
      fc.property(
        goals.chain((goal) => fc.tuple(plantFor(goal), plantFor(goal)).map(([before, after]) => ({ goal, before: before.plant, after: after.plant }))),
        ({ goal, before, after }) => {
          const { measured } = simulate(goal, (run) => (run < 60 ? before : after), 120);
          expect(Math.abs((measured[59] as number) - goal)).toBeLessThan(0.01);
          // 0.4 apart at most, ≤ 0.05 a step and a geometric approach after that.
          for (const m of measured.slice(60 + 30)) expect(Math.abs(m - goal)).toBeLessThan(0.01);
        },
      ),
    );
  });

  it('leaves alone what it does not hold, and starts each window at the goal', () => {
    for (const text of ['coverage:0.8,fixed', 'waste:0.5,fixed', 'budget:10', 'threshold:0.2', 'recent:3', 'all', 'none', 'cost:4']) {
      const policy = parsePolicy(text);
      expect(heldPolicy(policy, { policy, measured: 0.1, evidence: 1_000 })).toEqual(policy);
    }
    expect(heldPolicy(parsePolicy('coverage:0.8'), undefined)).toEqual({ kind: 'coverage', target: 0.8 });
    // Under-covered: the applied target rises; over-wasted: the waste bound falls.
    const under = heldPolicy(parsePolicy('coverage:0.8'), { policy: { kind: 'coverage', target: 0.8 }, measured: 0.7, evidence: 1_000 });
    expect(under.kind === 'coverage' && under.target).toBeGreaterThan(0.8);
    const over = heldPolicy(parsePolicy('waste:0.5'), { policy: { kind: 'waste', max: 0.5 }, measured: 0.6, evidence: 1_000 });
    expect(over.kind === 'waste' && over.max).toBeLessThan(0.5);
    // A last run of another kind (the operator switched policies) does not count.
    const switched = heldPolicy(parsePolicy('coverage:0.8'), { policy: { kind: 'waste', max: 0.3 } as Policy, measured: 0.1, evidence: 1_000 });
    expect(switched).toEqual({ kind: 'coverage', target: 0.8 });
  });

  it('createController: coverage from hits over active known users, waste from misses over the selected', () => {
    const coverage = createController(parsePolicy('coverage:0.8'));
    expect(coverage.policy()).toEqual({ kind: 'coverage', target: 0.8 });
    coverage.observe({ selected: 100, hits: 60, activeKnown: 100 });
    const raised = coverage.policy();
    const { gain, evidenceHalf } = DEFAULT_FEEDBACK;
    expect(raised.kind === 'coverage' && raised.target).toBeCloseTo(0.8 + Math.min(0.05, gain * (100 / (100 + evidenceHalf)) * 0.2), 4);
    const waste = createController(parsePolicy('waste:0.5'));
    waste.observe({ selected: 100, hits: 60, activeKnown: 1_000 });
    const relaxed = waste.policy();
    // Waste 40% < 50%: the bound may rise by gain·w·0.1.
    expect(relaxed.kind === 'waste' && relaxed.max).toBeCloseTo(0.5 + gain * (100 / (100 + evidenceHalf)) * 0.1, 3);
  });
});
