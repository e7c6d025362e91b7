import { describe, expect, it } from 'vitest';
import { addScores, binOf, createController, DEFAULT_FEEDBACK, emptyHistogram, poolOnScale, remapHistogram, scaleMap, thresholdFor, type ScoreHistogram } from '../src/planner/feedback.ts';
import { scaleMapsOnDays } from '../src/planner/score-histogram.ts';
import type { Policy } from '../src/planner/policy.ts';
import { createRandom } from '../src/replay/random.ts';

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const logit = (p: number) => Math.log(p / (1 - p));


/**
 * A population of `n` users with a latent log-odds each; model "a" scores them `shift` lower in
 * log-odds than model "b" (a retraining that moved the intercept), and each logs in with b's
 * probability (b is calibrated, a is not).
 */
function population(n: number, shift: number, seed: number) {
  const draw = createRandom(seed);
  const latent = Float64Array.from({ length: n }, () => -4 + 5 * draw());
  const b = Float64Array.from(latent, (z) => sigmoid(z));
  const a = Float64Array.from(latent, (z) => sigmoid(z - shift));
  const loggedIn = Uint8Array.from(b, (p) => (draw() < p ? 1 : 0));
  return { a, b, loggedIn };
}

function threshold(histogram: ScoreHistogram, target = 0.8): number {
  return thresholdFor('coverage', histogram, target, 'outcomes') as number;
}

describe('scaleMap: earlier models\' scores onto the serving model\'s scale', () => {
  it('is the identity for the same scores', () => {
    const { b } = population(2_000, 0, 1);
    const map = scaleMap(b, b) as Int32Array;
    for (const p of b) expect(map[binOf(p)]).toBe(binOf(p));
  });

  it('undoes a shift of the log-odds (one bin is 0.01), also beyond the users it saw', () => {
    const { a, b } = population(5_000, 1.5, 2);
    const map = scaleMap(a, b) as Int32Array;
    for (const p of [0.01, 0.05, 0.2, 0.5]) {
      const expected = binOf(sigmoid(logit(p) + 1.5));
      expect(Math.abs((map[binOf(p)] as number) - expected)).toBeLessThanOrEqual(3);
    }
    // Far outside the sample's scores (a scores below 0.003): shifted by the same offset.
    expect(Math.abs((map[binOf(1e-5)] as number) - binOf(sigmoid(logit(1e-5) + 1.5)))).toBeLessThanOrEqual(3);
    for (let x = 1; x < map.length; x++) expect(map[x]).toBeGreaterThanOrEqual(map[x - 1] as number);
  });

  it('a remapped pool gives the threshold the serving model\'s own scores would give', () => {
    const { a, b, loggedIn } = population(20_000, 1, 3);
    const asA = addScores(emptyHistogram(), a, undefined, loggedIn);
    const asB = addScores(emptyHistogram(), b, undefined, loggedIn);
    const map = scaleMap(a, b) as Int32Array;
    const remapped = remapHistogram(asA, map);
    expect(Math.abs(binOf(threshold(remapped)) - binOf(threshold(asB)))).toBeLessThanOrEqual(3);
    // As recorded, the threshold is a whole log-odds lower: on b's scores it would select far more users.
    expect(binOf(threshold(asB)) - binOf(threshold(asA))).toBeGreaterThan(80);
    // Users and logins are moved, not lost.
    const total = (h: ScoreHistogram, of: 'count' | 'logins') => h[of].reduce((s, x) => s + x, 0);
    expect(total(remapped, 'count')).toBe(total(asA, 'count'));
    expect(total(remapped, 'logins')).toBe(total(asA, 'logins'));
    // A model without a map pools as recorded.
    expect(poolOnScale(new Map([['b', asB]]), new Map([['a', map]]))).toEqual(asB);
  });
});

describe('the controller after a retraining that changes the scale', () => {
  const goal: Policy = { kind: 'coverage', target: 0.8 };

  /** 28 windows scored by model a, then the serving model is b: the threshold applied at once. */
  function afterRetraining(shift: number, settings = DEFAULT_FEEDBACK) {
    const controller = createController(goal, { ...settings, gain: 0 });
    for (let d = 0; d < 28; d++) {
      const { a, loggedIn } = population(1_000, shift, 100 + d);
      controller.policy();
      controller.observe({ selected: 0, hits: 0, activeKnown: 0, scores: a, loggedIn, model: 'a' });
    }
    const today = population(1_000, shift, 999);
    const maps = new Map([['a', scaleMap(today.a, today.b) as Int32Array]]);
    return { applied: controller.policy(maps), pooled: controller.pooledModels() };
  }

  it('the applied threshold follows the new model\'s scale from its first window', () => {
    // What b itself would have learnt from the same 28 windows.
    const own = createController(goal, { ...DEFAULT_FEEDBACK, gain: 0 });
    for (let d = 0; d < 28; d++) {
      const { b, loggedIn } = population(1_000, 1, 100 + d);
      own.policy();
      own.observe({ selected: 0, hits: 0, activeKnown: 0, scores: b, loggedIn, model: 'b' });
    }
    const reference = own.policy();
    const { applied, pooled } = afterRetraining(1);
    expect(pooled).toEqual(['a']);
    expect(applied.kind).toBe('threshold');
    expect(reference.kind).toBe('threshold');
    const p = applied.kind === 'threshold' ? applied.p : NaN;
    const q = reference.kind === 'threshold' ? reference.p : NaN;
    // Within a few bins of b's own threshold (the map is learnt on one day's 1 000 users).
    expect(Math.abs(logit(p) - logit(q))).toBeLessThan(0.1);
    // As recorded (rescale off) it stays on a's scale, a whole log-odds lower.
    const { applied: stale } = afterRetraining(1, { ...DEFAULT_FEEDBACK, rescale: false });
    const s = stale.kind === 'threshold' ? stale.p : NaN;
    expect(logit(q) - logit(s)).toBeGreaterThan(0.8);
  });

  it('without a change of scale the maps change nothing', () => {
    const { applied } = afterRetraining(0);
    const { applied: recorded } = afterRetraining(0, { ...DEFAULT_FEEDBACK, rescale: false });
    const p = applied.kind === 'threshold' ? applied.p : NaN;
    const q = recorded.kind === 'threshold' ? recorded.p : NaN;
    expect(Math.abs(binOf(p) - binOf(q))).toBeLessThanOrEqual(1);
  });
});

describe('the maps are estimated on the pooled days, not on the next run\'s users', () => {
  const goal: Policy = { kind: 'coverage', target: 0.8 };
  /**
   * Models a and b agree on ordinary days (same scores); on a dead day (the population's activity
   * collapsed) b, trained later, scores everyone 2 log-odds lower than a does. The pool is 28
   * ordinary days scored by a; today is a dead day and b serves.
   */
  function pooledThenDead() {
    const controller = createController(goal, { ...DEFAULT_FEEDBACK, gain: 0 });
    const recorded = createController(goal, { ...DEFAULT_FEEDBACK, gain: 0, rescale: false });
    const days: { model: string; from: Float64Array; to: Float64Array }[] = [];
    for (let d = 0; d < 28; d++) {
      const { b, loggedIn } = population(1_000, 0, 200 + d);
      for (const c of [controller, recorded]) {
        c.policy();
        c.observe({ selected: 0, hits: 0, activeKnown: 0, scores: b, loggedIn, model: 'a' });
      }
      days.push({ model: 'a', from: b, to: b });
    }
    const a = population(1_000, 0, 999).b;
    const b = Float64Array.from(a, (p) => sigmoid(logit(p) - 2));
    return { controller, recorded, days, a, b };
  }

  it('scaleMapsOnDays: the map of the days the pooled scores were recorded on (identity here), where today\'s users give a shift', () => {
    const { days, a, b } = pooledThenDead();
    const onDays = scaleMapsOnDays(days).get('a') as Int32Array;
    const today = scaleMap(a, b) as Int32Array;
    for (const p of [0.05, 0.2, 0.5]) {
      expect(Math.abs((onDays[binOf(p)] as number) - binOf(p))).toBeLessThanOrEqual(1);
      // On the dead day's users the same two models look 2 log-odds apart (200 bins).
      expect(binOf(p) - (today[binOf(p)] as number)).toBeGreaterThan(180);
    }
  });

  it('the held threshold stays where the pooled days put it, and the dead day selects few users', () => {
    const { controller, recorded, days, a, b } = pooledThenDead();
    const onDays = controller.policy(scaleMapsOnDays(days));
    const onToday = controller.policy(new Map([['a', scaleMap(a, b) as Int32Array]]));
    const p = onDays.kind === 'threshold' ? onDays.p : NaN;
    const q = onToday.kind === 'threshold' ? onToday.p : NaN;
    const r = recorded.policy();
    expect(Math.abs(binOf(p) - binOf(r.kind === 'threshold' ? r.p : NaN))).toBeLessThanOrEqual(1);
    const selected = (threshold: number) => b.filter((s) => s >= threshold).length;
    // The pooled days' threshold on b's dead-day scores selects a fraction of what today's map does.
    expect(selected(p)).toBeLessThan(selected(q) / 3);
  });
});
