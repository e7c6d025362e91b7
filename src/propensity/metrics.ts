/**
 * Ranking metrics over all scored (user, window) pairs, with exact tie handling: pairs with the
 * same score are one threshold step, selected together or not at all.
 */

/**
 * The precision–recall staircase of a scoring: for each distinct score, from the highest down,
 * the cumulative positives and negatives at or above it.
 */
export interface ThresholdCurve {
  /** Distinct scores, descending. */
  thresholds: Float64Array;
  /** Positives with score ≥ thresholds[i]. */
  truePositives: Float64Array;
  /** Negatives with score ≥ thresholds[i]. */
  falsePositives: Float64Array;
  positives: number;
  negatives: number;
}

/** Builds the curve of `scores` (any order) against 0/1 `labels`; O(n log n), typed arrays only. */
export function thresholdCurve(scores: ArrayLike<number>, labels: ArrayLike<number>, n = scores.length): ThresholdCurve {
  let positives = 0;
  for (let i = 0; i < n; i++) if ((labels[i] as number) > 0) positives++;
  const negatives = n - positives;
  const pos = new Float64Array(positives);
  const neg = new Float64Array(negatives);
  let p = 0;
  let q = 0;
  for (let i = 0; i < n; i++) {
    const s = scores[i] as number;
    if (Number.isNaN(s)) throw new RangeError('thresholdCurve: a score is NaN');
    if ((labels[i] as number) > 0) pos[p++] = s;
    else neg[q++] = s;
  }
  pos.sort();
  neg.sort();
  const thresholds: number[] = [];
  const tps: number[] = [];
  const fps: number[] = [];
  // Walk both sorted arrays from the top, one distinct score at a time.
  let i = positives - 1;
  let j = negatives - 1;
  let tp = 0;
  let fp = 0;
  while (i >= 0 || j >= 0) {
    const top = Math.max(i >= 0 ? (pos[i] as number) : Number.NEGATIVE_INFINITY, j >= 0 ? (neg[j] as number) : Number.NEGATIVE_INFINITY);
    while (i >= 0 && pos[i] === top) {
      tp++;
      i--;
    }
    while (j >= 0 && neg[j] === top) {
      fp++;
      j--;
    }
    thresholds.push(top);
    tps.push(tp);
    fps.push(fp);
  }
  return {
    thresholds: Float64Array.from(thresholds),
    truePositives: Float64Array.from(tps),
    falsePositives: Float64Array.from(fps),
    positives,
    negatives,
  };
}

/**
 * Average precision: Σ over thresholds of (recall step) × (precision at that threshold), the
 * step-wise area under the precision–recall curve (scikit-learn's definition). NaN without
 * positives.
 */
export function averagePrecision(curve: ThresholdCurve): number {
  if (curve.positives === 0) return Number.NaN;
  let ap = 0;
  let previousTp = 0;
  for (let k = 0; k < curve.thresholds.length; k++) {
    const tp = curve.truePositives[k] as number;
    const fp = curve.falsePositives[k] as number;
    if (tp > previousTp) ap += ((tp - previousTp) / curve.positives) * (tp / (tp + fp));
    previousTp = tp;
  }
  return ap;
}

/** ROC AUC: P(score of a positive > score of a negative), ties counting one half. */
export function rocAuc(curve: ThresholdCurve): number {
  if (curve.positives === 0 || curve.negatives === 0) return Number.NaN;
  let area = 0;
  let previousTp = 0;
  let previousFp = 0;
  for (let k = 0; k < curve.thresholds.length; k++) {
    const tp = curve.truePositives[k] as number;
    const fp = curve.falsePositives[k] as number;
    const newNegatives = fp - previousFp;
    // Each new negative is outranked by the positives above, tied with this step's positives.
    area += newNegatives * (previousTp + 0.5 * (tp - previousTp));
    previousTp = tp;
    previousFp = fp;
  }
  return area / (curve.positives * curve.negatives);
}

export interface OperatingPoint {
  /** Select every pair with score ≥ threshold. */
  threshold: number;
  selected: number;
  hits: number;
  coverage: number;
  waste: number;
}

function pointAt(curve: ThresholdCurve, k: number): OperatingPoint {
  const tp = curve.truePositives[k] as number;
  const fp = curve.falsePositives[k] as number;
  return {
    threshold: curve.thresholds[k] as number,
    selected: tp + fp,
    hits: tp,
    coverage: curve.positives > 0 ? tp / curve.positives : 0,
    waste: tp + fp > 0 ? fp / (tp + fp) : 0,
  };
}

/**
 * The highest single score threshold whose selection covers at least `coverage` of the
 * positives (the fewest pairs that do), or undefined when no threshold does.
 */
export function pointAtCoverage(curve: ThresholdCurve, coverage: number): OperatingPoint | undefined {
  if (curve.positives === 0) return undefined;
  const need = coverage * curve.positives - 1e-9;
  for (let k = 0; k < curve.thresholds.length; k++) {
    if ((curve.truePositives[k] as number) >= need) return pointAt(curve, k);
  }
  return undefined;
}

/** Waste of the selection of `pointAtCoverage` (NaN when unreachable). */
export function wasteAtCoverage(curve: ThresholdCurve, coverage: number): number {
  return pointAtCoverage(curve, coverage)?.waste ?? Number.NaN;
}

/**
 * The largest coverage of any single threshold whose selection wastes at most `maxWaste`
 * (0 when none does). Waste is not monotone in the threshold, so every threshold is checked.
 */
export function pointAtWaste(curve: ThresholdCurve, maxWaste: number): OperatingPoint | undefined {
  let best: number | undefined;
  for (let k = 0; k < curve.thresholds.length; k++) {
    const tp = curve.truePositives[k] as number;
    const fp = curve.falsePositives[k] as number;
    if (fp <= maxWaste * (tp + fp) + 1e-9 && (best === undefined || tp > (curve.truePositives[best] as number))) best = k;
  }
  return best === undefined ? undefined : pointAt(curve, best);
}

export function coverageAtWaste(curve: ThresholdCurve, maxWaste: number): number {
  return pointAtWaste(curve, maxWaste)?.coverage ?? 0;
}

/**
 * The curve of weighted pairs: each pair counts `weights[i]` times (a row of a weighted sample
 * standing for that many users), so the positives, negatives and every step are sums of weights
 * and averagePrecision, rocAuc and the operating points estimate those of the whole population.
 */
export function weightedThresholdCurve(scores: ArrayLike<number>, labels: ArrayLike<number>, weights: ArrayLike<number>, n = scores.length): ThresholdCurve {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    if (Number.isNaN(scores[i] as number)) throw new RangeError('weightedThresholdCurve: a score is NaN');
    if (!((weights[i] as number) >= 0)) throw new RangeError('weightedThresholdCurve: a weight is negative or NaN');
    order[i] = i;
  }
  order.sort((a, b) => (scores[b] as number) - (scores[a] as number));
  const thresholds: number[] = [];
  const tps: number[] = [];
  const fps: number[] = [];
  let tp = 0;
  let fp = 0;
  for (let k = 0; k < n; ) {
    const top = scores[order[k] as number] as number;
    while (k < n && scores[order[k] as number] === top) {
      const i = order[k] as number;
      if ((labels[i] as number) > 0) tp += weights[i] as number;
      else fp += weights[i] as number;
      k++;
    }
    thresholds.push(top);
    tps.push(tp);
    fps.push(fp);
  }
  return {
    thresholds: Float64Array.from(thresholds),
    truePositives: Float64Array.from(tps),
    falsePositives: Float64Array.from(fps),
    positives: tp,
    negatives: fp,
  };
}
