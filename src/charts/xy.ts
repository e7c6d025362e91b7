import { coord, escapeXml, hLine, INK, legendBox, openSvg, text, vLine, type LegendItem, type Margins } from './svg.ts';

export interface XYPoint {
  x: number;
  y: number;
  /** Tooltip of a line's point; the printed label of a marker. */
  label?: string;
}

export interface XYChartOptions {
  title: string;
  /** Printed under the title (the title is printed too: the chart stands alone as a file). */
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  /** Both axes run from 0 to their max (default 1) with `ticks` steps (default 10). */
  xMax?: number;
  yMax?: number;
  ticks?: number;
  format: (value: number) => string;
  /** Lines through their points, drawn sorted by x. */
  lines: { label: string; color: string; points: XYPoint[] }[];
  /** Labelled points: filled squares (references) or rings (a chosen point). */
  markers?: { label: string; color: string; mark: 'square' | 'ring'; points: XYPoint[] }[];
  width?: number;
  height?: number;
  margins?: Margins;
}

const DEFAULT_MARGINS: Margins = { left: 64, right: 24, top: 56, bottom: 56 };

/** A numeric x–y chart with a full grid, a framed plot and a boxed legend (e.g. waste against coverage). */
export function xyChart(options: XYChartOptions): string {
  const width = options.width ?? 760;
  const height = options.height ?? 500;
  const m = options.margins ?? DEFAULT_MARGINS;
  const xMax = options.xMax ?? 1;
  const yMax = options.yMax ?? 1;
  const ticks = options.ticks ?? 10;
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const clamp = (v: number) => (Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0);
  const px = (x: number) => m.left + clamp(x / xMax) * plotW;
  const py = (y: number) => m.top + (1 - clamp(y / yMax)) * plotH;
  const out: string[] = [openSvg({ width, height, title: options.title }), `<rect width="${width}" height="${height}" fill="#ffffff"/>`];
  out.push(text(m.left, 24, options.title, { size: 16, weight: 'bold', fill: INK.title }));
  if (options.subtitle) out.push(text(m.left, 42, options.subtitle, { fill: INK.subtitle }));
  for (let i = 0; i <= ticks; i++) {
    const xv = (xMax * i) / ticks;
    const yv = (yMax * i) / ticks;
    out.push(vLine(px(xv), m.top, m.top + plotH, 'grid'), hLine(m.left, m.left + plotW, py(yv), 'grid'));
    out.push(text(px(xv), m.top + plotH + 16, options.format(xv), { anchor: 'middle', cls: 'tick', fill: INK.tick }));
    out.push(text(m.left - 8, py(yv) + 4, options.format(yv), { anchor: 'end', cls: 'tick', fill: INK.tick }));
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333333"/>`);
  out.push(text(m.left + plotW / 2, height - 14, options.xLabel, { anchor: 'middle' }));
  out.push(text(0, 0, options.yLabel, { anchor: 'middle', transform: `translate(18 ${coord(m.top + plotH / 2)}) rotate(-90)` }));

  for (const line of options.lines) {
    const points = line.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).sort((a, b) => a.x - b.x || a.y - b.y);
    if (points.length === 0) continue;
    out.push(`<path d="${points.map((p, i) => `${i === 0 ? 'M' : 'L'}${coord(px(p.x))},${coord(py(p.y))}`).join(' ')}" fill="none" stroke="${line.color}" stroke-width="2"/>`);
    for (const p of points) out.push(`<circle cx="${coord(px(p.x))}" cy="${coord(py(p.y))}" r="2" fill="${line.color}"><title>${escapeXml(p.label ?? '')}</title></circle>`);
  }
  for (const marker of options.markers ?? []) {
    for (const p of marker.points) {
      const x = px(p.x);
      const y = py(p.y);
      if (marker.mark === 'square') {
        out.push(`<rect x="${coord(x - 4)}" y="${coord(y - 4)}" width="8" height="8" fill="${marker.color}"/>`);
        out.push(text(x + 7, y - 6, p.label ?? '', { fill: marker.color }));
      } else {
        out.push(`<circle cx="${coord(x)}" cy="${coord(y)}" r="8" fill="none" stroke="${marker.color}" stroke-width="3"/>`);
        out.push(text(x + 12, y + 18, p.label ?? '', { fill: marker.color, weight: 'bold' }));
      }
    }
  }
  const legend: LegendItem[] = [
    ...options.lines.map((l) => ({ label: l.label, color: l.color })),
    ...(options.markers ?? []).map((mk) => ({ label: mk.label, color: mk.color, mark: mk.mark })),
  ];
  out.push(legendBox(legend, m.left + plotW - 208, m.top + 8, 200));
  out.push('</svg>');
  return out.join('\n');
}
