import type { DailyPoint } from '../accounting/report.ts';
import { escapeXml as escapeHtml, lineChart } from '../charts/index.ts';
import type { ReplayResult } from './run.ts';

const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];

/** One line per policy over the replayed days (dates on the x axis), in the shared chart module. */
function dailyChart(title: string, result: ReplayResult, pick: (point: DailyPoint) => number | null, format: (y: number) => string, yMax?: number): string {
  const days = [...new Set(result.policies.flatMap((run) => run.daily.map((point) => point.day)))].sort();
  const series = result.policies.map((run, i) => {
    const byDay = new Map(run.daily.map((point) => [point.day, pick(point)]));
    return { label: run.name, color: COLOURS[i % COLOURS.length] as string, values: days.map((day) => byDay.get(day) ?? null) };
  });
  return `<figure><figcaption>${escapeHtml(title)}</figcaption>${lineChart({ title, categories: days, series, format, yMax, xLabel: 'simulated UTC day', width: 720, height: 240 })}</figure>`;
}

const pct = (v: number | null) => (v === null ? '—' : `${(v * 100).toFixed(1)}%`);
const num = (v: number | null | undefined, digits = 0) => (v === null || v === undefined ? '—' : v.toFixed(digits));

/**
 * Content staleness per policy (its ReplayPolicyFigures): logins served a set that missed
 * interactions of its user (serves.missed_interactions > 0), the missed interactions of every
 * served set, and the price of refreshing behind sets at login — the on-demand sets computed in
 * their place and their compute, beside the batch's. Empty when no serve was counted
 * (interactions imported rather than fed through the API).
 */
function behindTable(result: ReplayResult): string {
  const rows = result.policies.flatMap((run) => {
    if (run.behindShare === null) return [];
    const age = run.stalenessP50Ms === null ? '—' : `${(run.stalenessP50Ms / 3_600_000).toFixed(1)} h`;
    const cells = [
      run.name,
      String(run.behindServes),
      pct(run.behindShare),
      `${num(run.missedMean, 2)} / ${num(run.missedP50, 1)} / ${num(run.missedP95, 1)}`,
      String(run.refreshes),
      num(run.refreshComputeMs / 1000, 1),
      pct(run.refreshComputeShare),
      age,
    ];
    return [`<tr>${cells.map((cell) => `<td>${escapeHtml(cell)}</td>`).join('')}</tr>`];
  });
  if (rows.length === 0) return '';
  const refreshed = result.refreshBehind === 'login' ? 'computed again at login (refresh behind: login), within the latency budget' : 'served as they were (refresh behind: never)';
  return `<h2>Sets behind their users</h2>
<p>A set is behind when its user interacted at or after it was computed and before the login: it could not know. ${result.interactionFeed === 'api' ? 'Interactions were fed through the interactions API as the clock reached them' : 'Interactions were imported a window at a time, out of Redis\'s sight: only serves Redis could not vouch for were counted, so the share is a lower bound'}; behind sets were ${escapeHtml(refreshed)}. Refreshes are the on-demand sets computed while an older set of the user was still fresh: their compute is the price of serving up-to-date sets.</p>
<table><thead><tr><th>policy</th><th>logins served a behind set</th><th>share of logins</th><th>missed interactions mean / p50 / p95</th><th>refreshes at login</th><th>refresh compute s</th><th>refresh compute / batch compute</th><th>age p50</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

/** The replay's report as one HTML file with no external resources. */
export function renderReplayHtml(result: ReplayResult): string {
  const rows = result.table.map(
    (row) => `<tr>${result.columns.map((column) => `<td>${escapeHtml(String(row[column] ?? '—'))}</td>`).join('')}</tr>`,
  );
  // In hours, so that the axis steps are round hours.
  const hours = (v: number) => `${v.toFixed(v >= 10 ? 0 : 1)} h`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>prewarm replay ${escapeHtml(result.from)} – ${escapeHtml(result.to)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}figure{margin:1.5em 0}figcaption{font-weight:600}.chart{width:100%;max-width:720px;height:auto;display:block}</style>
</head><body>
<h1>prewarm replay</h1>
<p>Log: ${escapeHtml(result.source)} · period ${escapeHtml(result.from)} → ${escapeHtml(result.to)} · windows of ${escapeHtml(result.window)} · ${result.logins} logins replayed through the real scheduler, planner, BullMQ workers and serving path on a virtual clock. Every figure is read from the Postgres views.</p>
<table><thead><tr>${result.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>
<p>Oracle bound (precompute exactly the known users who will log in): ${result.oracle.precomputes} precomputes, waste 0%, coverage 100%.</p>
${dailyChart('Waste rate per day (precomputes whose life ended that day without a serve)', result, (p) => p.waste, pct, 1)}
${dailyChart('Coverage per day (known active users with a fresh policy precompute)', result, (p) => p.coverage, pct, 1)}
${dailyChart('Login coverage per day (logins served precomputed)', result, (p) => p.loginCoverage, pct, 1)}
${dailyChart('Staleness p50 per day', result, (p) => (p.stalenessP50Ms === null ? null : p.stalenessP50Ms / 3_600_000), hours)}
${behindTable(result)}
${result.policies.some((run) => run.daily.some((p) => p.behindShare != null)) ? dailyChart('Logins served a behind set per day (its user interacted since it was computed)', result, (p) => p.behindShare ?? null, pct, 1) : ''}
<p style="color:#666">Generated by prewarm ${escapeHtml(new Date().toISOString())}; ${num(result.wallMs / 1000, 1)} s of wall time.</p>
</body></html>
`;
}
