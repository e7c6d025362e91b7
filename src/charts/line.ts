import { coord, escapeXml, hLine, INK, legendRow, niceMax, openSvg, shortDay, text, type Margins } from './svg.ts';

export interface Series {
  label: string;
  color: string;
  /** One value per category, null where there is none: the line breaks there. */
  values: (number | null)[];
  dashed?: boolean;
}

export interface LineChartOptions {
  /** X categories in order; `YYYY-MM-DD` days are labelled `Mar 5`. */
  categories: string[];
  series: Series[];
  /** Formats a y value for the axis and the tooltips. */
  format: (value: number) => string;
  /** Fixed y range; default 0 to the data's maximum, rounded up. */
  yMax?: number;
  /** Accessible name of the chart. */
  title: string;
  /** A label under the x axis (e.g. `UTC day`). */
  xLabel?: string;
  width?: number;
  height?: number;
}

export const MARGINS: Margins = { left: 56, right: 16, top: 28, bottom: 34 };

/** The y grid (five lines, 0 to yMax) with its tick labels. */
export function yGrid(m: Margins, plotW: number, yMax: number, y: (v: number) => number, format: (v: number) => string): string {
  const out: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    out.push(hLine(m.left, m.left + plotW, y(v), 'grid'));
    out.push(text(m.left - 6, y(v) + 4, format(v), { anchor: 'end', cls: 'tick', fill: INK.tick, size: 11 }));
  }
  return out.join('');
}

const finite = (v: number | null | undefined): v is number => v !== null && v !== undefined && Number.isFinite(v);

/** Lines over ordered categories (days), a dot per value with its tooltip, dates on the x axis. */
export function lineChart(options: LineChartOptions): string {
  const width = options.width ?? 560;
  const height = options.height ?? 220;
  const m = { ...MARGINS, bottom: MARGINS.bottom + (options.xLabel ? 12 : 0) };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const n = options.categories.length;
  const all = options.series.flatMap((s) => s.values).filter(finite);
  const yMax = options.yMax ?? niceMax(Math.max(0, ...all));
  const x = (i: number) => m.left + (n <= 1 ? plotW / 2 : (i / (n - 1)) * plotW);
  const y = (v: number) => m.top + (1 - Math.min(Math.max(v / yMax, 0), 1)) * plotH;
  const out: string[] = [openSvg({ width, height, title: options.title }), yGrid(m, plotW, yMax, y, options.format)];
  // Dates: at most ~8 labels, always the last one.
  const every = Math.max(1, Math.ceil(n / 8));
  options.categories.forEach((category, i) => {
    if (i % every !== 0 && i !== n - 1) return;
    if (i !== n - 1 && n - 1 - i < every) return;
    out.push(text(x(i), m.top + plotH + 16, shortDay(category), { anchor: 'middle', cls: 'tick', fill: INK.tick, size: 11 }));
  });
  out.push(hLine(m.left, m.left + plotW, m.top + plotH, 'axis'));
  if (options.xLabel) out.push(text(m.left + plotW / 2, height - 6, options.xLabel, { anchor: 'middle', cls: 'tick', fill: INK.tick, size: 11 }));
  for (const s of options.series) {
    let path = '';
    let pen = false;
    s.values.forEach((v, i) => {
      if (!finite(v)) {
        pen = false;
        return;
      }
      path += `${pen ? 'L' : 'M'}${coord(x(i))},${coord(y(v))} `;
      pen = true;
    });
    if (path) out.push(`<path d="${path.trim()}" fill="none" stroke="${s.color}" stroke-width="2.5" stroke-linejoin="round"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    s.values.forEach((v, i) => {
      if (!finite(v)) return;
      out.push(`<circle cx="${coord(x(i))}" cy="${coord(y(v))}" r="3.5" fill="${s.color}"><title>${escapeXml(`${options.categories[i] ?? ''} ${s.label}: ${options.format(v)}`)}</title></circle>`);
    });
  }
  out.push(legendRow(options.series, m.left, 16));
  if (all.length === 0) out.push(text(m.left + plotW / 2, m.top + plotH / 2, 'no data in this period', { anchor: 'middle', cls: 'empty', fill: INK.empty, size: 14 }));
  out.push('</svg>');
  return out.join('');
}
