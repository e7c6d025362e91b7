import { barChart, escapeXml as esc, lineChart, shortDay } from '../charts/index.ts';
import type { Overview, RunFigures, WindowFigures } from './figures.ts';

// Server-rendered HTML: no script, styles inline (the Content-Security-Policy allows nothing else).
// The same figures make the self-contained file of `prewarm report --format html`.

export const pct = (v: number | null, digits = 0) => (v === null || !Number.isFinite(v) ? '—' : `${(v * 100).toFixed(digits)}%`);
export const hours = (ms: number | null) => (ms === null ? '—' : `${(ms / 3_600_000).toFixed(ms < 36_000_000 ? 1 : 0)} h`);
const millis = (ms: number) => (ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`);
const whole = (n: number) => Math.round(n).toLocaleString('en-US');

/** `2024-03-05 02:00 UTC`. */
export function utc(at: Date | null): string {
  return at ? `${at.toISOString().slice(0, 16).replace('T', ' ')} UTC` : '—';
}

const COLORS = { blue: '#2563eb', orange: '#ea580c', green: '#16a34a', purple: '#7c3aed', grey: '#64748b', red: '#dc2626' };
const SOURCE_COLORS: Record<string, string> = { precomputed: COLORS.green, reused: COLORS.blue, on_demand: COLORS.orange, fallback: COLORS.grey };

const STYLE = `
:root{--ink:#0f172a;--muted:#64748b;--line:#e2e8f0;--card:#fff;--bg:#f1f5f9;--good:#15803d;--bad:#b91c1c}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{display:flex;align-items:baseline;gap:16px;padding:16px 28px;background:#0f172a;color:#fff}
header h1{margin:0;font-size:20px;font-weight:650}header .period{color:#cbd5e1;flex:1}
header a,header button{color:#cbd5e1;font:inherit;background:none;border:0;cursor:pointer;text-decoration:underline}
main{max-width:1280px;margin:0 auto;padding:20px 28px 40px}
.headline{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:14px;margin-bottom:22px}
.stat{background:var(--card);border-radius:10px;padding:16px 18px;box-shadow:0 1px 2px #0f172a14}
.stat .value{font-size:34px;font-weight:700;letter-spacing:-.5px}.stat .label{color:var(--muted);font-size:14px}
.stat .value.good{color:var(--good)}
.lead{font-size:17px;margin:4px 0 16px}
h2{font-size:17px;margin:26px 0 10px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:14px}
.card{background:var(--card);border-radius:10px;padding:14px 16px;box-shadow:0 1px 2px #0f172a14}
.card h3{margin:0 0 4px;font-size:15px}.card p.note{margin:0 0 6px;color:var(--muted);font-size:13px}
.chart{width:100%;height:auto;display:block}
.chart .grid{stroke:#e2e8f0}.chart .axis{stroke:#94a3b8}.chart .tick{fill:#475569;font-size:11px}
.chart .legend{fill:#334155;font-size:12px}.chart .empty{fill:#94a3b8;font-size:14px}
table{width:100%;border-collapse:collapse;font-size:14px}th,td{text-align:left;padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:13px}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.status{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;background:#e2e8f0}
.status.completed{background:#dcfce7;color:#166534}.status.failed{background:#fee2e2;color:#991b1b}.status.running,.status.planning{background:#dbeafe;color:#1e40af}
.muted{color:var(--muted)}footer{color:var(--muted);font-size:13px;margin-top:26px}
.login{max-width:380px;margin:12vh auto;background:#fff;border-radius:12px;padding:28px;box-shadow:0 2px 10px #0f172a1f}
.login h1{margin:0 0 6px;font-size:22px}.login input{width:100%;font:inherit;padding:9px 10px;margin:10px 0 14px;border:1px solid #cbd5e1;border-radius:8px}
.login button{font:inherit;padding:9px 16px;border:0;border-radius:8px;background:#2563eb;color:#fff;cursor:pointer}
.error{color:var(--bad);margin:8px 0 0}
`;

function layout(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${esc(title)}</title><link rel="icon" href="data:,"><style>${STYLE}</style></head><body>${body}</body></html>`;
}

export function renderLogin(options: { error?: string }): string {
  return layout(
    'prewarm — sign in',
    `<form class="login" method="post" action="/dashboard/login">
<h1>prewarm dashboard</h1><div class="muted">Sign in with the admin token (PREWARM_ADMIN_TOKEN).</div>
${options.error ? `<p class="error" role="alert">${esc(options.error)}</p>` : ''}
<label for="token" class="muted">Admin token</label><input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button></form>`,
  );
}

function runCell(run: RunFigures | undefined): string {
  if (!run) return '<span class="muted">no run yet</span>';
  const counts = `${whole(run.precomputed)} of ${whole(run.selected + run.holdout)} precomputed${run.failed > 0 ? `, <b>${whole(run.failed)} failed</b>` : ''}`;
  return `${esc(utc(run.scheduledFor))} <span class="status ${esc(run.status)}">${esc(run.status)}</span><br><span class="muted">${counts}</span>`;
}

function windowsTable(windows: WindowFigures[]): string {
  if (windows.length === 0) return '<p class="muted">No batch windows yet (prewarm windows set NAME --cron EXPR).</p>';
  const rows = windows.map((w) => {
    const last = w.lastRuns[0];
    const earlier = w.lastRuns
      .slice(1)
      .map((r) => `${esc(shortDay(r.scheduledFor.toISOString().slice(0, 10)))} ${esc(r.status)}, waste ${pct(r.wasteRate)}, coverage ${pct(r.coverage)}`)
      .join('<br>');
    return `<tr><td><b>${esc(w.name)}</b><br><span class="muted">${esc(w.cron)} ${esc(w.timezone)}</span></td>
<td>${esc(w.policy)}</td><td>${w.enabled ? esc(utc(w.nextOccurrence)) : '<span class="muted">disabled</span>'}</td>
<td>${runCell(last)}</td><td class="num">${pct(last?.wasteRate ?? null)}</td><td class="num">${pct(last?.coverage ?? null)}</td>
<td class="muted">${earlier || '—'}</td></tr>`;
  });
  return `<div class="card"><table><thead><tr><th>window</th><th>policy</th><th>next occurrence</th><th>last run</th><th class="num">waste</th><th class="num">coverage</th><th>earlier runs</th></tr></thead><tbody>${rows.join('')}</tbody></table>
<p class="note muted">Waste and coverage of a run are final once its window has ended; before that waste is so far and coverage is —.</p></div>`;
}

function card(title: string, note: string, chart: string): string {
  return `<div class="card"><h3>${esc(title)}</h3><p class="note">${esc(note)}</p>${chart}</div>`;
}

const share = (v: number) => `${Math.round(v * 100)}%`;
const toHours = (ms: number | null) => (ms === null ? null : ms / 3_600_000);
const f = (v: number) => (v >= 10 ? String(Math.round(v)) : (Math.round(v * 10) / 10).toString());

function headlineSection(o: Overview): string {
  const h = o.headline;
  const stats: { id: string; value: string; label: string }[] = [
    { id: 'compute-saved', value: pct(h.computeSaved), label: o.window === null ? 'of compute saved vs precomputing every scored user at every run' : 'compute saved: not shown for one window (on-demand compute belongs to no window)' },
    { id: 'login-coverage', value: pct(h.loginCoverage), label: `of ${whole(h.logins)} logins served precomputed` },
    { id: 'coverage', value: pct(h.coverage), label: 'coverage: known users logging in during a window who had a set ready' },
    { id: 'median-age', value: hours(h.medianAgeMs), label: h.medianAgeDay ? `median age of precomputed sets served on ${shortDay(h.medianAgeDay)}` : 'median age: no precomputed serve yet' },
    { id: 'waste', value: pct(h.waste), label: `of precomputes wasted (never served); ${pct(h.onDemandShare)} of logins computed on demand` },
  ];
  const saved = h.computeSaved === null ? '' : `saved <b>${pct(h.computeSaved)}</b> of compute vs precomputing everyone, `;
  return `<p class="lead">Over these ${o.days.length} days prewarm ${saved}served <b>${pct(h.loginCoverage)}</b> of logins precomputed, median age <b>${esc(hours(h.medianAgeMs))}</b>.</p><section class="headline">${stats
    .map((stat) => `<div class="stat" data-stat="${stat.id}"><div class="value">${esc(stat.value)}</div><div class="label">${esc(stat.label)}</div></div>`)
    .join('')}</section>`;
}

function dailyCharts(o: Overview): string {
  const days = o.days.map((d) => d.day);
  return `<div class="grid">
${card('Waste', 'Share of precomputed sets whose life ended that day without a serve (holdout excluded).', lineChart({ title: 'daily waste', categories: days, series: [{ label: 'waste', color: COLORS.red, values: o.days.map((d) => d.waste) }], format: share, yMax: 1 }))}
${card('Coverage', 'Known users who logged in during a window with a set ready (coverage), and all logins answered precomputed (login coverage).', lineChart({ title: 'daily coverage', categories: days, series: [{ label: 'coverage', color: COLORS.green, values: o.days.map((d) => d.coverage) }, { label: 'login coverage', color: COLORS.blue, values: o.days.map((d) => d.loginCoverage), dashed: true }], format: share, yMax: 1 }))}
${card('Staleness of precomputed serves', 'Age of the set at the login: median and 95th percentile.', lineChart({ title: 'staleness', categories: days, series: [{ label: 'p50', color: COLORS.purple, values: o.days.map((d) => toHours(d.stalenessP50Ms)) }, { label: 'p95', color: COLORS.purple, values: o.days.map((d) => toHours(d.stalenessP95Ms)), dashed: true }], format: (v) => `${f(v)} h` }))}
${card('Sets behind their users', 'Logins served a set whose user interacted after it was computed (it could not know); the daily table gives the missed interactions of precomputed serves, p95.', lineChart({ title: 'behind', categories: days, series: [{ label: 'behind', color: COLORS.red, values: o.days.map((d) => d.behindShare) }], format: share, yMax: 1 }))}
${card('On-demand share', 'Logins answered by a computation at login.', lineChart({ title: 'on-demand share', categories: days, series: [{ label: 'on demand', color: COLORS.orange, values: o.days.map((d) => d.onDemandShare) }], format: share, yMax: 1 }))}
</div>`;
}

function modelAndLatency(o: Overview): string {
  const days = o.days.map((d) => d.day);
  const latencySources = [...new Set(o.latency.map((l) => l.source))].sort();
  const latencyChart = lineChart({
    title: 'latency p99 by source',
    categories: days,
    series: latencySources.map((source) => ({
      label: source,
      color: SOURCE_COLORS[source] ?? COLORS.purple,
      values: days.map((day) => o.latency.find((l) => l.day === day && l.source === source)?.p99Ms ?? null),
    })),
    format: (v) => `${Math.round(v)} ms`,
  });
  const latestLatency = latencySources.map((source) => [...o.latency].reverse().find((l) => l.source === source)).filter((l) => l !== undefined);
  const latencyTable = latestLatency.length
    ? `<table><thead><tr><th>source</th><th>day</th><th class="num">serves</th><th class="num">p50</th><th class="num">p99</th><th class="num">max</th></tr></thead><tbody>${latestLatency
        .map((l) => `<tr data-latency="${esc(l.source)}"><td>${esc(l.source)}</td><td>${esc(shortDay(l.day))}</td><td class="num">${whole(l.serves)}</td><td class="num">${millis(l.p50Ms)}</td><td class="num">${millis(l.p99Ms)}</td><td class="num">${millis(l.maxMs)}</td></tr>`)
        .join('')}</tbody></table>`
    : '<p class="muted">No serves in this period.</p>';

  const reliability = o.reliability
    ? card(
        `Propensity model reliability — ${o.reliability.version}`,
        `Trained ${utc(o.reliability.trainedAt)}. Mean predicted probability against the observed login rate, by decile of its held-out week: bars of equal height mean calibrated.`,
        barChart({
          title: 'reliability by decile',
          xLabel: 'decile',
          categories: o.reliability.deciles.map((d) => String(d.decile)),
          series: [
            { label: 'predicted', color: COLORS.blue, values: o.reliability.deciles.map((d) => d.meanPredicted) },
            { label: 'observed', color: COLORS.orange, values: o.reliability.deciles.map((d) => d.observedRate) },
          ],
          format: share,
          yMax: Math.min(1, Math.max(0.1, ...o.reliability.deciles.flatMap((d) => [d.meanPredicted, d.observedRate])) * 1.1),
        }),
      )
    : card('Propensity model reliability', 'No propensity model trained yet (prewarm train-propensity).', '');
  return `<div class="grid">
${reliability}
<div class="card"><h3>Latency by source</h3><p class="note">p99 per day; the table shows each source's latest day.</p>${latencyChart}${latencyTable}</div>
</div>`;
}

const FOOTNOTE = 'Figures from the Postgres views (README, "For analysts: the views"). Compute saved = 1 − (batch + on-demand compute) ÷ (users scored by the runs × mean batch compute per set).';

function period(o: Overview): string {
  return `${shortDay(o.from)} – ${shortDay(o.to)} ${o.to.slice(0, 4)} (UTC days)`;
}

export function renderDashboard(o: Overview): string {
  const body = `<header><h1>prewarm</h1><span class="period">${esc(period(o))} · updated ${esc(utc(o.generatedAt))}</span>
<a href="/admin/queues/">queues</a><form method="post" action="/dashboard/logout"><button type="submit">sign out</button></form></header>
<main>${headlineSection(o)}
<h2>Batch windows</h2>${windowsTable(o.windows)}
<h2>Every day</h2>${dailyCharts(o)}
<h2>Model and latency</h2>${modelAndLatency(o)}
<footer>${esc(FOOTNOTE)}</footer></main>`;
  return layout('prewarm dashboard', body);
}

/** The figures of every day as numbers, for a report that is read, printed or diffed later. */
function dailyTable(o: Overview): string {
  const rows = o.days.map(
    (d) =>
      `<tr data-day="${esc(d.day)}"><td>${esc(d.day)}</td><td class="num">${whole(d.logins)}</td><td class="num">${pct(d.waste, 1)}</td><td class="num">${pct(d.coverage, 1)}</td><td class="num">${pct(d.loginCoverage, 1)}</td>` +
      `<td class="num">${hours(d.stalenessP50Ms)}</td><td class="num">${hours(d.stalenessP95Ms)}</td><td class="num">${pct(d.behindShare, 1)}</td><td class="num">${d.missedP95 === null ? '—' : f(d.missedP95)}</td><td class="num">${pct(d.onDemandShare, 1)}</td></tr>`,
  );
  return `<div class="card"><table><thead><tr><th>UTC day</th><th class="num">logins</th><th class="num">waste</th><th class="num">coverage</th><th class="num">login coverage</th><th class="num">staleness p50</th><th class="num">staleness p95</th><th class="num">behind</th><th class="num">missed p95</th><th class="num">on demand</th></tr></thead><tbody>${rows.join('')}</tbody></table></div>`;
}

/**
 * `prewarm report --format html`: one self-contained file (inline CSS and SVG, no script, no
 * request) with the dashboard's headline numbers and charts for the period and window.
 */
export function renderReportHtml(o: Overview): string {
  const scope = `Waste, coverage and users scored: ${o.window === null ? "every window's runs" : `the runs of window ${o.window}`}; logins, staleness, latency and on-demand compute: all traffic (a serve belongs to no window)`;
  const body = `<header><h1>prewarm report</h1><span class="period">${esc(period(o))} · ${esc(o.window === null ? 'every window' : `window ${o.window}`)} · generated ${esc(utc(o.generatedAt))}</span></header>
<main>${headlineSection(o)}<p class="muted" data-scope>${esc(scope)}.</p>
<h2>Every day</h2>${dailyCharts(o)}
<h2>Model and latency</h2>${modelAndLatency(o)}
<h2>Figures by day</h2>${dailyTable(o)}
<footer>${esc(FOOTNOTE)}</footer></main>`;
  return layout(`prewarm report ${o.from} – ${o.to}`, body);
}
