import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyCalibration, expectedCalibrationError, fitPlatt, reliabilityTable } from '../src/propensity/calibration.ts';
import { fitLogistic, logisticLogit, sigmoid } from '../src/propensity/logistic.ts';
import { averagePrecision, coverageAtWaste, pointAtCoverage, rocAuc, thresholdCurve, wasteAtCoverage } from '../src/propensity/metrics.ts';

/** A seeded generator, so that the synthetic data sets are the same on every run. */
function random(seed: number): () => number {
  let state = seed;
  return () => (state = (state * 16_807) % 2_147_483_647) / 2_147_483_647;
}

function normal(next: () => number): number {
  return Math.sqrt(-2 * Math.log(next() + 1e-12)) * Math.cos(2 * Math.PI * next());
}

describe('ranking metrics with ties', () => {
  /*
   * scores 0.9 0.8 0.8 0.7 0.5, labels 1 0 1 1 0 (3 positives, 2 negatives).
   * Thresholds, descending: 0.9 → tp 1 fp 0; 0.8 → tp 2 fp 1 (the tie enters together);
   * 0.7 → tp 3 fp 1; 0.5 → tp 3 fp 2.
   * AP = Σ Δrecall × precision = ⅓·1 + ⅓·⅔ + ⅓·¾ = 29/36.
   * AUC: positive 0.9 beats both negatives (2), 0.8 ties one and beats one (1.5), 0.7 beats one
   * (1): 4.5 of 6 pairs = 0.75.
   */
  const scores = [0.9, 0.8, 0.8, 0.7, 0.5];
  const labels = [1, 0, 1, 1, 0];
  const curve = thresholdCurve(scores, labels);

  it('builds the threshold staircase', () => {
    expect(Array.from(curve.thresholds)).toEqual([0.9, 0.8, 0.7, 0.5]);
    expect(Array.from(curve.truePositives)).toEqual([1, 2, 3, 3]);
    expect(Array.from(curve.falsePositives)).toEqual([0, 1, 1, 2]);
  });

  it('average precision', () => {
    expect(averagePrecision(curve)).toBeCloseTo(29 / 36, 12);
  });

  it('ROC AUC counts a tie as one half', () => {
    expect(rocAuc(curve)).toBeCloseTo(0.75, 12);
  });

  it('all scores tied: AP is the base rate, AUC one half', () => {
    const tied = thresholdCurve([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]);
    expect(averagePrecision(tied)).toBeCloseTo(0.5, 12);
    expect(rocAuc(tied)).toBeCloseTo(0.5, 12);
  });

  it('waste at a coverage: the highest threshold that covers it, ties included', () => {
    // 50% coverage needs 1.5 positives: the 0.8 step (2 hits, 1 wasted).
    expect(wasteAtCoverage(curve, 0.5)).toBeCloseTo(1 / 3, 12);
    expect(pointAtCoverage(curve, 0.5)?.threshold).toBe(0.8);
    expect(wasteAtCoverage(curve, 1)).toBeCloseTo(0.25, 12);
    expect(wasteAtCoverage(curve, 1 / 3)).toBe(0);
  });

  it('coverage at a waste limit: the best threshold within it, even past a worse one', () => {
    // Steps: waste 0 (cov ⅓), ⅓ (cov ⅔), ¼ (cov 1), ⅖ (cov 1).
    expect(coverageAtWaste(curve, 0.3)).toBe(1);
    expect(coverageAtWaste(curve, 0.2)).toBeCloseTo(1 / 3, 12);
    expect(coverageAtWaste(thresholdCurve([0.9], [0]), 0.5)).toBe(0);
  });

  it('property: AUC equals the share of correctly ordered pairs, ties one half', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ s: fc.integer({ min: 0, max: 5 }), y: fc.boolean() }), { minLength: 2, maxLength: 30 }), (pairs) => {
        const pos = pairs.filter((p) => p.y).map((p) => p.s);
        const neg = pairs.filter((p) => !p.y).map((p) => p.s);
        fc.pre(pos.length > 0 && neg.length > 0);
        let wins = 0;
        for (const a of pos) for (const b of neg) wins += a > b ? 1 : a === b ? 0.5 : 0;
        const c = thresholdCurve(
          pairs.map((p) => p.s),
          pairs.map((p) => (p.y ? 1 : 0)),
        );
        expect(rocAuc(c)).toBeCloseTo(wins / (pos.length * neg.length), 12);
      }),
    );
  });
});

describe('logistic regression', () => {
  it('recovers known coefficients on synthetic data', () => {
    const next = random(7);
    const n = 40_000;
    const d = 3;
    const truth = { intercept: -1, weights: [1.5, -2, 0.5] };
    const x = new Float64Array(n * d);
    const y = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      let eta = truth.intercept;
      for (let j = 0; j < d; j++) {
        // Different means and scales per column: standardisation must be undone correctly.
        const v = normal(next) * (j + 1) + j * 3;
        x[i * d + j] = v;
        eta += (truth.weights[j] as number) * v;
      }
      y[i] = next() < sigmoid(eta) ? 1 : 0;
    }
    const { model, info } = fitLogistic(x, y, n, d, { l2: 1e-6 });
    expect(info.converged).toBe(true);
    // Back on the raw scale: w_raw = w / scale, b_raw = b − Σ w_raw·mean.
    const raw = model.weights.map((w, j) => w / (model.scales[j] as number));
    const intercept = model.intercept - raw.reduce((sum, w, j) => sum + w * (model.means[j] as number), 0);
    raw.forEach((w, j) => expect(w).toBeCloseTo(truth.weights[j] as number, 1));
    expect(intercept).toBeCloseTo(truth.intercept, 1);
    // And it predicts with the same linear predictor.
    const row = [0.3, -0.2, 4];
    expect(logisticLogit(model, row)).toBeCloseTo(intercept + raw.reduce((sum, w, j) => sum + w * (row[j] as number), 0), 10);
  });

  it('the sampled Hessian reaches the same solution as the full one', () => {
    const next = random(11);
    const n = 20_000;
    const d = 4;
    const x = new Float32Array(n * d);
    const y = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      let eta = -2;
      for (let j = 0; j < d; j++) {
        const v = normal(next);
        x[i * d + j] = v;
        eta += (j - 1.5) * v;
      }
      y[i] = next() < sigmoid(eta) ? 1 : 0;
    }
    const full = fitLogistic(x, y, n, d, { hessianRows: n });
    const sampled = fitLogistic(x, y, n, d, { hessianRows: 1_000 });
    expect(sampled.info.converged).toBe(true);
    sampled.model.weights.forEach((w, j) => expect(w).toBeCloseTo(full.model.weights[j] as number, 4));
  });

  it('L2 shrinks the weights and keeps a constant column at zero', () => {
    const x = new Float64Array([0, 1, 1, 1, 2, 1, 3, 1, 4, 1, 5, 1]);
    const y = new Uint8Array([0, 0, 1, 0, 1, 1]);
    const weak = fitLogistic(x, y, 6, 2, { l2: 0.01 });
    const strong = fitLogistic(x, y, 6, 2, { l2: 100 });
    expect(Math.abs(strong.model.weights[0] as number)).toBeLessThan(Math.abs(weak.model.weights[0] as number));
    expect(weak.model.weights[1]).toBeCloseTo(0, 12);
  });
});

describe('calibration', () => {
  it('Platt scaling recovers a known distortion of the log-odds', () => {
    const next = random(3);
    const n = 30_000;
    const logits = new Float64Array(n);
    const labels = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const score = normal(next) * 2;
      logits[i] = score;
      // The true probability is σ(0.5·s − 1): the raw scores are over-confident and too high.
      labels[i] = next() < sigmoid(0.5 * score - 1) ? 1 : 0;
    }
    const platt = fitPlatt(logits, labels);
    expect(platt.a).toBeCloseTo(0.5, 1);
    expect(platt.b).toBeCloseTo(-1, 1);
    expect(applyCalibration(platt, 2)).toBeCloseTo(sigmoid(platt.a * 2 + platt.b), 12);
  });

  it('reliability table: ten equal groups by predicted probability', () => {
    // 20 predictions 0.025, 0.075, …, 0.975; the i-th group holds two, one of them a login.
    const p = Array.from({ length: 20 }, (_v, i) => 0.025 + 0.05 * i);
    const y = p.map((_v, i) => (i % 2 === 0 ? 1 : 0));
    const table = reliabilityTable(p, y);
    expect(table).toHaveLength(10);
    table.forEach((bin, i) => {
      expect(bin.decile).toBe(i + 1);
      expect(bin.count).toBe(2);
      expect(bin.minPredicted).toBeCloseTo(0.025 + 0.1 * i, 12);
      expect(bin.maxPredicted).toBeCloseTo(0.075 + 0.1 * i, 12);
      expect(bin.meanPredicted).toBeCloseTo(0.05 + 0.1 * i, 12);
      expect(bin.observedRate).toBe(0.5);
    });
    // |mean − observed| = 0.45, 0.35, …, 0.45 → average 0.25.
    expect(expectedCalibrationError(table)).toBeCloseTo(0.25, 12);
  });
});
