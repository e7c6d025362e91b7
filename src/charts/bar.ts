import { MARGINS, yGrid } from './line.ts';
import { coord, escapeXml, hLine, INK, legendRow, niceMax, openSvg, text } from './svg.ts';

export interface BarChartOptions {
  /** One group of bars per category (decile, source …). */
  categories: string[];
  series: { label: string; color: string; values: number[] }[];
  format: (value: number) => string;
  yMax?: number;
  title: string;
  /** Names the categories, under the x axis and in the tooltips. */
  xLabel: string;
  width?: number;
  height?: number;
}

/** Grouped bars: one group per category, one bar per series. */
export function barChart(options: BarChartOptions): string {
  const width = options.width ?? 560;
  const height = options.height ?? 220;
  const m = { ...MARGINS, bottom: MARGINS.bottom + 12 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const n = options.categories.length;
  const k = options.series.length;
  const yMax = options.yMax ?? niceMax(Math.max(0, ...options.series.flatMap((s) => s.values.filter(Number.isFinite))));
  const y = (v: number) => m.top + (1 - Math.min(Math.max(v / yMax, 0), 1)) * plotH;
  const group = plotW / Math.max(n, 1);
  const bar = (group * 0.8) / Math.max(k, 1);
  const out: string[] = [openSvg({ width, height, title: options.title }), yGrid(m, plotW, yMax, y, options.format)];
  options.categories.forEach((category, i) => {
    const gx = m.left + i * group + group * 0.1;
    options.series.forEach((s, j) => {
      const raw = s.values[i] ?? 0;
      const v = Number.isFinite(raw) ? raw : 0;
      out.push(
        `<rect x="${coord(gx + j * bar)}" y="${coord(y(v))}" width="${coord(Math.max(bar - 1, 0.5))}" height="${coord(m.top + plotH - y(v))}" fill="${s.color}" rx="1.5">` +
          `<title>${escapeXml(`${options.xLabel} ${category} ${s.label}: ${options.format(v)}`)}</title></rect>`,
      );
    });
    out.push(text(gx + group * 0.4, m.top + plotH + 16, category, { anchor: 'middle', cls: 'tick', fill: INK.tick, size: 11 }));
  });
  out.push(hLine(m.left, m.left + plotW, m.top + plotH, 'axis'));
  out.push(text(m.left + plotW / 2, height - 6, options.xLabel, { anchor: 'middle', cls: 'tick', fill: INK.tick, size: 11 }));
  out.push(legendRow(options.series, m.left, 16));
  if (n === 0) out.push(text(m.left + plotW / 2, m.top + plotH / 2, 'no data', { anchor: 'middle', cls: 'empty', fill: INK.empty, size: 14 }));
  out.push('</svg>');
  return out.join('');
}
