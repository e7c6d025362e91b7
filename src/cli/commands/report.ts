import type { Command } from 'commander';
import { createReport, type PolicyReport } from '../../accounting/report.ts';
import { parseInstant } from '../flags.ts';
import { action, createCliContext, openPool } from '../runtime.ts';

const percent = (value: number | null) => (value === null ? '—' : `${(value * 100).toFixed(1)}%`);
const ms = (value: number | null | undefined) => (value === null || value === undefined ? '—' : `${Math.round(value)} ms`);

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

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('waste, coverage, staleness, latency and compute spent, read from the Postgres views')
    .option('--from <date>', 'start of the period (date or ISO time)')
    .option('--to <date>', 'end of the period, exclusive')
    .option('--window <name>', 'only runs of this batch window (waste and coverage)')
    .option('--json', 'print one JSON object')
    .action(
      action(async (options: { from?: string; to?: string; window?: string; json?: boolean }) => {
        const from = options.from === undefined ? undefined : parseInstant(options.from, '--from');
        const to = options.to === undefined ? undefined : parseInstant(options.to, '--to');
        const context = createCliContext();
        const pool = openPool(context, 'prewarm-report');
        try {
          const report = await createReport({ pool }).summary({ asOf: new Date(), from, to, window: options.window });
          process.stdout.write(options.json ? `${JSON.stringify(report)}\n` : formatReport(report));
        } finally {
          await pool.end();
        }
      }),
    );
}
