import { PrewarmError } from '../errors.ts';

/**
 * How a window turns propensities into the set of users to precompute for (docs/design.md, "policy").
 * The same parser and selection serve the planner, `evaluate`, `backtest` and `replay`, so a
 * model-free policy selects identical users everywhere.
 */
export type Policy =
  /**
   * `held`: the threshold a held coverage or waste target was applied as (src/planner/feedback.ts),
   * recorded as `threshold:P,coverage:F` so that the next run reads the target back.
   */
  | { kind: 'threshold'; p: number; held?: { kind: 'coverage' | 'waste'; target: number } }
  | { kind: 'budget'; n: number }
  /**
   * `fixed`: open loop, the target applied as given. Otherwise the target is held from the
   * measured outcomes of the window's previous runs (src/planner/feedback.ts).
   */
  | { kind: 'coverage'; target: number; fixed?: true }
  | { kind: 'waste'; max: number; fixed?: true }
  | { kind: 'cost'; ratio: number }
  | { kind: 'recent'; k: number }
  | { kind: 'all' }
  | { kind: 'none' };

export const POLICY_SYNTAX = 'threshold:P[,coverage:F|,waste:F] | budget:N | coverage:F[,fixed] | waste:F[,fixed] | cost:RATIO | recent:K | all | none';

/** The suffix that turns a held target (coverage, waste) into an open-loop one. */
const FIXED_SUFFIX = ',fixed';

const DECIMAL = /^(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$/i;

export function parsePolicy(text: string): Policy {
  const fail = (why: string): never => {
    throw new PrewarmError('PREWARM_ERR_BAD_POLICY', `policy ${JSON.stringify(text.slice(0, 60))} ${why}; expected ${POLICY_SYNTAX}`);
  };
  let trimmed = text.trim();
  // A held target applied as a threshold, as runs record it: `threshold:0.0961,coverage:0.8412`.
  const held = /^(threshold:[^,]*),(coverage|waste):([^,]*)$/.exec(trimmed);
  if (held) {
    const threshold = parsePolicy(held[1] as string) as Extract<Policy, { kind: 'threshold' }>;
    const target = parsePolicy(`${held[2]}:${held[3]}`) as Extract<Policy, { kind: 'coverage' | 'waste' }>;
    return { ...threshold, held: { kind: target.kind, target: target.kind === 'coverage' ? target.target : target.max } };
  }
  const fixed = trimmed.endsWith(FIXED_SUFFIX);
  if (fixed) trimmed = trimmed.slice(0, -FIXED_SUFFIX.length);
  const [name, arg, ...rest] = trimmed.split(':');
  if (rest.length > 0) fail('has too many parts');
  if (fixed && name !== 'coverage' && name !== 'waste') fail(`cannot be ${FIXED_SUFFIX}: only coverage and waste targets are held from outcomes`);
  if (name === 'all' || name === 'none') {
    if (arg !== undefined) fail(`takes no argument`);
    return { kind: name };
  }
  if (arg === undefined || arg.trim() === '') return fail('needs an argument');
  // A plain decimal number: Number() alone would also take " 0.5", "0x10", "0b1" and "Infinity".
  if (!DECIMAL.test(arg)) fail(`has a non-numeric argument ${JSON.stringify(arg.slice(0, 40))}`);
  const value = Number(arg);
  if (!Number.isFinite(value)) fail(`has an argument out of range ${JSON.stringify(arg.slice(0, 40))}`);
  const fraction = () => (value >= 0 && value <= 1 ? value : fail('needs a fraction between 0 and 1'));
  const count = () => (Number.isInteger(value) && value >= 0 ? value : fail('needs a whole number ≥ 0'));
  switch (name) {
    case 'threshold':
      return { kind: 'threshold', p: fraction() };
    case 'coverage':
      return fixed ? { kind: 'coverage', target: fraction(), fixed } : { kind: 'coverage', target: fraction() };
    case 'waste':
      return fixed ? { kind: 'waste', max: fraction(), fixed } : { kind: 'waste', max: fraction() };
    case 'budget':
      return { kind: 'budget', n: count() };
    case 'recent': {
      const k = count();
      return k >= 1 ? { kind: 'recent', k } : fail('needs K ≥ 1');
    }
    case 'cost':
      return value > 0 ? { kind: 'cost', ratio: value } : fail('needs a positive ratio (cost on demand / cost in batch)');
    default:
      return fail(`is unknown`);
  }
}

export function formatPolicy(policy: Policy): string {
  switch (policy.kind) {
    case 'threshold':
      return `threshold:${policy.p}${policy.held ? `,${policy.held.kind}:${policy.held.target}` : ''}`;
    case 'budget':
      return `budget:${policy.n}`;
    case 'coverage':
      return `coverage:${policy.target}${policy.fixed ? FIXED_SUFFIX : ''}`;
    case 'waste':
      return `waste:${policy.max}${policy.fixed ? FIXED_SUFFIX : ''}`;
    case 'cost':
      return `cost:${policy.ratio}`;
    case 'recent':
      return `recent:${policy.k}`;
    default:
      return policy.kind;
  }
}

/** Policies whose target the feedback controller holds from the measured outcomes (src/planner/feedback.ts). */
export function isHeld(policy: Policy): policy is Extract<Policy, { kind: 'coverage' | 'waste' }> {
  return (policy.kind === 'coverage' || policy.kind === 'waste') && policy.fixed !== true;
}

/** Policies that decide from activity alone: they need no propensity model. */
export function isModelFree(policy: Policy): boolean {
  return policy.kind === 'recent' || policy.kind === 'all' || policy.kind === 'none';
}

export interface Candidate {
  userId: string;
  /** Calibrated probability of a login during the window. */
  p: number;
  /** Epoch ms of the user's last login before the window started. */
  lastLoginAt: number;
}

export interface SelectionContext {
  /** Epoch ms at which the window starts (the planner's "now"). */
  windowStart: number;
  /** Length of one window, for `recent:K`. */
  windowMs: number;
}

export interface Selection<C extends Candidate = Candidate> {
  /** Selected candidates, highest propensity first. */
  selected: C[];
  /** Σp over the selected / Σp over all candidates: the share of expected logins covered. */
  expectedCoverage: number;
  /** Σ(1−p) / |selected|: the share of the selected expected not to log in. */
  expectedWaste: number;
}

/** Orders by propensity, highest first; ties by user id so that runs are reproducible. */
export function byPropensity(a: Candidate, b: Candidate): number {
  return b.p - a.p || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0);
}

export function selectUsers<C extends Candidate>(candidates: readonly C[], policy: Policy, context: SelectionContext): Selection<C> {
  const ranked = [...candidates].sort(byPropensity);
  const selected = ranked.slice(0, selectedCount(ranked, policy, context));
  // `recent:K` is not a prefix of the ranking: it picks by last login.
  const chosen =
    policy.kind === 'recent'
      ? ranked.filter((c) => c.lastLoginAt >= context.windowStart - policy.k * context.windowMs && c.lastLoginAt < context.windowStart)
      : selected;
  return { selected: chosen, ...expectations(ranked, chosen) };
}

function selectedCount(ranked: readonly Candidate[], policy: Policy, _context: SelectionContext): number {
  switch (policy.kind) {
    case 'all':
      return ranked.length;
    case 'none':
    case 'recent':
      return 0;
    case 'budget':
      return Math.min(policy.n, ranked.length);
    case 'threshold':
      return countWhile(ranked, (c) => c.p >= policy.p);
    case 'cost':
      // Precompute when the expected on-demand cost saved exceeds the batch cost: p·ratio > 1.
      return countWhile(ranked, (c) => c.p * policy.ratio > 1);
    case 'coverage': {
      const total = sum(ranked);
      if (total <= 0 || policy.target <= 0) return 0;
      let covered = 0;
      for (let i = 0; i < ranked.length; i++) {
        covered += (ranked[i] as Candidate).p;
        if (covered >= policy.target * total - 1e-9) return i + 1;
      }
      return ranked.length;
    }
    case 'waste': {
      // Ranked by p, the expected waste of a prefix only grows with its length.
      let expectedHits = 0;
      let best = 0;
      for (let i = 0; i < ranked.length; i++) {
        expectedHits += (ranked[i] as Candidate).p;
        if (1 - expectedHits / (i + 1) <= policy.max + 1e-12) best = i + 1;
        else break;
      }
      return best;
    }
  }
}

function countWhile(ranked: readonly Candidate[], keep: (c: Candidate) => boolean): number {
  let n = 0;
  while (n < ranked.length && keep(ranked[n] as Candidate)) n++;
  return n;
}

function sum(candidates: readonly Candidate[]): number {
  let total = 0;
  for (const c of candidates) total += c.p;
  return total;
}

function expectations(all: readonly Candidate[], chosen: readonly Candidate[]): { expectedCoverage: number; expectedWaste: number } {
  const total = sum(all);
  const hits = sum(chosen);
  return {
    expectedCoverage: total > 0 ? hits / total : 0,
    expectedWaste: chosen.length > 0 ? 1 - hits / chosen.length : 0,
  };
}
