import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { createReport, type PolicyReport } from '../../accounting/report.ts';
import { systemClock } from '../../clock.ts';
import { createDashboardFigures, dayOf } from '../../dashboard/figures.ts';
import { renderReportHtml } from '../../dashboard/page.ts';
import { PrewarmError } from '../../errors.ts';
import { parseInstant } from '../flags.ts';
import { action, createCliContext, openPool } from '../runtime.ts';

const percent = (value: number | null) => (value === null ? '—' : `${(value * 100).toFixed(1)}%`);
const ms = (value: number | null | undefined) => (value === null || value === undefined ? '—' : `${Math.round(value)} ms`);

export const REPORT_FORMATS = ['table', 'json', 'html'] as const;
export type ReportFormat = (typeof REPORT_FORMATS)[number];

export function formatReport(report: PolicyReport): string {
  const sources = Object.keys(report.latencyP50Ms).sort();
  const lines = [
    `logins                 ${report.logins} (${Object.entries(report.servesBySource).map(([s, n]) => `${s} ${n}`).join(', ') || 'none'})`,
    `precomputes            ${report.precomputes}`,
    `wasted                 ${report.wasted} (waste rate ${percent(report.waste)})`,
    `coverage               ${percent(report.coverage)} of ${report.knownActiveUserWindows} known active user-windows`,
    `login coverage         ${percent(report.loginCoverage)}`,
    `staleness p50 / p95    ${ms(report.stalenessP50Ms)} / ${ms(report.stalenessP95Ms)}`,
    `on-demand computations ${report.onDemand}`,
    `compute batch / demand ${ms(report.batchComputeMs)} / ${ms(report.onDemandComputeMs)}`,
    ...sources.map((source) => `latency ${source.padEnd(12)}   p50 ${ms(report.latencyP50Ms[source])}, p99 ${ms(report.latencyP99Ms[source])}`),
  ];
  return `${lines.join('\n')}\n`;
}

interface ReportFlags {
  from?: string;
  to?: string;
  window?: string;
  format?: string;
  json?: boolean;
  out?: string;
}

export interface ReportRequest {
  format: ReportFormat;
  from: Date | undefined;
  to: Date | undefined;
  window: string | undefined;
  out: string | undefined;
}

const DAY_MS = 86_400_000;
const isReportFormat = (text: string): text is ReportFormat => (REPORT_FORMATS as readonly string[]).includes(text);

/** Every flag checked before the database is opened or a file written; a bad one is bad input (exit 2). */
export function parseReportFlags(flags: ReportFlags, now = new Date()): ReportRequest {
  const format = flags.format ?? (flags.json ? 'json' : 'table');
  if (!isReportFormat(format)) {
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--format: expected one of ${REPORT_FORMATS.join(', ')}, got "${format}"`);
  }
  if (flags.json && format !== 'json') throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--json is --format json; it cannot go with --format ${format}`);
  const from = flags.from === undefined ? undefined : parseInstant(flags.from, '--from');
  const to = flags.to === undefined ? undefined : parseInstant(flags.to, '--to');
  if (from && to && from.getTime() >= to.getTime()) {
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--from ${flags.from} is not before --to ${flags.to} (the period is [from, to))`);
  }
  if (format === 'html') {
    // The HTML's figures and charts are by UTC day (the views' days): a period cut inside a day
    // would show figures of instants it does not cover.
    for (const [flag, at, text] of [['--from', from, flags.from], ['--to', to, flags.to]] as const) {
      if (at && at.getTime() % DAY_MS !== 0) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `${flag} ${text}: --format html reports whole UTC days; give a date (2024-03-01) or a UTC midnight`);
    }
    if (from && !to && from.getTime() > now.getTime()) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--from ${flags.from} is after today, where the period ends without --to`);
  }
  if (flags.window !== undefined && flags.window.trim() === '') throw new PrewarmError('PREWARM_ERR_BAD_INPUT', '--window: expected a window name, got an empty string');
  if (flags.out !== undefined && flags.out.trim() === '') throw new PrewarmError('PREWARM_ERR_BAD_INPUT', '--out: expected a file name, got an empty string');
  return { format, from, to, window: flags.window, out: flags.out };
}

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('waste, coverage, staleness, latency and compute spent, read from the Postgres views, as a table, JSON or one self-contained HTML file')
    .option('--from <date>', 'start of the period (date or ISO time)')
    .option('--to <date>', 'end of the period, exclusive')
    .option('--window <name>', 'only runs of this batch window (waste and coverage)')
    .option('--format <format>', `${REPORT_FORMATS.join(' | ')} (default table)`)
    .option('--json', 'the same as --format json')
    .option('--out <file>', 'write the report to this file instead of stdout')
    .addHelpText(
      'after',
      `
Examples:
  prewarm report --from 2024-03-01 --to 2024-03-08
  prewarm report --window nightly --format json
  prewarm report --from 2024-03-01 --format html --out reports/march.html`,
    )
    .action(
      action(async (flags: ReportFlags) => {
        const request = parseReportFlags(flags);
        const context = createCliContext();
        const pool = openPool(context, 'prewarm-report');
        let output: string;
        try {
          const figures = createDashboardFigures({ pool, clock: systemClock });
          if (request.window !== undefined && !(await figures.knowsWindow(request.window))) {
            throw new PrewarmError('PREWARM_ERR_UNKNOWN_WINDOW', `--window: no window named "${request.window}" (see prewarm windows list)`);
          }
          if (request.format === 'html') {
            const overview = await figures.period({
              from: request.from && dayOf(request.from),
              to: request.to && dayOf(new Date(request.to.getTime() - DAY_MS)),
              window: request.window,
            });
            output = renderReportHtml(overview);
          } else {
            const report = await createReport({ pool }).summary({ asOf: new Date(), from: request.from, to: request.to, window: request.window });
            output = request.format === 'json' ? `${JSON.stringify(report)}\n` : formatReport(report);
          }
        } finally {
          await pool.end();
        }
        if (request.out === undefined) {
          process.stdout.write(output);
        } else {
          const path = resolve(request.out);
          mkdirSync(dirname(path), { recursive: true });
          writeFileSync(path, output);
          process.stdout.write(`report written to ${path}\n`);
        }
      }),
    );
}
