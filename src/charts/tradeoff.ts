import { xyChart, type XYPoint } from './xy.ts';

/**
 * The waste–coverage trade-off of `prewarm backtest --chart`: the swept policy as a line, the
 * recommended setting ringed, the baseline rules as labelled points. A standalone SVG file,
 * readable in any browser and diffable in a review.
 */
export interface TradeoffChart {
  title: string;
  subtitle?: string;
  /** The swept policy (x coverage, y waste, both 0–1), in any order. */
  curve: XYPoint[];
  curveLabel: string;
  chosen?: XYPoint;
  /** Reference points (the baselines). */
  references?: XYPoint[];
  /** Default 760 × 500. */
  width?: number;
  height?: number;
}

export function renderTradeoffSvg(chart: TradeoffChart): string {
  const svg = xyChart({
    title: chart.title,
    subtitle: chart.subtitle,
    xLabel: "coverage (share of known users' logins precomputed for)",
    yLabel: 'waste (share of precomputes never served)',
    format: (v) => `${Math.round(v * 100)}%`,
    lines: [{ label: chart.curveLabel, color: '#1f77b4', points: chart.curve }],
    markers: [
      { label: 'baseline rules', color: '#ff7f0e', mark: 'square', points: chart.references ?? [] },
      { label: 'recommended setting', color: '#d62728', mark: 'ring', points: chart.chosen ? [{ ...chart.chosen, label: chart.chosen.label ?? 'chosen' }] : [] },
    ],
    width: chart.width,
    height: chart.height,
  });
  return `${svg}\n`;
}
