import type { Command } from 'commander';
import { systemClock } from '../../clock.ts';
import { createDashboardFigures, type ChunkFailure, type RunFigures } from '../../dashboard/figures.ts';
import { pct, utc } from '../../dashboard/page.ts';
import { PrewarmError } from '../../errors.ts';
import { action, createCliContext, openPool } from '../runtime.ts';

/** `1 h 05 min`, `6 min 12 s`, `850 ms`. */
export function formatElapsed(ms: number | null): string {
  if (ms === null) return '—';
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1_000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

const between = (from: Date | null, to: Date | null) => (from && to ? to.getTime() - from.getTime() : null);

/** Waste as the views know it: final once the window ended, "so far" before, "—" before any set ended. */
export function wasteText(run: RunFigures): string {
  if (run.wasteRate === null) return run.sets === 0 ? '—' : 'not known yet';
  return `${pct(run.wasteRate, 1)}${run.windowEnded ? '' : ' so far'}`;
}

export function coverageText(run: RunFigures): string {
  return run.coverage === null ? (run.windowEnded ? '—' : 'not known yet') : pct(run.coverage, 1);
}

export function formatRunLine(run: RunFigures): string {
  const counts = `${run.precomputed}/${run.selected + run.holdout} precomputed${run.failed > 0 ? `, ${run.failed} failed` : ''}`;
  return [
    `#${run.id}`.padEnd(6),
    run.window.padEnd(14),
    utc(run.scheduledFor).padEnd(21),
    run.status.padEnd(10),
    counts.padEnd(30),
    `waste ${wasteText(run)}`.padEnd(20),
    `coverage ${coverageText(run)}`,
  ].join(' ');
}

export function formatRunDetail(run: RunFigures, failures: ChunkFailure[]): string {
  const lines: [string, string][] = [
    ['run', `#${run.id} of window ${run.window}, occurrence ${utc(run.scheduledFor)}`],
    ['status', run.status],
    ['policy', `${run.policy}${run.modelVersion ? ` (propensity model ${run.modelVersion})` : ''}`],
    ['users', `${run.candidates} scored, ${run.selected} selected, ${run.holdout} holdout; ${run.precomputed} precomputed, ${run.failed} failed`],
    ['chunks', `${run.chunksDone} of ${run.chunksTotal} done`],
    ['planning', formatElapsed(between(run.startedAt, run.plannedAt))],
    ['finished', run.finishedAt ? `${utc(run.finishedAt)}, ${formatElapsed(between(run.scheduledFor, run.finishedAt))} after the occurrence` : 'not yet'],
    ['compute', `${formatElapsed(run.computeMs)} in the recommender`],
    ['sets fresh until', `${utc(run.expiresAt)}${run.windowEnded ? ' (window ended)' : ''}`],
    ['waste', `${wasteText(run)} (${run.setsWasted} wasted of ${run.setsEnded} ended, ${run.sets} policy sets; expected ${pct(run.expectedWaste, 1)})`],
    ['coverage', `${coverageText(run)}${run.coverage === null ? '' : ` (${run.covered} of ${run.activeKnown} known users who logged in)`}; expected ${pct(run.expectedCoverage, 1)}`],
  ];
  if (run.error) lines.push(['error', run.error]);
  for (const failure of failures) {
    lines.push(['failure', `chunk ${failure.chunkNo}: ${failure.failed} of ${failure.users} users failed${failure.error ? `: ${failure.error}` : ''}`]);
  }
  const width = Math.max(...lines.map(([label]) => label.length));
  return `${lines.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n')}\n`;
}

function parseRunId(text: string): number {
  if (!/^[1-9][0-9]{0,15}$/.test(text)) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `run id must be a positive whole number, not "${text}"`);
  return Number(text);
}

function parseLimit(text: string): number {
  if (!/^[1-9][0-9]{0,3}$/.test(text)) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--limit must be a whole number from 1 to 9999, not "${text}"`);
  return Number(text);
}

export function registerRuns(program: Command): void {
  const runs = program.command('runs').description('batch runs: status, counts, durations, failures, waste and coverage');

  runs
    .command('list')
    .description('the latest runs, newest first')
    .option('--window <name>', 'only runs of this window')
    .option('--limit <n>', 'how many runs (default 20)', '20')
    .option('--json', 'print JSON')
    .action(
      action(async (flags: { window?: string; limit: string; json?: boolean }) => {
        const limit = parseLimit(flags.limit);
        const context = createCliContext();
        const pool = openPool(context, 'prewarm-runs');
        try {
          const list = await createDashboardFigures({ pool, clock: systemClock }).runs({ window: flags.window, limit });
          if (flags.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
          else if (list.length === 0) process.stdout.write(`no runs${flags.window ? ` of window ${flags.window}` : ''} yet\n`);
          else process.stdout.write(`${list.map(formatRunLine).join('\n')}\n`);
        } finally {
          await pool.end();
        }
      }),
    );

  runs
    .command('show')
    .description('one run in detail')
    .argument('<id>', 'run id (prewarm runs list)')
    .option('--json', 'print JSON')
    .action(
      action(async (text: string, flags: { json?: boolean }) => {
        const id = parseRunId(text);
        const context = createCliContext();
        const pool = openPool(context, 'prewarm-runs');
        try {
          const found = await createDashboardFigures({ pool, clock: systemClock }).run(id);
          if (!found) throw new Error(`no run #${id}`);
          process.stdout.write(flags.json ? `${JSON.stringify({ ...found.run, failures: found.failures }, null, 2)}\n` : formatRunDetail(found.run, found.failures));
        } finally {
          await pool.end();
        }
      }),
    );
}
