/**
 * L2-regularised logistic regression fitted by Newton's method (IRLS), written here rather than
 * taken from a package: the JavaScript ML libraries available either lack regularisation and
 * convergence control or allocate per row, and with a few dozen standardised features Newton
 * converges in under ten passes over the rows — one d×d system per pass, solved by Cholesky.
 * Rows live in one flat typed array (row-major), so half a million training rows need no
 * per-row objects.
 */

export interface LogisticOptions {
  /** L2 penalty λ on the standardised weights (the intercept is not penalised). Default 1. */
  l2?: number;
  /** Default 50. */
  maxIterations?: number;
  /** Stop when no standardised coefficient moves more than this. Default 1e-6. */
  tolerance?: number;
  /** Per-row weights (default 1). */
  sampleWeights?: Float32Array | Float64Array;
  /**
   * Rows used for the curvature (Hessian) of each Newton step; more rows are then sampled evenly.
   * The gradient and the step acceptance always use every row, so the solution is exact; only
   * the step direction is approximate. Default 100 000.
   */
  hessianRows?: number;
}

/** A fitted model: p = σ(intercept + Σ weights[j]·(x[j] − means[j]) / scales[j]). */
export interface LogisticModel {
  intercept: number;
  weights: number[];
  means: number[];
  scales: number[];
}

export interface LogisticFitInfo {
  iterations: number;
  converged: boolean;
  /** Mean negative log-likelihood on the training rows at the solution. */
  logLoss: number;
}

export function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

/** Standardisation of each column: mean and standard deviation (1 for a constant column). */
export function columnMoments(x: Float32Array | Float64Array, n: number, d: number): { means: number[]; scales: number[] } {
  const sum = new Float64Array(d);
  const sumSq = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    const row = i * d;
    for (let j = 0; j < d; j++) {
      const v = x[row + j] as number;
      sum[j] = (sum[j] as number) + v;
      sumSq[j] = (sumSq[j] as number) + v * v;
    }
  }
  const means: number[] = [];
  const scales: number[] = [];
  for (let j = 0; j < d; j++) {
    const mean = n > 0 ? (sum[j] as number) / n : 0;
    const variance = n > 0 ? (sumSq[j] as number) / n - mean * mean : 0;
    means.push(mean);
    scales.push(variance > 1e-12 ? Math.sqrt(variance) : 1);
  }
  return { means, scales };
}

/** Fits on `n` rows of `d` features (`x` row-major) with 0/1 labels `y`. */
export function fitLogistic(
  x: Float32Array | Float64Array,
  y: Uint8Array,
  n: number,
  d: number,
  options: LogisticOptions = {},
): { model: LogisticModel; info: LogisticFitInfo } {
  const l2 = options.l2 ?? 1;
  const maxIterations = options.maxIterations ?? 50;
  const tolerance = options.tolerance ?? 1e-6;
  const sampleWeights = options.sampleWeights;
  const { means, scales } = columnMoments(x, n, d);
  const k = d + 1; // coefficient 0 is the intercept
  // Start the intercept at the base rate: the first step is then already close.
  let positives = 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const w = sampleWeights ? (sampleWeights[i] as number) : 1;
    positives += w * (y[i] as number);
    total += w;
  }
  const base = Math.min(Math.max(positives / Math.max(total, 1e-12), 1e-6), 1 - 1e-6);
  let beta: Float64Array = new Float64Array(k);
  beta[0] = Math.log(base / (1 - base));
  // Every `stride`-th row enters the Hessian, weighted up to stand for the rows it skips.
  const stride = Math.max(1, Math.ceil(n / (options.hessianRows ?? 100_000)));

  const z = new Float64Array(k);
  const raw = new Float64Array(d);
  const hessian = new Float64Array(k * k);
  const gradient = new Float64Array(k);
  let accepted: Float64Array | undefined;
  let acceptedLoss = Number.POSITIVE_INFINITY;
  let iterations = 0;
  let converged = false;
  let halvings = 0;
  for (; iterations < maxIterations + 20 && !converged; iterations++) {
    // One pass over the rows at `beta`: loss, gradient, sampled Hessian. The linear predictor
    // uses the weights mapped back to raw features, so rows are never standardised in full.
    let intercept = beta[0] as number;
    for (let j = 0; j < d; j++) {
      raw[j] = (beta[j + 1] as number) / (scales[j] as number);
      intercept -= (raw[j] as number) * (means[j] as number);
    }
    hessian.fill(0);
    gradient.fill(0);
    let loss = 0;
    for (let i = 0; i < n; i++) {
      const row = i * d;
      let eta = intercept;
      for (let j = 0; j < d; j++) eta += (raw[j] as number) * (x[row + j] as number);
      const w = sampleWeights ? (sampleWeights[i] as number) : 1;
      const label = y[i] as number;
      // log(1 + e^η) − y·η, without overflow.
      loss += w * ((eta > 0 ? eta + Math.log1p(Math.exp(-eta)) : Math.log1p(Math.exp(eta))) - label * eta);
      const p = sigmoid(eta);
      const residual = w * (label - p);
      // Gradient on raw features; standardised below (Σr·(x−m)/s = (Σr·x − m·Σr)/s).
      gradient[0] = (gradient[0] as number) + residual;
      for (let j = 0; j < d; j++) gradient[j + 1] = (gradient[j + 1] as number) + residual * (x[row + j] as number);
      if (i % stride !== 0) continue;
      standardisedRow(x, i, d, means, scales, z);
      const curvature = stride * w * p * (1 - p);
      for (let a = 0; a < k; a++) {
        const cz = curvature * (z[a] as number);
        const rowA = a * k;
        for (let b = a; b < k; b++) hessian[rowA + b] = (hessian[rowA + b] as number) + cz * (z[b] as number);
      }
    }
    let penalty = 0;
    for (let j = 1; j < k; j++) penalty += (beta[j] as number) * (beta[j] as number);
    loss += (l2 / 2) * penalty;
    if (accepted && loss > acceptedLoss + 1e-12 * Math.abs(acceptedLoss)) {
      // The step overshot: halve it (the penalised loss is convex, so a shorter step helps).
      halvings++;
      const previous = accepted;
      beta = beta.map((value, j) => ((previous[j] as number) + value) / 2);
      if (halvings > 30) {
        beta = previous;
        converged = true;
      }
      continue;
    }
    halvings = 0;
    accepted = beta;
    acceptedLoss = loss;
    for (let j = 0; j < d; j++) {
      gradient[j + 1] = ((gradient[j + 1] as number) - (means[j] as number) * (gradient[0] as number)) / (scales[j] as number) - l2 * (beta[j + 1] as number);
      hessian[(j + 1) * k + (j + 1)] = (hessian[(j + 1) * k + (j + 1)] as number) + l2;
    }
    hessian[0] = (hessian[0] as number) + 1e-9;
    for (let a = 0; a < k; a++) for (let b = 0; b < a; b++) hessian[a * k + b] = hessian[b * k + a] as number;
    const step = solveSymmetric(hessian, gradient, k);
    let maxMove = 0;
    let decrement = 0;
    for (let j = 0; j < k; j++) {
      maxMove = Math.max(maxMove, Math.abs(step[j] as number));
      decrement += (step[j] as number) * (gradient[j] as number);
    }
    // Converged when the coefficients stop moving, or when the Newton decrement (the loss a full
    // step would still gain) is lost in rounding: nearly collinear features can keep the
    // coefficients wandering along a flat valley long after the loss has settled.
    if (maxMove < tolerance || decrement / 2 < 1e-11 * acceptedLoss || iterations >= maxIterations) {
      converged = iterations < maxIterations;
      break;
    }
    beta = beta.map((value, j) => value + (step[j] as number));
  }
  const final = accepted ?? beta;
  const model: LogisticModel = {
    intercept: final[0] as number,
    weights: Array.from(final.subarray(1)),
    means,
    scales,
  };
  return { model, info: { iterations, converged, logLoss: meanLogLoss(model, x, y, n, d, sampleWeights) } };
}

function standardisedRow(x: Float32Array | Float64Array, i: number, d: number, means: number[], scales: number[], z: Float64Array): void {
  z[0] = 1;
  const row = i * d;
  for (let j = 0; j < d; j++) z[j + 1] = ((x[row + j] as number) - (means[j] as number)) / (scales[j] as number);
}

/** The linear predictor (log-odds) of one row at `x[offset…]`. */
export function logisticLogit(model: LogisticModel, x: ArrayLike<number>, offset = 0): number {
  let eta = model.intercept;
  const { weights, means, scales } = model;
  for (let j = 0; j < weights.length; j++) eta += (weights[j] as number) * (((x[offset + j] as number) - (means[j] as number)) / (scales[j] as number));
  return eta;
}

export function meanLogLoss(model: LogisticModel, x: Float32Array | Float64Array, y: Uint8Array, n: number, d: number, sampleWeights?: Float32Array | Float64Array): number {
  let loss = 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const eta = logisticLogit(model, x, i * d);
    const w = sampleWeights ? (sampleWeights[i] as number) : 1;
    loss += w * ((eta > 0 ? eta + Math.log1p(Math.exp(-eta)) : Math.log1p(Math.exp(eta))) - (y[i] as number) * eta);
    total += w;
  }
  return total > 0 ? loss / total : 0;
}

/**
 * Solves A·x = b for a symmetric positive-definite A (k×k, row-major) by Cholesky; a tiny ridge
 * is added if rounding makes a pivot non-positive.
 */
export function solveSymmetric(a: Float64Array, b: Float64Array, k: number): Float64Array {
  for (let ridge = 0; ; ridge = ridge === 0 ? 1e-10 : ridge * 100) {
    const l = new Float64Array(k * k);
    let ok = true;
    for (let i = 0; i < k && ok; i++) {
      for (let j = 0; j <= i; j++) {
        let sum = (a[i * k + j] as number) + (i === j ? ridge : 0);
        for (let m = 0; m < j; m++) sum -= (l[i * k + m] as number) * (l[j * k + m] as number);
        if (i === j) {
          if (!(sum > 0)) {
            ok = false;
            break;
          }
          l[i * k + i] = Math.sqrt(sum);
        } else {
          l[i * k + j] = sum / (l[j * k + j] as number);
        }
      }
    }
    if (!ok) {
      if (ridge > 1e6) throw new RangeError('logistic regression: the system is singular');
      continue;
    }
    const y = new Float64Array(k);
    for (let i = 0; i < k; i++) {
      let sum = b[i] as number;
      for (let m = 0; m < i; m++) sum -= (l[i * k + m] as number) * (y[m] as number);
      y[i] = sum / (l[i * k + i] as number);
    }
    const x = new Float64Array(k);
    for (let i = k - 1; i >= 0; i--) {
      let sum = y[i] as number;
      for (let m = i + 1; m < k; m++) sum -= (l[m * k + i] as number) * (x[m] as number);
      x[i] = sum / (l[i * k + i] as number);
    }
    return x;
  }
}
