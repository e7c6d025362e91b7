// Pooled propensity scores as a histogram over log-odds, and the maps that put one model's scores
// on another's scale: the data the held targets (src/planner/feedback.ts) read their threshold from.

/**
 * Pooled scores, binned by log-odds (3 200 bins of 0.01 over ±16, and one below and one above):
 * per bin the users, their Σp and those of them who logged in during their run. The planner
 * builds it from its finished runs' predictions (weighted) and the logins, `evaluate --online`
 * from its windows' scores and outcomes, with the same bins.
 */
export interface ScoreHistogram {
  count: Float64Array;
  sum: Float64Array;
  logins: Float64Array;
}

export const HISTOGRAM = { lo: -16, hi: 16, bins: 3200 } as const;

export function emptyHistogram(): ScoreHistogram {
  return { count: new Float64Array(HISTOGRAM.bins + 2), sum: new Float64Array(HISTOGRAM.bins + 2), logins: new Float64Array(HISTOGRAM.bins + 2) };
}

/** The bin of p: 0 below lo, bins + 1 at or above hi, as Postgres' width_bucket numbers them. */
export function binOf(p: number): number {
  const q = Math.min(1 - 1e-7, Math.max(1e-7, p));
  const logit = Math.log(q / (1 - q));
  const b = Math.floor(((logit - HISTOGRAM.lo) / (HISTOGRAM.hi - HISTOGRAM.lo)) * HISTOGRAM.bins) + 1;
  return b < 0 ? 0 : b > HISTOGRAM.bins + 1 ? HISTOGRAM.bins + 1 : b;
}

/**
 * Adds scores (each standing for `weight` users, 1 when absent) to a histogram, with whether each
 * user logged in (1 or 0; a probability for expected outcomes; none when unknown).
 */
export function addScores(histogram: ScoreHistogram, p: ArrayLike<number>, weight?: ArrayLike<number>, loggedIn?: ArrayLike<number>): ScoreHistogram {
  for (let i = 0; i < p.length; i++) {
    const w = weight ? (weight[i] as number) : 1;
    const b = binOf(p[i] as number);
    histogram.count[b] = (histogram.count[b] as number) + w;
    histogram.sum[b] = (histogram.sum[b] as number) + w * (p[i] as number);
    if (loggedIn) histogram.logins[b] = (histogram.logins[b] as number) + w * (loggedIn[i] as number);
  }
  return histogram;
}

/** Adds one histogram into another. */
export function addHistogram(into: ScoreHistogram, from: ScoreHistogram): ScoreHistogram {
  for (let b = 0; b < into.count.length; b++) {
    into.count[b] = (into.count[b] as number) + (from.count[b] as number);
    into.sum[b] = (into.sum[b] as number) + (from.sum[b] as number);
    into.logins[b] = (into.logins[b] as number) + (from.logins[b] as number);
  }
  return into;
}

/** The lowest score of bin b (0 for the bin below the range). */
export function lowerEdge(b: number): number {
  if (b <= 0) return 0;
  const logit = HISTOGRAM.lo + ((b - 1) * (HISTOGRAM.hi - HISTOGRAM.lo)) / HISTOGRAM.bins;
  return 1 / (1 + Math.exp(-logit));
}

/** The score at the middle of bin b (in log-odds). */
function centre(b: number): number {
  const c = Math.min(HISTOGRAM.bins + 1, Math.max(0, b));
  const logit = HISTOGRAM.lo + ((c - 0.5) * (HISTOGRAM.hi - HISTOGRAM.lo)) / HISTOGRAM.bins;
  return 1 / (1 + Math.exp(-logit));
}

/**
 * Where each bin of model A's scores lies on model B's scale: A's and B's scores of the SAME users
 * (`from[i]` and `to[i]` score user i), matched by quantile — a user with a share q of the users'
 * weight above them under A is placed where q of it lies above under B. Both models see the same
 * users, so what the map removes is the models' difference in scale (a retraining that moved the
 * intercept or the calibration), not a difference between days: a busy day still has more users
 * above a threshold than a quiet one. Bins where A has no user are interpolated between the
 * nearest ones that have (shifted by the same offset beyond them), so the map is monotone.
 * Undefined without users.
 */
export function scaleMap(from: ArrayLike<number>, to: ArrayLike<number>, weight?: ArrayLike<number>): Int32Array | undefined {
  const size = HISTOGRAM.bins + 2;
  const a = new Float64Array(size);
  const b = new Float64Array(size);
  let total = 0;
  for (let i = 0; i < from.length; i++) {
    const w = weight ? (weight[i] as number) : 1;
    if (!(w > 0)) continue;
    const fa = binOf(from[i] as number);
    const tb = binOf(to[i] as number);
    a[fa] = (a[fa] as number) + w;
    b[tb] = (b[tb] as number) + w;
    total += w;
  }
  if (!(total > 0)) return undefined;
  const map = new Int32Array(size).fill(-1);
  // From the top: A's bin takes B's bin in which the weight above A's bin's middle is reached.
  let aboveA = 0;
  let aboveB = 0;
  let c = size - 1;
  for (let bin = size - 1; bin >= 0; bin--) {
    const own = a[bin] as number;
    if (own === 0) continue;
    const want = aboveA + own / 2;
    while (c > 0 && aboveB + (b[c] as number) < want - 1e-9 * total) aboveB += b[c--] as number;
    map[bin] = c;
    aboveA += own;
  }
  let previous = -1;
  for (let bin = 0; bin < size; bin++) {
    if ((map[bin] as number) < 0) continue;
    if (previous < 0) for (let x = 0; x < bin; x++) map[x] = (map[bin] as number) - (bin - x);
    else for (let x = previous + 1; x < bin; x++) map[x] = Math.round((map[previous] as number) + (((map[bin] as number) - (map[previous] as number)) * (x - previous)) / (bin - previous));
    previous = bin;
  }
  for (let x = previous + 1; x < size; x++) map[x] = (map[previous] as number) + (x - previous);
  for (let x = 0; x < size; x++) map[x] = Math.max(0, Math.min(size - 1, map[x] as number));
  return map;
}

/** A histogram's users moved to the bins `map` gives them (their Σp taken at the new bin's middle). */
export function remapHistogram(histogram: ScoreHistogram, map: Int32Array): ScoreHistogram {
  const out = emptyHistogram();
  for (let b = 0; b < histogram.count.length; b++) {
    const count = histogram.count[b] as number;
    if (count === 0) continue;
    const c = map[b] as number;
    out.count[c] = (out.count[c] as number) + count;
    out.sum[c] = (out.sum[c] as number) + count * centre(c);
    out.logins[c] = (out.logins[c] as number) + (histogram.logins[b] as number);
  }
  return out;
}

/** Per earlier model (its key: a model version), the map of its scores onto the serving model's scale. */
export type ScaleMaps = ReadonlyMap<string, Int32Array>;

/**
 * The pool of histograms, one per model that scored some of its runs, on the serving model's
 * scale: a model with a map in `maps` is remapped, any other (the serving model itself, or one
 * whose scores could not be compared) is taken as recorded.
 */
export function poolOnScale(byModel: ReadonlyMap<string, ScoreHistogram>, maps: ScaleMaps | undefined): ScoreHistogram {
  const pooled = emptyHistogram();
  for (const [model, histogram] of byModel) {
    const map = maps?.get(model);
    addHistogram(pooled, map ? remapHistogram(histogram, map) : histogram);
  }
  return pooled;
}

/** One pooled run (window) scored by an earlier model: that model's scores and the serving model's of the same users that day. */
export interface ScoredDay {
  model: string;
  from: ArrayLike<number>;
  to: ArrayLike<number>;
}

/**
 * The maps of earlier models onto the serving model's scale, each estimated on the days it scored
 * in the pool (`scaleMap` over all their users, both models scoring each day's users as they were
 * that day), rather than on the next run's users: a map is only valid on the inputs it was
 * estimated on, and the pooled scores are those days' scores. Estimated on the next run's users
 * alone, the map between two models that respond differently to the population's activity
 * follows the day it is computed on (on a dead day it put uci-messages' threshold at a third of
 * the same two models' map on the day before, and the held rule precomputed 150–400 users a day
 * for 5 logins), although the pooled scores it moves were recorded on ordinary days.
 */
export function scaleMapsOnDays(days: readonly ScoredDay[]): Map<string, Int32Array> {
  const byModel = new Map<string, ScoredDay[]>();
  for (const day of days) {
    const list = byModel.get(day.model) ?? [];
    byModel.set(day.model, list);
    list.push(day);
  }
  const maps = new Map<string, Int32Array>();
  for (const [model, list] of byModel) {
    const n = list.reduce((s, d) => s + Math.min(d.from.length, d.to.length), 0);
    const from = new Float64Array(n);
    const to = new Float64Array(n);
    let o = 0;
    for (const d of list) {
      const m = Math.min(d.from.length, d.to.length);
      for (let i = 0; i < m; i++) {
        from[o] = d.from[i] as number;
        to[o++] = d.to[i] as number;
      }
    }
    const map = scaleMap(from, to);
    if (map) maps.set(model, map);
  }
  return maps;
}
