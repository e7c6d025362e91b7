import type { Command } from 'commander';
import { systemClock } from '../../clock.ts';
import { createDashboardFigures, type ChunkFailure, type RunFigures } from '../../dashboard/figures.ts';
import { pct, utc } from '../../dashboard/page.ts';
import { PrewarmError } from '../../errors.ts';
import { loadRunQuality, type RunQuality } from '../../propensity/quality.ts';
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

const figure = (x: number | null, digits = 4) => (x === null || !Number.isFinite(x) ? '—' : x.toFixed(digits));

/** The run's live model quality (model_quality_by_run), once its horizon ended and the scheduler evaluated it. */
export function qualityLines(quality: RunQuality | undefined, windowEnded: boolean): [string, string][] {
  if (!quality) return [['model quality', windowEnded ? 'not evaluated yet (the scheduler does it within 10 min)' : 'once the window has ended']];
  const trained = quality.trainedAveragePrecision === null ? '' : ` (at training: AP ${figure(quality.trainedAveragePrecision)}, ECE ${figure(quality.trainedCalibrationError)})`;
  return [
    ['model quality', `AP ${figure(quality.averagePrecision)}, ROC AUC ${figure(quality.rocAuc)}, calibration error ${figure(quality.calibrationError)}${trained}${quality.drifted ? ' — DRIFTED' : ''}`],
    ['scored', `${quality.recordedUsers} users recorded, standing for ${Math.round(quality.scoredUsers)} scored (${Math.round(quality.loggedIn)} logged in; weighted by the predictions sample)`],
    ['holdout misses', quality.holdoutUsers === 0 ? 'no holdout user' : `${quality.holdoutLoggedIn} of ${quality.holdoutUsers} holdout users logged in (${pct(quality.holdoutMissRate ?? Number.NaN, 1)})`],
    ['reliability', quality.reliability.map((bin) => `${figure(bin.meanPredicted, 3)}→${figure(bin.observedRate, 3)}`).join(' ')],
  ];
}

export function formatRunDetail(run: RunFigures, failures: ChunkFailure[], quality?: RunQuality): string {
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
  lines.push(...qualityLines(quality, run.windowEnded));
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
          const quality = await loadRunQuality(pool, id);
          process.stdout.write(
            flags.json ? `${JSON.stringify({ ...found.run, failures: found.failures, quality: quality ?? null }, null, 2)}\n` : formatRunDetail(found.run, found.failures, quality),
          );
        } finally {
          await pool.end();
        }
      }),
    );
}
