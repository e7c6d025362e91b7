import { byPropensity, type Policy } from './policy.ts';

/**
 * The mergeable summary from which a global policy (budget, coverage, waste) is fixed without
 * sorting every candidate: a histogram of propensities with, per bin, the count and Σp. Shards
 * add their histograms; the planner walks the merged bins from the top to the bin where the cut
 * falls, zooms into that bin (a finer histogram of it, another pass) while it holds more than
 * BOUNDARY_LIMIT users, then collects its users and ranks them exactly as `selectUsers` does (p,
 * then user id). The cut is the last selected user: the selection is exactly `selectUsers`'s,
 * up to the order of floating-point additions in Σp (coverage and waste compare sums within
 * 1e-9 and 1e-12, as selectUsers does).
 */
export const BINS = 4096;
/** Users of the cut's bin collected at most; beyond it the bin is zoomed into (3 levels at most). */
export const BOUNDARY_LIMIT = 100_000;
export const MAX_ZOOM_LEVELS = 3;

/** One level of zoom: the range binned and the bin zoomed into. */
export interface ZoomLevel {
  lo: number;
  hi: number;
  bin: number;
}

export function binOf(p: number, lo: number, hi: number): number {
  if (!(hi > lo)) return 0;
  const b = Math.floor(((p - lo) / (hi - lo)) * BINS);
  return b < 0 ? 0 : b >= BINS ? BINS - 1 : b;
}

/** 1: ranks above every user of the zoomed bin; −1: below; 0: inside it. */
export function zoomPosition(p: number, zoom: readonly ZoomLevel[]): number {
  for (const level of zoom) {
    const b = binOf(p, level.lo, level.hi);
    if (b !== level.bin) return b > level.bin ? 1 : -1;
  }
  return 0;
}

/** The range binned inside a zoom (the whole [0, 1] without one). */
export function zoomRange(zoom: readonly ZoomLevel[]): { lo: number; hi: number } {
  const last = zoom[zoom.length - 1];
  if (!last) return { lo: 0, hi: 1 };
  const width = (last.hi - last.lo) / BINS;
  return { lo: last.lo + width * last.bin, hi: last.lo + width * (last.bin + 1) };
}

export interface Tally {
  count: number;
  sum: number;
}

/** One shard's summary for a zoom. */
export interface ShardSummary {
  /** Every candidate. */
  total: Tally;
  /** Candidates ranked above the zoomed bin. */
  above: Tally;
  /** Sparse histogram of the candidates inside the zoom: [bin, count, Σp]. */
  bins: [number, number, number][];
  /** Selected by a policy that decides user by user (threshold, cost, recent, all, none). */
  local: Tally;
}

export class SummaryBuilder {
  readonly total: Tally = { count: 0, sum: 0 };
  readonly above: Tally = { count: 0, sum: 0 };
  readonly local: Tally = { count: 0, sum: 0 };
  readonly #counts = new Float64Array(BINS);
  readonly #sums = new Float64Array(BINS);
  readonly #range: { lo: number; hi: number };
  constructor(private readonly zoom: readonly ZoomLevel[]) {
    this.#range = zoomRange(zoom);
  }
  add(p: number, locallySelected: boolean): void {
    this.total.count++;
    this.total.sum += p;
    if (locallySelected) {
      this.local.count++;
      this.local.sum += p;
    }
    const position = zoomPosition(p, this.zoom);
    if (position > 0) {
      this.above.count++;
      this.above.sum += p;
    } else if (position === 0) {
      const b = binOf(p, this.#range.lo, this.#range.hi);
      this.#counts[b] = (this.#counts[b] as number) + 1;
      this.#sums[b] = (this.#sums[b] as number) + p;
    }
  }
  result(): ShardSummary {
    const bins: [number, number, number][] = [];
    for (let b = 0; b < BINS; b++) if ((this.#counts[b] as number) > 0) bins.push([b, this.#counts[b] as number, this.#sums[b] as number]);
    return { total: { ...this.total }, above: { ...this.above }, bins, local: { ...this.local } };
  }
}

export function mergeSummaries(parts: readonly ShardSummary[]): ShardSummary {
  const counts = new Float64Array(BINS);
  const sums = new Float64Array(BINS);
  const merged: ShardSummary = { total: { count: 0, sum: 0 }, above: { count: 0, sum: 0 }, bins: [], local: { count: 0, sum: 0 } };
  for (const part of parts) {
    for (const key of ['total', 'above', 'local'] as const) {
      merged[key].count += part[key].count;
      merged[key].sum += part[key].sum;
    }
    for (const [b, c, s] of part.bins) {
      counts[b] = (counts[b] as number) + c;
      sums[b] = (sums[b] as number) + s;
    }
  }
  for (let b = 0; b < BINS; b++) if ((counts[b] as number) > 0) merged.bins.push([b, counts[b] as number, sums[b] as number]);
  return merged;
}

/** Policies whose cut needs the whole distribution. */
export function isGlobalPolicy(policy: Policy): policy is Extract<Policy, { kind: 'budget' | 'coverage' | 'waste' }> {
  return policy.kind === 'budget' || policy.kind === 'coverage' || policy.kind === 'waste';
}

/**
 * Who a run selects. `rule`: each user by the policy alone. `prefix`: the users ranked at or
 * above `last` (by p, then user id), that is everyone above the zoomed bin and, inside it, up to
 * `last` (null: nobody inside it).
 */
export type Cut =
  | { kind: 'rule' }
  | { kind: 'all' }
  | { kind: 'none' }
  | { kind: 'prefix'; zoom: ZoomLevel[]; last: { p: number; userId: string } | null };

export function inCut(cut: Cut, p: number, userId: string): boolean | undefined {
  switch (cut.kind) {
    case 'all':
      return true;
    case 'none':
      return false;
    case 'rule':
      return undefined;
    case 'prefix': {
      const position = zoomPosition(p, cut.zoom);
      if (position !== 0) return position > 0;
      const last = cut.last;
      return last !== null && (p > last.p || (p === last.p && userId <= last.userId));
    }
  }
}

type Step = { done: Cut; selected: Tally } | { zoomBin: number; above: Tally; binCount: number };

const ok = {
  budget: (n: number, running: Tally) => running.count < n,
  coverage: (target: number, running: Tally) => running.sum < target,
  waste: (max: number, running: Tally) => running.count === 0 || 1 - running.sum / running.count <= max + 1e-12,
};

/** Walks a merged summary's bins from the top to the bin the cut falls in. */
export function locateCut(policy: Extract<Policy, { kind: 'budget' | 'coverage' | 'waste' }>, merged: ShardSummary, total: Tally): Step {
  const none = { done: { kind: 'none' } as Cut, selected: { count: 0, sum: 0 } };
  const all = { done: { kind: 'all' } as Cut, selected: { ...total } };
  if (policy.kind === 'budget' && policy.n <= 0) return none;
  if (policy.kind === 'budget' && policy.n >= total.count) return all;
  if (policy.kind === 'coverage' && (total.sum <= 0 || policy.target <= 0)) return none;
  const target = policy.kind === 'coverage' ? policy.target * total.sum - 1e-9 : 0;
  const running = { ...merged.above };
  const bins = [...merged.bins].sort((a, b) => b[0] - a[0]);
  for (const [b, c, s] of bins) {
    const next = { count: running.count + c, sum: running.sum + s };
    const crosses =
      policy.kind === 'budget' ? next.count >= policy.n : policy.kind === 'coverage' ? next.sum >= target : !ok.waste(policy.max, next);
    if (crosses) return { zoomBin: b, above: running, binCount: c };
    running.count = next.count;
    running.sum = next.sum;
  }
  return all;
}

/** The exact cut inside the zoomed bin, from its users (any order) and the tally above it. */
export function resolveCut(
  policy: Extract<Policy, { kind: 'budget' | 'coverage' | 'waste' }>,
  zoom: ZoomLevel[],
  entries: { userId: string; p: number }[],
  above: Tally,
  total: Tally,
): { cut: Cut; selected: Tally } {
  const ranked = entries.map((e) => ({ userId: e.userId, p: e.p, lastLoginAt: 0 })).sort(byPropensity);
  const running = { ...above };
  let last: { p: number; userId: string } | null = null;
  const selected = { ...above };
  const target = policy.kind === 'coverage' ? policy.target * total.sum - 1e-9 : 0;
  for (const entry of ranked) {
    running.count++;
    running.sum += entry.p;
    if (policy.kind === 'waste') {
      if (!ok.waste(policy.max, running)) break;
      last = entry;
      Object.assign(selected, running);
      continue;
    }
    last = entry;
    Object.assign(selected, running);
    if (policy.kind === 'budget' ? running.count >= policy.n : running.sum >= target) break;
  }
  return { cut: { kind: 'prefix', zoom, last: last && { p: last.p, userId: last.userId } }, selected };
}
