import type { PolicyReport } from '../accounting/report.ts';
import { readCsv } from '../activity/csv.ts';
import { formatPolicy, type Policy } from '../planner/policy.ts';
import type { InteractionEvent, LoginEvent } from './generate.ts';
import type { RefreshBehind } from '../serving/service.ts';
import { replayPolicy, type PolicyRun, type ReplayData, type ReplayOptions } from './replay.ts';

export interface ReplayResult {
  source: string;
  from: string;
  to: string;
  window: string;
  /** How the log's interactions after `from` reached the replay (ReplayOptions.interactionFeed). */
  interactionFeed: 'api' | 'import';
  /** What the serving path did with a behind set at login (ReplayOptions.refreshBehind). */
  refreshBehind: RefreshBehind;
  logins: number;
  wallMs: number;
  /** The `replay --json` entries of docs/design.md: `model` (the chosen policy), `all`, `none`. */
  policies: (ReplayPolicyFigures & { daily: PolicyRun['daily'] })[];
  oracle: ReplayPolicyFigures;
  columns: string[];
  table: Record<string, string | number>[];
}

/** One row of the replay's table: the `replay --json` fields of docs/design.md, read from the report. */
export type ReplayPolicyFigures = { name: string; policy: string } & Pick<
  PolicyReport,
  | 'precomputes'
  | 'wasted'
  | 'waste'
  | 'coverage'
  | 'loginCoverage'
  | 'stalenessP50Ms'
  | 'stalenessP95Ms'
  | 'onDemand'
  | 'batchComputeMs'
  | 'onDemandComputeMs'
  | 'latencyP50Ms'
  | 'latencyP99Ms'
  | 'behindServes'
  | 'behindShare'
  | 'missedP50'
  | 'missedP95'
  | 'refreshes'
  | 'refreshComputeMs'
> & {
  /** Mean missed interactions of the served sets (0 for a set that missed none); null when none was counted. */
  missedMean: number | null;
  /** refreshComputeMs / batchComputeMs: the price of refreshing behind sets against the batch's compute; null without batch compute. */
  refreshComputeShare: number | null;
};

/**
 * The figures of one replayed policy. Content staleness (issue 15): `behindServes` / `behindShare`
 * are the logins served a set that missed interactions of its user (share of all logins),
 * `missedMean` / `missedP50` / `missedP95` the missed interactions of every served set, and
 * `refreshes` / `refreshComputeMs` / `refreshComputeShare` the on-demand sets computed at login
 * in place of a behind set, with the compute they added (ms and share of the batch's).
 */
export function policyFigures(name: string, run: Pick<PolicyRun, 'policy' | 'report' | 'missedMean'>): ReplayPolicyFigures {
  const { report } = run;
  const batchComputeMs = Math.round(report.batchComputeMs);
  const refreshComputeMs = Math.round(report.refreshComputeMs);
  return {
    name,
    policy: run.policy,
    precomputes: report.precomputes,
    wasted: report.wasted,
    waste: report.waste,
    coverage: report.coverage,
    loginCoverage: report.loginCoverage,
    stalenessP50Ms: report.stalenessP50Ms,
    stalenessP95Ms: report.stalenessP95Ms,
    onDemand: report.onDemand,
    batchComputeMs,
    onDemandComputeMs: Math.round(report.onDemandComputeMs),
    latencyP50Ms: report.latencyP50Ms,
    latencyP99Ms: report.latencyP99Ms,
    behindServes: report.behindServes,
    behindShare: report.behindShare,
    missedMean: run.missedMean,
    missedP50: report.missedP50,
    missedP95: report.missedP95,
    refreshes: report.refreshes,
    refreshComputeMs,
    // From the unrounded figures: a few refreshes beside a small batch are not a round number.
    refreshComputeShare: report.batchComputeMs > 0 ? report.refreshComputeMs / report.batchComputeMs : null,
  };
}

/** Loads a logins and an interactions CSV (plain or gzip) into memory, sorted by time. */
export async function loadReplayData(loginsPath: string, interactionsPath: string): Promise<ReplayData & { skipped: number }> {
  let skipped = 0;
  const onError = () => void skipped++;
  const logins: LoginEvent[] = [];
  for await (const row of readCsv(loginsPath, 'logins', { onError })) logins.push(row);
  const interactions: InteractionEvent[] = [];
  for await (const row of readCsv(interactionsPath, 'interactions', { onError })) interactions.push(row);
  const byTime = (a: { at: Date }, b: { at: Date }) => a.at.getTime() - b.at.getTime();
  logins.sort(byTime);
  interactions.sort(byTime);
  return { logins, interactions, skipped };
}

/**
 * Replays the chosen policy and the two baselines — `all` (every known user at each window) and
 * `none` (on demand only) — over the same log and period, each in its own schema.
 */
export async function runReplay(data: ReplayData, policy: Policy, options: ReplayOptions & { source: string }): Promise<ReplayResult> {
  const started = Date.now();
  const runs: PolicyRun[] = [];
  for (const [name, chosen] of [
    ['model', policy],
    ['all', { kind: 'all' }],
    ['none', { kind: 'none' }],
  ] as const) {
    runs.push(await replayPolicy(data, name, chosen, options));
  }
  const model = runs[0] as PolicyRun;
  const oracle: ReplayPolicyFigures = {
    ...policyFigures('oracle', { policy: 'oracle', report: model.report, missedMean: null }),
    precomputes: model.report.knownActiveUserWindows,
    wasted: 0,
    waste: 0,
    coverage: 1,
    loginCoverage: null,
    stalenessP50Ms: null,
    stalenessP95Ms: null,
    onDemand: 0,
    batchComputeMs: 0,
    onDemandComputeMs: 0,
    latencyP50Ms: {},
    latencyP99Ms: {},
    behindServes: 0,
    behindShare: null,
    missedMean: null,
    missedP50: null,
    missedP95: null,
    refreshes: 0,
    refreshComputeMs: 0,
    refreshComputeShare: null,
  };
  const policies = runs.map((run) => ({ ...policyFigures(run.name, run), daily: run.daily }));
  const sources = ['precomputed', 'reused', 'on_demand', 'fallback'];
  const pct = (v: number | null) => (v === null ? '—' : `${(v * 100).toFixed(1)}%`);
  const hours = (v: number | null) => (v === null ? '—' : `${(v / 3_600_000).toFixed(1)} h`);
  const ms = (v: number | undefined) => (v === undefined ? '—' : v.toFixed(1));
  const table = [...policies, oracle].map((p) => ({
    policy: p.name === 'model' ? `model (${formatPolicy(policy)})` : p.name,
    precomputes: p.precomputes,
    wasted: p.wasted,
    waste: pct(p.waste),
    coverage: pct(p.coverage),
    'login coverage': pct(p.loginCoverage),
    'staleness p50/p95': p.name === 'oracle' ? '—' : `${hours(p.stalenessP50Ms)} / ${hours(p.stalenessP95Ms)}`,
    'on-demand': p.onDemand,
    'behind (refreshes)': p.name === 'oracle' ? '—' : `${pct(p.behindShare)} (${p.refreshes})`,
    'compute s batch/demand': p.name === 'oracle' ? '—' : `${(p.batchComputeMs / 1000).toFixed(1)} / ${(p.onDemandComputeMs / 1000).toFixed(1)}`,
    'latency p50/p99 ms': sources
      .filter((s) => p.latencyP50Ms[s] !== undefined)
      .map((s) => `${s} ${ms(p.latencyP50Ms[s])}/${ms(p.latencyP99Ms[s])}`)
      .join('; ') || '—',
  }));
  return {
    source: options.source,
    from: options.from.toISOString(),
    to: options.to.toISOString(),
    window: options.window,
    interactionFeed: options.interactionFeed ?? 'api',
    refreshBehind: options.refreshBehind ?? 'never',
    logins: model.logins,
    wallMs: Date.now() - started,
    policies,
    oracle,
    columns: Object.keys(table[0] ?? {}),
    table,
  };
}
