import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { PrewarmError } from '../../errors.ts';
import { backtestLog, GOAL_SYNTAX, parseGoal, SWEEP_KINDS, type BacktestReport, type SweepKind } from '../../propensity/backtest.ts';
import { renderTradeoffSvg } from '../../charts/index.ts';
import { action } from '../runtime.ts';
import { parseTestPeriodFlags } from '../flags.ts';
import { count, parseCountFlag, pct, readLoginsFlag, table } from './evaluate.ts';

interface BacktestFlags {
  logins: string;
  window: string;
  testFrom: string;
  testTo?: string;
  sweep: string;
  goal: string;
  values?: string;
  trainWindows?: string;
  chart?: string;
  json?: boolean;
}

function parseSweep(text: string): SweepKind {
  if ((SWEEP_KINDS as readonly string[]).includes(text)) return text as SweepKind;
  throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--sweep "${text}" must be one of ${SWEEP_KINDS.join(', ')}`);
}

function parseValues(text: string | undefined, sweep: SweepKind): number[] | undefined {
  if (text === undefined) return undefined;
  const values = text.split(',').map((part) => Number(part.trim()));
  for (const value of values) {
    const ok = sweep === 'budget' ? Number.isInteger(value) && value >= 0 : Number.isFinite(value) && value >= 0 && value <= 1;
    if (!ok) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--values "${text}": each ${sweep} setting must be ${sweep === 'budget' ? 'a whole number ≥ 0' : 'a fraction between 0 and 1'}`);
  }
  return [...new Set(values)].sort((a, b) => a - b);
}

export function registerBacktest(program: Command): void {
  program
    .command('backtest')
    .description('sweep a policy parameter over a past period and recommend the setting that meets a goal')
    .requiredOption('--logins <file>', 'logins CSV (user_id,ts), plain or gzip')
    .option('--window <length>', 'window length: 1d, 6h or 1h, aligned to UTC midnight', '1d')
    .requiredOption('--test-from <date>', 'first window of the backtest period; the model trains on the windows before it')
    .option('--test-to <date>', 'end of the period, exclusive (default: end of the last window with a login)')
    .requiredOption('--sweep <parameter>', `policy parameter to sweep: ${SWEEP_KINDS.join(' | ')}`)
    .requiredOption('--goal <goal>', `the operator's goal: ${GOAL_SYNTAX}`)
    .option('--values <list>', 'comma-separated settings to try (default: a grid suited to the parameter)')
    .option('--train-windows <n>', 'windows before --test-from to train and calibrate on (default: 26 weeks of windows)')
    .option('--chart <file.svg>', 'write the waste–coverage trade-off curve as an SVG chart')
    .option('--json', 'print one JSON object instead of the tables')
    .addHelpText(
      'after',
      `
Goals:
  coverage>=0.8     cover at least 80% of the known users' logins, with the least waste
  waste<=0.5        the most coverage while wasting at most 50% of the precomputes
  budget<=100000    the most coverage with at most 100 000 users precomputed in any window

Examples:
  prewarm generate --out data --gzip      # a synthetic log (60 days from 2024-01-01) to try it on
  prewarm backtest --logins data/logins.csv.gz --test-from 2024-02-01 --sweep threshold --goal "coverage>=0.8" --chart reports/threshold.svg
  prewarm backtest --logins logins.csv.gz --test-from 2004-07-15 --sweep budget --goal "budget<=100" --json`,
    )
    .action(
      action(async (flags: BacktestFlags) => {
        const { windowMs, testFromMs, testToMs } = parseTestPeriodFlags(flags);
        const sweep = parseSweep(flags.sweep);
        const goal = parseGoal(flags.goal);
        const values = parseValues(flags.values, sweep);
        const trainWindows = parseCountFlag(flags.trainWindows, '--train-windows', 2);
        if (flags.chart !== undefined && !flags.chart.toLowerCase().endsWith('.svg')) {
          throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--chart "${flags.chart}" must name an .svg file (the chart is written as SVG)`);
        }
        const { log } = await readLoginsFlag(flags.logins);
        const report = backtestLog(log, { windowMs, testFromMs, testToMs, trainWindows, sweep, goal, values });
        let chartPath: string | undefined;
        if (flags.chart !== undefined) {
          chartPath = resolve(flags.chart);
          mkdirSync(dirname(chartPath), { recursive: true });
          writeFileSync(chartPath, renderChart(report, flags.logins));
        }
        if (flags.json) {
          process.stdout.write(`${JSON.stringify({ ...report, ...(chartPath ? { chart: chartPath } : {}) })}\n`);
          return;
        }
        process.stdout.write(formatBacktest(report, chartPath));
      }),
    );
}

export function renderChart(report: BacktestReport, source: string): string {
  return renderTradeoffSvg({
    title: `Backtest: ${report.sweep} sweep, goal ${report.goal}`,
    subtitle: `${source}, ${report.window} windows, ${report.testFrom.slice(0, 10)} → ${report.testTo.slice(0, 10)}`,
    curve: report.points.map((p) => ({ x: p.coverage, y: p.waste, label: `${p.policy}: coverage ${pct(p.coverage)}, waste ${pct(p.waste)}` })),
    curveLabel: `model, ${report.sweep} swept`,
    ...(report.recommended ? { chosen: { x: report.recommended.coverage, y: report.recommended.waste, label: report.recommended.policy ?? String(report.recommended.setting) } } : {}),
    references: report.baselines.map((b) => ({ x: b.coverage, y: b.waste, label: b.name })),
  });
}

export function formatBacktest(report: BacktestReport, chartPath?: string): string {
  const out: string[] = [];
  out.push(`backtest: ${report.sweep} sweep, goal ${report.goal}, ${report.window} windows, ${report.testFrom.slice(0, 10)} → ${report.testTo.slice(0, 10)} (${report.testWindows} windows)`);
  out.push(`known user-windows ${count(report.knownUserWindows)}, active ${count(report.activeUserWindows)}`);
  out.push('');
  out.push(
    table(
      ['setting', 'volume', 'waste', 'coverage', 'users/window', 'max users/window', 'meets goal'],
      report.points.map((p) => [
        p.policy ?? String(p.setting),
        pct(p.volume),
        pct(p.waste),
        pct(p.coverage),
        count(Math.round(p.meanSelected)),
        count(p.maxSelected),
        p === report.recommended ? 'yes ◀' : p.meetsGoal ? 'yes' : '',
      ]),
    ),
  );
  out.push('Baselines:');
  out.push(table(['policy', 'volume', 'waste', 'coverage'], report.baselines.map((b) => [b.name, pct(b.volume), pct(b.waste), pct(b.coverage)])));
  out.push(`Recommendation: ${report.explanation}`);
  if (chartPath) out.push(`chart: ${chartPath}`);
  return out.join('\n') + '\n';
}
