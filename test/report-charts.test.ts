// The one chart module (src/charts) on its own, and the replay's HTML report drawn with it.
// Pure functions: no database, no browser (the browser tests are test/dashboard.test.ts and
// test/report-cli.test.ts).
import { describe, expect, it } from 'vitest';
import type { DailyPoint } from '../src/accounting/report.ts';
import { barChart, escapeXml, lineChart, shortDay, xyChart } from '../src/charts/index.ts';
import { renderReplayHtml } from '../src/replay/html-report.ts';
import type { ReplayResult } from '../src/replay/run.ts';

const pct = (v: number) => `${Math.round(v * 100)}%`;
const count = (svg: string, pattern: RegExp) => (svg.match(pattern) ?? []).length;

describe('chart module', () => {
  it('escapes text for SVG and HTML alike', () => {
    expect(escapeXml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });

  it('names days on the axis as `Mon D` and leaves other categories alone', () => {
    expect(shortDay('2024-03-05')).toBe('Mar 5');
    expect(shortDay('2024-12-31')).toBe('Dec 31');
    expect(shortDay('decile 3')).toBe('decile 3');
    expect(shortDay('2024-02-30x')).toBe('2024-02-30x');
  });

  it('draws a line chart over days: a dot per value, a break at null, dates and the last day on the axis, the legend escaped', () => {
    const days = Array.from({ length: 20 }, (_, i) => `2024-03-${String(i + 1).padStart(2, '0')}`);
    const svg = lineChart({
      title: 'waste <by day>',
      categories: days,
      series: [
        { label: 'a & b', color: '#f00', values: days.map((_, i) => (i === 10 ? null : i / 20)) },
        { label: 'flat', color: '#00f', values: days.map(() => 0.5), dashed: true },
      ],
      format: pct,
      yMax: 1,
      xLabel: 'UTC day',
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" class="chart"')).toBe(true);
    expect(svg).toContain('aria-label="waste &lt;by day&gt;"');
    expect(count(svg, /<circle /g)).toBe(39);
    // The null splits the first series in two sub-paths.
    const first = /<path d="([^"]+)" fill="none" stroke="#f00"/.exec(svg)?.[1] ?? '';
    expect(count(first, /M/g)).toBe(2);
    expect(svg).toContain('stroke-dasharray="6 4"');
    expect(svg).toContain('>Mar 1<');
    expect(svg).toContain('>Mar 20<');
    // At most about eight date labels.
    expect(count(svg, />Mar \d+</g)).toBeLessThanOrEqual(9);
    expect(svg).toContain('>a &amp; b<');
    expect(svg).toContain('>100%<');
    expect(svg).toContain('>UTC day<');
    expect(svg).toContain('<title>2024-03-02 a &amp; b: 5%</title>');
  });

  it('says so when a line chart has no data', () => {
    const svg = lineChart({ title: 'empty', categories: ['2024-03-01'], series: [{ label: 's', color: '#000', values: [null] }], format: pct });
    expect(svg).toContain('no data in this period');
    expect(svg).not.toContain('<path');
  });

  it('draws grouped bars with a rounded-up scale', () => {
    const svg = barChart({
      title: 'by decile',
      xLabel: 'decile',
      categories: ['1', '2', '3'],
      series: [
        { label: 'predicted', color: '#00f', values: [0.1, 0.2, 0.37] },
        { label: 'observed', color: '#f80', values: [0.12, 0.18, 0.4] },
      ],
      format: pct,
    });
    expect(count(svg, /<rect /g)).toBe(6);
    expect(svg).toContain('<title>decile 3 observed: 40%</title>');
    expect(svg).toContain('>40%<');
    expect(svg).toContain('>decile<');
  });

  it('draws an x–y chart with lines sorted by x, square and ring markers and a boxed legend', () => {
    const svg = xyChart({
      title: 'trade-off',
      xLabel: 'coverage',
      yLabel: 'waste',
      format: pct,
      lines: [{ label: 'model', color: '#1f77b4', points: [{ x: 1, y: 1 }, { x: 0, y: 0 }] }],
      markers: [
        { label: 'baselines', color: '#ff7f0e', mark: 'square', points: [{ x: 0.5, y: 0.5, label: 'recent-1' }] },
        { label: 'chosen', color: '#d62728', mark: 'ring', points: [{ x: 0.25, y: 0.75, label: 'threshold:0.2' }] },
      ],
      width: 164,
      height: 212,
      margins: { left: 32, right: 32, top: 56, bottom: 56 },
    });
    // 100 × 100 plot from (32, 56): the line goes from the origin (bottom left) to the top right.
    expect(svg).toContain('<path d="M32,156 L132,56"');
    expect(svg).toContain('<rect x="78" y="102" width="8" height="8" fill="#ff7f0e"/>');
    expect(svg).toContain('<circle cx="57" cy="81" r="8" fill="none" stroke="#d62728"');
    expect(svg).toContain('>threshold:0.2<');
    expect(svg).toContain('rotate(-90)');
    for (const label of ['model', 'baselines', 'chosen']) expect(svg).toContain(`>${label}<`);
  });
});

describe('replay HTML report', () => {
  const point = (day: string, waste: number | null, coverage: number): DailyPoint => ({ day, logins: 10, loginCoverage: coverage / 2, coverage, waste, stalenessP50Ms: 3_600_000 });
  const figures = { precomputes: 1, wasted: 0, waste: 0, coverage: 1, loginCoverage: 1, stalenessP50Ms: 0, stalenessP95Ms: 0, onDemand: 0, batchComputeMs: 0, onDemandComputeMs: 0, latencyP50Ms: {}, latencyP99Ms: {}, behindServes: 0, behindShare: null, missedMean: null, missedP50: null, missedP95: null, refreshes: 0, refreshComputeMs: 0, refreshComputeShare: null };
  const result: ReplayResult = {
    source: 'logins <demo>.csv',
    from: '2024-01-01',
    to: '2024-01-04',
    window: '1d',
    interactionFeed: 'api',
    refreshBehind: 'login',
    logins: 30,
    wallMs: 1234,
    policies: [
      { name: 'model', policy: 'coverage:0.8', ...figures, daily: [point('2024-01-01', 0.2, 0.8), point('2024-01-02', null, 0.7), point('2024-01-03', 0.1, 0.9)] },
      // A policy missing a day: its line breaks there instead of shifting.
      { name: 'all', policy: 'all', ...figures, daily: [point('2024-01-01', 0.5, 1), point('2024-01-03', 0.4, 1)] },
    ],
    oracle: { name: 'oracle', policy: 'oracle', ...figures },
    columns: ['policy', 'waste'],
    table: [{ policy: 'model (coverage:0.8)', waste: '20.0%' }],
  };

  it('draws its four daily charts with the shared line chart, dated by the replayed days', () => {
    const html = renderReplayHtml(result);
    expect(count(html, /<svg /g)).toBe(4);
    expect(count(html, /<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" class="chart"/g)).toBe(4);
    expect(html).toContain('logins &lt;demo&gt;.csv');
    expect(html).toContain('<td>model (coverage:0.8)</td>');
    expect(html).toContain('>Jan 1<');
    expect(html).toContain('>Jan 3<');
    expect(html).toContain('>simulated UTC day<');
    // Waste: model has 2 values of 3 days, all 2 of 3 (no 2024-01-02).
    const waste = html.slice(html.indexOf('aria-label="Waste rate'), html.indexOf('</svg>', html.indexOf('aria-label="Waste rate')));
    expect(count(waste, /<circle /g)).toBe(4);
    expect(waste).toContain('<title>2024-01-03 all: 40.0%</title>');
    expect(html).not.toMatch(/<script|src=|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
  });
});
