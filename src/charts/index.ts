// The one chart module: the dashboard, `prewarm report --format html`, the replay's HTML report
// and the backtest's trade-off chart all draw with it. Plain SVG strings, no script, no dependency.
export { barChart, type BarChartOptions } from './bar.ts';
export { lineChart, type LineChartOptions, type Series } from './line.ts';
export { escapeXml, shortDay } from './svg.ts';
export { renderTradeoffSvg, type TradeoffChart } from './tradeoff.ts';
export { xyChart, type XYChartOptions, type XYPoint } from './xy.ts';
