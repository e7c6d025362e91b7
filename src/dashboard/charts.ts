import { escapeXml } from '../propensity/chart-svg.ts';

// Small inline SVG charts for the dashboard: no script, no dependency, scaled by the browser
// (viewBox) to the width of their card.

export interface Series {
  label: string;
  color: string;
  /** One value per category (day), null where there is none: the line breaks there. */
  values: (number | null)[];
  dashed?: boolean;
}

export interface LineChartOptions {
  /** X categories, e.g. `YYYY-MM-DD` days. */
  categories: string[];
  series: Series[];
  /** Formats a y value for the axis and the tooltips. */
  format: (value: number) => string;
  /** Fixed y range; default 0 to the data's maximum, rounded up. */
  yMax?: number;
  /** Accessible name of the chart. */
  title: string;
  width?: number;
  height?: number;
}

const M = { left: 56, right: 16, top: 28, bottom: 34 };
const f1 = (v: number) => (Math.round(v * 10) / 10).toString();

function niceMax(max: number): number {
  if (!(max > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (step * magnitude >= max) return step * magnitude;
  return 10 * magnitude;
}

/** `2024-03-05` → `Mar 5`. */
export function shortDay(day: string): string {
  const date = new Date(`${day}T00:00:00Z`);
  if (Number.isNaN(date.getTime())) return day;
  return date.toLocaleDateString('en-GB', { month: 'short', day: 'numeric', timeZone: 'UTC' }).replace(/^(\d+) (\w+)$/, '$2 $1');
}

function legend(series: { label: string; color: string; dashed?: boolean }[], x: number, y: number): string {
  let offset = x;
  return series
    .map((s) => {
      const item =
        `<line x1="${offset}" y1="${y - 4}" x2="${offset + 18}" y2="${y - 4}" stroke="${s.color}" stroke-width="3"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>` +
        `<text x="${offset + 23}" y="${y}" class="legend">${escapeXml(s.label)}</text>`;
      offset += 40 + s.label.length * 7.2;
      return item;
    })
    .join('');
}

export function lineChart(options: LineChartOptions): string {
  const width = options.width ?? 560;
  const height = options.height ?? 220;
  const plotW = width - M.left - M.right;
  const plotH = height - M.top - M.bottom;
  const n = options.categories.length;
  const all = options.series.flatMap((s) => s.values).filter((v): v is number => v !== null && Number.isFinite(v));
  const yMax = options.yMax ?? niceMax(Math.max(0, ...all));
  const x = (i: number) => M.left + (n <= 1 ? plotW / 2 : (i / (n - 1)) * plotW);
  const y = (v: number) => M.top + (1 - Math.min(Math.max(v / yMax, 0), 1)) * plotH;
  const out: string[] = [];
  out.push(`<svg class="chart" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(options.title)}" xmlns="http://www.w3.org/2000/svg">`);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    out.push(`<line x1="${M.left}" x2="${M.left + plotW}" y1="${f1(y(v))}" y2="${f1(y(v))}" class="grid"/>`);
    out.push(`<text x="${M.left - 6}" y="${f1(y(v) + 4)}" text-anchor="end" class="tick">${escapeXml(options.format(v))}</text>`);
  }
  // Dates: at most ~8 labels, always the last day.
  const every = Math.max(1, Math.ceil(n / 8));
  options.categories.forEach((day, i) => {
    if (i % every !== 0 && i !== n - 1) return;
    if (i !== n - 1 && n - 1 - i < every) return;
    out.push(`<text x="${f1(x(i))}" y="${height - M.bottom + 16}" text-anchor="middle" class="tick">${escapeXml(shortDay(day))}</text>`);
  });
  out.push(`<line x1="${M.left}" x2="${M.left + plotW}" y1="${M.top + plotH}" y2="${M.top + plotH}" class="axis"/>`);
  for (const s of options.series) {
    let path = '';
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) {
        pen = false;
        return;
      }
      path += `${pen ? 'L' : 'M'}${f1(x(i))},${f1(y(v))} `;
      pen = true;
    });
    if (path) out.push(`<path d="${path.trim()}" fill="none" stroke="${s.color}" stroke-width="2.5" stroke-linejoin="round"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) return;
      out.push(`<circle cx="${f1(x(i))}" cy="${f1(y(v))}" r="3.5" fill="${s.color}"><title>${escapeXml(`${options.categories[i] ?? ''} ${s.label}: ${options.format(v)}`)}</title></circle>`);
    });
  }
  out.push(legend(options.series, M.left, 16));
  if (all.length === 0) out.push(`<text x="${M.left + plotW / 2}" y="${M.top + plotH / 2}" text-anchor="middle" class="empty">no data in this period</text>`);
  out.push('</svg>');
  return out.join('');
}

export interface BarChartOptions {
  categories: string[];
  series: { label: string; color: string; values: number[] }[];
  format: (value: number) => string;
  yMax?: number;
  title: string;
  xLabel: string;
  width?: number;
  height?: number;
}

/** Grouped bars: one group per category, one bar per series. */
export function barChart(options: BarChartOptions): string {
  const width = options.width ?? 560;
  const height = options.height ?? 220;
  const plotW = width - M.left - M.right;
  const plotH = height - M.top - M.bottom - 12;
  const n = options.categories.length;
  const k = options.series.length;
  const yMax = options.yMax ?? niceMax(Math.max(0, ...options.series.flatMap((s) => s.values)));
  const y = (v: number) => M.top + (1 - Math.min(Math.max(v / yMax, 0), 1)) * plotH;
  const group = plotW / Math.max(n, 1);
  const bar = (group * 0.8) / Math.max(k, 1);
  const out: string[] = [];
  out.push(`<svg class="chart" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(options.title)}" xmlns="http://www.w3.org/2000/svg">`);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    out.push(`<line x1="${M.left}" x2="${M.left + plotW}" y1="${f1(y(v))}" y2="${f1(y(v))}" class="grid"/>`);
    out.push(`<text x="${M.left - 6}" y="${f1(y(v) + 4)}" text-anchor="end" class="tick">${escapeXml(options.format(v))}</text>`);
  }
  options.categories.forEach((category, i) => {
    const gx = M.left + i * group + group * 0.1;
    options.series.forEach((s, j) => {
      const v = s.values[i] ?? 0;
      out.push(
        `<rect x="${f1(gx + j * bar)}" y="${f1(y(v))}" width="${f1(bar - 1)}" height="${f1(M.top + plotH - y(v))}" fill="${s.color}" rx="1.5">` +
          `<title>${escapeXml(`${options.xLabel} ${category} ${s.label}: ${options.format(v)}`)}</title></rect>`,
      );
    });
    out.push(`<text x="${f1(gx + group * 0.4)}" y="${M.top + plotH + 16}" text-anchor="middle" class="tick">${escapeXml(category)}</text>`);
  });
  out.push(`<line x1="${M.left}" x2="${M.left + plotW}" y1="${M.top + plotH}" y2="${M.top + plotH}" class="axis"/>`);
  out.push(`<text x="${M.left + plotW / 2}" y="${height - 6}" text-anchor="middle" class="tick">${escapeXml(options.xLabel)}</text>`);
  out.push(legend(options.series, M.left, 16));
  out.push('</svg>');
  return out.join('');
}
