/**
 * A small hand-written SVG line chart of the waste–coverage trade-off: the swept policy as a
 * line, the recommended setting ringed, the baseline rules as labelled points. Plain SVG 1.1
 * text, no dependency, readable in any browser and diffable in a review.
 */

export interface ChartPoint {
  /** Coverage, 0–1. */
  x: number;
  /** Waste, 0–1. */
  y: number;
  label?: string;
}

export interface TradeoffChart {
  title: string;
  subtitle?: string;
  /** The swept policy, in any order (drawn sorted by coverage). */
  curve: ChartPoint[];
  curveLabel: string;
  chosen?: ChartPoint;
  /** Reference points (the baselines). */
  references?: ChartPoint[];
  /** Default 760 × 500. */
  width?: number;
  height?: number;
}

const MARGIN = { left: 64, right: 24, top: 56, bottom: 56 };

export function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

function fmt(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

export function renderTradeoffSvg(chart: TradeoffChart): string {
  const width = chart.width ?? 760;
  const height = chart.height ?? 500;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const clamp = (v: number) => (Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0);
  const px = (x: number) => MARGIN.left + clamp(x) * plotW;
  const py = (y: number) => MARGIN.top + (1 - clamp(y)) * plotH;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${MARGIN.left}" y="24" font-size="16" font-weight="bold">${escapeXml(chart.title)}</text>`);
  if (chart.subtitle) out.push(`<text x="${MARGIN.left}" y="42" fill="#555">${escapeXml(chart.subtitle)}</text>`);

  // Grid and axes: both in percent, 0–100.
  for (let i = 0; i <= 10; i++) {
    const v = i / 10;
    out.push(`<line x1="${fmt(px(v))}" y1="${MARGIN.top}" x2="${fmt(px(v))}" y2="${MARGIN.top + plotH}" stroke="#e5e5e5"/>`);
    out.push(`<line x1="${MARGIN.left}" y1="${fmt(py(v))}" x2="${MARGIN.left + plotW}" y2="${fmt(py(v))}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${fmt(px(v))}" y="${MARGIN.top + plotH + 16}" text-anchor="middle" fill="#333">${i * 10}%</text>`);
    out.push(`<text x="${MARGIN.left - 8}" y="${fmt(py(v) + 4)}" text-anchor="end" fill="#333">${i * 10}%</text>`);
  }
  out.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${MARGIN.left + plotW / 2}" y="${height - 14}" text-anchor="middle">coverage (share of known users' logins precomputed for)</text>`);
  out.push(`<text transform="translate(18 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">waste (share of precomputes never served)</text>`);

  const curve = chart.curve.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).sort((a, b) => a.x - b.x || a.y - b.y);
  if (curve.length > 0) {
    const path = curve.map((p, i) => `${i === 0 ? 'M' : 'L'}${fmt(px(p.x))},${fmt(py(p.y))}`).join(' ');
    out.push(`<path d="${path}" fill="none" stroke="#1f77b4" stroke-width="2"/>`);
    for (const p of curve) out.push(`<circle cx="${fmt(px(p.x))}" cy="${fmt(py(p.y))}" r="2" fill="#1f77b4"><title>${escapeXml(p.label ?? '')}</title></circle>`);
  }
  for (const ref of chart.references ?? []) {
    const x = px(ref.x);
    const y = py(ref.y);
    out.push(`<rect x="${fmt(x - 4)}" y="${fmt(y - 4)}" width="8" height="8" fill="#ff7f0e"/>`);
    out.push(`<text x="${fmt(x + 7)}" y="${fmt(y - 6)}" fill="#a0522d">${escapeXml(ref.label ?? '')}</text>`);
  }
  if (chart.chosen) {
    const x = px(chart.chosen.x);
    const y = py(chart.chosen.y);
    out.push(`<circle cx="${fmt(x)}" cy="${fmt(y)}" r="8" fill="none" stroke="#d62728" stroke-width="3"/>`);
    out.push(`<text x="${fmt(x + 12)}" y="${fmt(y + 18)}" fill="#d62728" font-weight="bold">${escapeXml(chart.chosen.label ?? 'chosen')}</text>`);
  }
  // Legend.
  const lx = MARGIN.left + plotW - 200;
  const ly = MARGIN.top + 14;
  out.push(`<rect x="${lx - 8}" y="${ly - 14}" width="200" height="58" fill="#ffffff" stroke="#ccc"/>`);
  out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 24}" y2="${ly}" stroke="#1f77b4" stroke-width="2"/><text x="${lx + 30}" y="${ly + 4}">${escapeXml(chart.curveLabel)}</text>`);
  out.push(`<rect x="${lx + 8}" y="${ly + 14}" width="8" height="8" fill="#ff7f0e"/><text x="${lx + 30}" y="${ly + 22}">baseline rules</text>`);
  out.push(`<circle cx="${lx + 12}" cy="${ly + 36}" r="6" fill="none" stroke="#d62728" stroke-width="2"/><text x="${lx + 30}" y="${ly + 40}">recommended setting</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
