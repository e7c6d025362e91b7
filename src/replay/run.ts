import type { PolicyReport } from '../accounting/report.ts';
import { readCsv } from '../activity/csv.ts';
import { formatPolicy, type Policy } from '../planner/policy.ts';
import type { InteractionEvent, LoginEvent } from './generate.ts';
import { replayPolicy, type PolicyRun, type ReplayData, type ReplayOptions } from './replay.ts';

export interface ReplayResult {
  source: string;
  from: string;
  to: string;
  window: string;
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
>;

function figures(name: string, policy: string, report: PolicyReport): ReplayPolicyFigures {
  return {
    name,
    policy,
    precomputes: report.precomputes,
    wasted: report.wasted,
    waste: report.waste,
    coverage: report.coverage,
    loginCoverage: report.loginCoverage,
    stalenessP50Ms: report.stalenessP50Ms,
    stalenessP95Ms: report.stalenessP95Ms,
    onDemand: report.onDemand,
    batchComputeMs: Math.round(report.batchComputeMs),
    onDemandComputeMs: Math.round(report.onDemandComputeMs),
    latencyP50Ms: report.latencyP50Ms,
    latencyP99Ms: report.latencyP99Ms,
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
    ...figures('oracle', 'oracle', model.report),
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
  };
  const policies = runs.map((run) => ({ ...figures(run.name, run.policy, run.report), daily: run.daily }));
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
    logins: model.logins,
    wallMs: Date.now() - started,
    policies,
    oracle,
    columns: Object.keys(table[0] ?? {}),
    table,
  };
}
