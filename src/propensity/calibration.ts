import { fitLogistic, sigmoid } from './logistic.ts';

/**
 * Platt scaling: p = σ(a·s + b) on the model's raw log-odds s, fitted on windows the model was
 * not trained on (the latest slice of the training period), so that a drift between the fitting
 * windows and now is corrected. It is strictly increasing (a > 0 in practice), so it never
 * changes the ranking: average precision and ROC AUC are those of the raw scores.
 */
export interface PlattCalibration {
  kind: 'platt';
  a: number;
  b: number;
}

export function fitPlatt(logits: ArrayLike<number>, labels: Uint8Array, n = labels.length): PlattCalibration {
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) x[i] = logits[i] as number;
  // One feature, barely regularised; fitLogistic standardises, so map back to the raw scale.
  const { model } = fitLogistic(x, labels, n, 1, { l2: 1e-6 });
  const slope = (model.weights[0] as number) / (model.scales[0] as number);
  const intercept = model.intercept - slope * (model.means[0] as number);
  return { kind: 'platt', a: slope, b: intercept };
}

export function applyCalibration(calibration: PlattCalibration, logit: number): number {
  return sigmoid(calibration.a * logit + calibration.b);
}

/** One row of a reliability table: a tenth of the pairs, by predicted probability. */
export interface ReliabilityBin {
  decile: number;
  count: number;
  minPredicted: number;
  maxPredicted: number;
  meanPredicted: number;
  observedRate: number;
}

/**
 * Reliability table by decile of predicted probability: the pairs sorted by p and cut into ten
 * groups of (nearly) equal size; a calibrated model has meanPredicted ≈ observedRate in each.
 */
export function reliabilityTable(probabilities: ArrayLike<number>, labels: ArrayLike<number>, n = probabilities.length, bins = 10): ReliabilityBin[] {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => (probabilities[a] as number) - (probabilities[b] as number));
  const table: ReliabilityBin[] = [];
  for (let bin = 0; bin < bins; bin++) {
    const from = Math.floor((bin * n) / bins);
    const to = Math.floor(((bin + 1) * n) / bins);
    let sumP = 0;
    let positives = 0;
    for (let k = from; k < to; k++) {
      const i = order[k] as number;
      sumP += probabilities[i] as number;
      positives += labels[i] as number;
    }
    const count = to - from;
    table.push({
      decile: bin + 1,
      count,
      minPredicted: count > 0 ? (probabilities[order[from] as number] as number) : Number.NaN,
      maxPredicted: count > 0 ? (probabilities[order[to - 1] as number] as number) : Number.NaN,
      meanPredicted: count > 0 ? sumP / count : Number.NaN,
      observedRate: count > 0 ? positives / count : Number.NaN,
    });
  }
  return table;
}

/** Expected calibration error: Σ |mean predicted − observed| weighted by bin size. */
export function expectedCalibrationError(table: readonly ReliabilityBin[]): number {
  let total = 0;
  let error = 0;
  for (const bin of table) {
    if (bin.count === 0) continue;
    total += bin.count;
    error += bin.count * Math.abs(bin.meanPredicted - bin.observedRate);
  }
  return total > 0 ? error / total : Number.NaN;
}
