import type { Command } from 'commander';
import { systemClock } from '../../clock.ts';
import { createPartitionMaintenance, type MaintenanceAction } from '../../maintenance/partitions.ts';
import { action, createCliContext, openPool } from '../runtime.ts';

function describe(a: MaintenanceAction): string {
  switch (a.kind) {
    case 'create':
      return `create ${a.partition} [${a.from}, ${a.to})${a.movedRows > 0 ? `, moving ${a.movedRows} rows from ${a.table}_default` : ''}`;
    case 'drop':
      return `drop ${a.partition} (ends ${a.to})`;
    case 'keep':
      return `keep ${a.partition} (ends ${a.to}): ${a.reason}`;
    case 'serve_counts':
      return `count the serves of the sets computed since ${a.from}${a.sets === null ? '' : ` (${a.sets} sets changed)`}`;
    case 'rollup':
      return a.runs === undefined ? `roll up ${a.table} for days [${a.from}, ${a.to})` : `roll up ${a.runs} runs into ${a.table} (${a.from} … ${a.to})`;
  }
}

export function registerMaintain(program: Command): void {
  program
    .command('maintain')
    .description('partition maintenance now: roll up closed days, create partitions ahead, drop those older than PREWARM_RETENTION')
    .option('--dry-run', 'print what would be done; change nothing')
    .option('--json', 'print the report as JSON')
    .action(
      action(async (flags: { dryRun?: boolean; json?: boolean }) => {
        const context = createCliContext();
        const pool = openPool(context, 'prewarm-maintain');
        try {
          const maintenance = createPartitionMaintenance({ pool, clock: systemClock, log: context.log, retentionMs: context.config.retentionMs });
          const report = await maintenance.run({ dryRun: flags.dryRun ?? false });
          if (flags.json) process.stdout.write(`${JSON.stringify(report)}\n`);
          else if (report.skipped) process.stdout.write('another process is maintaining partitions now; nothing done\n');
          else {
            const lines = report.actions.map((a) => `${flags.dryRun ? 'would ' : ''}${describe(a)}`);
            process.stdout.write(`retention cutoff ${report.cutoff}\n${lines.length > 0 ? lines.join('\n') : 'nothing to do'}\n`);
          }
        } finally {
          await pool.end();
        }
      }),
    );
}
