// The building blocks every chart shares: escaping, number and date formatting for axes, the
// root element and the legend. Charts carry their colours and fonts as SVG presentation
// attributes, so the same markup reads the same inline in a page (where CSS may restyle it via
// the class names) and as a standalone .svg file.

export function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;').replaceAll("'", '&#39;');
}

/** A coordinate with at most one decimal: short markup, sub-pixel precision is invisible. */
export function coord(v: number): string {
  return (Math.round(v * 10) / 10).toString();
}

/** The smallest "round" number (1, 1.2, 1.5, 2, 2.5 … × 10^k) at or above `value`; 1 for none. */
function roundUp(value: number): number {
  if (!(value > 0) || !Number.isFinite(value)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

/** The top of a 0-based axis at or above `max` whose `steps` grid lines all fall on round values (6, 12, 18, 24 h). */
export function niceMax(max: number, steps = 4): number {
  return steps * roundUp(max / steps);
}

/** `2024-03-05` → `Mar 5`; anything that is not a date is returned as it is. */
export function shortDay(day: string): string {
  const date = new Date(`${day}T00:00:00Z`);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day) || Number.isNaN(date.getTime())) return day;
  return date.toLocaleDateString('en-GB', { month: 'short', day: 'numeric', timeZone: 'UTC' }).replace(/^(\d+) (\w+)$/, '$2 $1');
}

export interface Margins {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

export const INK = { tick: '#475569', grid: '#e2e8f0', axis: '#94a3b8', legend: '#334155', empty: '#94a3b8', title: '#0f172a', subtitle: '#555555' };

/** The root element: `xmlns` first (a standalone file starts with it), named for screen readers. */
export function openSvg(options: { width: number; height: number; title: string }): string {
  const { width, height } = options;
  return `<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(options.title)}" font-family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif" font-size="12">`;
}

export function text(x: number, y: number, content: string, attrs: { anchor?: 'start' | 'middle' | 'end'; cls?: string; fill?: string; size?: number; weight?: string; transform?: string } = {}): string {
  const position = attrs.transform ? `transform="${attrs.transform}"` : `x="${coord(x)}" y="${coord(y)}"`;
  return (
    `<text ${position}${attrs.anchor && attrs.anchor !== 'start' ? ` text-anchor="${attrs.anchor}"` : ''}${attrs.cls ? ` class="${attrs.cls}"` : ''}` +
    `${attrs.fill ? ` fill="${attrs.fill}"` : ''}${attrs.size ? ` font-size="${attrs.size}"` : ''}${attrs.weight ? ` font-weight="${attrs.weight}"` : ''}>${escapeXml(content)}</text>`
  );
}

export function hLine(x1: number, x2: number, y: number, cls: 'grid' | 'axis'): string {
  return `<line x1="${coord(x1)}" x2="${coord(x2)}" y1="${coord(y)}" y2="${coord(y)}" class="${cls}" stroke="${INK[cls]}"/>`;
}

export function vLine(x: number, y1: number, y2: number, cls: 'grid' | 'axis'): string {
  return `<line x1="${coord(x)}" x2="${coord(x)}" y1="${coord(y1)}" y2="${coord(y2)}" class="${cls}" stroke="${INK[cls]}"/>`;
}

/** A series' key: a line sample (dashed or not), a filled square or a ring. */
export interface LegendItem {
  label: string;
  color: string;
  mark?: 'line' | 'square' | 'ring';
  dashed?: boolean;
}

function legendMark(item: LegendItem, x: number, y: number): string {
  switch (item.mark ?? 'line') {
    case 'square':
      return `<rect x="${coord(x + 5)}" y="${coord(y - 8)}" width="8" height="8" fill="${item.color}"/>`;
    case 'ring':
      return `<circle cx="${coord(x + 9)}" cy="${coord(y - 4)}" r="6" fill="none" stroke="${item.color}" stroke-width="2"/>`;
    default:
      return `<line x1="${coord(x)}" y1="${coord(y - 4)}" x2="${coord(x + 18)}" y2="${coord(y - 4)}" stroke="${item.color}" stroke-width="3"${item.dashed ? ' stroke-dasharray="5 3"' : ''}/>`;
  }
}

/** Items side by side from (x, y), the text baseline at y. */
export function legendRow(items: LegendItem[], x: number, y: number): string {
  let offset = x;
  return items
    .map((item) => {
      const out = legendMark(item, offset, y) + text(offset + 23, y, item.label, { cls: 'legend', fill: INK.legend });
      offset += 40 + item.label.length * 7.2;
      return out;
    })
    .join('');
}

/** Items one under the other in a white box whose top-left corner is (x, y). */
export function legendBox(items: LegendItem[], x: number, y: number, width: number): string {
  const rowH = 22;
  const out = [`<rect x="${coord(x)}" y="${coord(y)}" width="${width}" height="${items.length * rowH + 10}" fill="#ffffff" stroke="#cccccc"/>`];
  items.forEach((item, i) => {
    const baseline = y + 20 + i * rowH;
    out.push(legendMark(item, x + 8, baseline) + text(x + 38, baseline, item.label, { cls: 'legend', fill: INK.legend }));
  });
  return out.join('');
}
