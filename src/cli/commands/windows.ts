import type { Command } from 'commander';
import { systemClock } from '../../clock.ts';
import { formatDuration } from '../../duration.ts';
import { PrewarmError } from '../../errors.ts';
import { formatPolicy, POLICY_SYNTAX } from '../../planner/policy.ts';
import { nextOccurrence } from '../../planner/cron.ts';
import { createRunStore, type BatchRun } from '../../planner/runs.ts';
import { createWindowStore, describeWindow, MAX_CHUNK_SIZE, MAX_HOLDOUT_RATE, MAX_PRIORITY, MAX_TIMING_RISK, type Window, type WindowSettings } from '../../planner/windows.ts';
import { createDashboardFigures, type RunFigures } from '../../dashboard/figures.ts';
import { action, createCliContext, openPool } from '../runtime.ts';
import { coverageText, wasteText } from './runs.ts';

interface SetFlags {
  cron?: string;
  tz?: string;
  ttl?: string;
  horizon?: string;
  policy?: string;
  chunkSize?: string;
  priority?: string;
  holdoutRate?: string;
  timing?: string;
  timingSlot?: string;
  timingRisk?: string;
  disabled?: boolean;
}

function number(flag: string, text: string, integer: boolean): number {
  const trimmed = text.trim();
  const value = Number(trimmed);
  if (trimmed === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new PrewarmError('PREWARM_ERR_BAD_WINDOW', `--${flag} must be ${integer ? 'a whole number' : 'a number'}, not "${text}"`);
  }
  return value;
}

export function settingsFromFlags(flags: SetFlags): WindowSettings {
  const settings: WindowSettings = {};
  if (flags.cron !== undefined) settings.cron = flags.cron;
  if (flags.tz !== undefined) settings.timezone = flags.tz;
  if (flags.ttl !== undefined) settings.ttl = flags.ttl;
  if (flags.horizon !== undefined) settings.horizon = flags.horizon;
  if (flags.policy !== undefined) settings.policy = flags.policy;
  if (flags.chunkSize !== undefined) settings.chunkSize = number('chunk-size', flags.chunkSize, true);
  if (flags.priority !== undefined) settings.priority = number('priority', flags.priority, true);
  if (flags.holdoutRate !== undefined) settings.holdoutRate = number('holdout-rate', flags.holdoutRate, false);
  if (flags.timing !== undefined) {
    if (flags.timing !== 'midnight' && flags.timing !== 'predicted') throw new PrewarmError('PREWARM_ERR_BAD_WINDOW', `--timing must be "midnight" or "predicted", not "${flags.timing}"`);
    settings.timing = flags.timing;
  }
  if (flags.timingSlot !== undefined) settings.timingSlot = flags.timingSlot;
  if (flags.timingRisk !== undefined) settings.timingRisk = number('timing-risk', flags.timingRisk, false);
  if (flags.disabled) settings.enabled = false;
  return settings;
}

function summary(window: Window): string {
  const next = window.enabled ? nextOccurrence(window.cron, window.timezone, systemClock.now()) : undefined;
  return (
    `${window.name}: "${window.cron}" ${window.timezone}, horizon ${formatDuration(window.horizonMs)}, ttl ${formatDuration(window.ttlMs)}, ` +
    `policy ${formatPolicy(window.policy)}, chunks of ${window.chunkSize}, priority ${window.priority}, holdout ${window.holdoutRate}, ` +
    (window.timing.mode === 'predicted' ? `timed to the login (slots of ${formatDuration(window.timing.slotMs)}, risk ${window.timing.risk}), ` : '') +
    (window.enabled ? `enabled, next ${next?.toISOString() ?? 'never'}` : 'disabled')
  );
}

function lastRun(run: BatchRun | undefined, figures: RunFigures | undefined): string {
  if (!run) return 'no run yet';
  const outcome = figures ? `, waste ${wasteText(figures)}, coverage ${coverageText(figures)}` : '';
  return `last run #${run.id} for ${run.scheduledFor.toISOString()}: ${run.status}, ${run.precomputed}/${run.selected + run.holdout} precomputed` + (run.failed > 0 ? `, ${run.failed} failed` : '') + outcome;
}

export function registerWindows(program: Command): void {
  const windows = program.command('windows').description('manage batch windows (when and for whom to precompute)');

  windows
    .command('list')
    .description('list the windows, their next occurrence and their last run')
    .option('--json', 'print JSON')
    .action(
      action(async (flags: { json?: boolean }) => {
        const context = createCliContext();
        const pool = openPool(context, 'prewarm-windows');
        try {
          const store = createWindowStore({ pool, clock: systemClock });
          const [all, latest, outcomes] = await Promise.all([
            store.list(),
            createRunStore({ pool }).latestPerWindow(),
            createDashboardFigures({ pool, clock: systemClock }).windows(1),
          ]);
          // The last run's waste and coverage, from the views (null until known).
          const lastFigures = new Map(outcomes.map((w) => [w.name, w.lastRuns[0]]));
          if (flags.json) {
            const rows = all.map((window) => ({
              ...describeWindow(window),
              nextOccurrence: window.enabled ? (nextOccurrence(window.cron, window.timezone, systemClock.now())?.toISOString() ?? null) : null,
              lastRun: latest.get(window.name) ?? null,
              lastWaste: lastFigures.get(window.name)?.wasteRate ?? null,
              lastCoverage: lastFigures.get(window.name)?.coverage ?? null,
            }));
            process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
            return;
          }
          if (all.length === 0) process.stdout.write('no windows (create one with prewarm windows set NAME --cron EXPR)\n');
          for (const window of all) process.stdout.write(`${summary(window)}; ${lastRun(latest.get(window.name), lastFigures.get(window.name))}\n`);
        } finally {
          await pool.end();
        }
      }),
    );

  windows
    .command('set')
    .description('create a window, or change the given settings of an existing one (takes effect at the next tick)')
    .argument('<name>', 'window name: letters, digits, "_", "." or "-"')
    .option('--cron <expr>', 'cron expression, 5 fields or 6 with seconds, e.g. "0 2 * * *" (required to create)')
    .option('--tz <zone>', 'IANA time zone of the cron expression (default UTC)')
    .option('--ttl <duration>', 'how long the sets stay fresh from the occurrence, e.g. 24h (default: the horizon, else 24h)')
    .option('--horizon <duration>', 'the period whose logins the run predicts (default: the TTL)')
    .option('--policy <spec>', `${POLICY_SYNTAX} (default coverage:0.8)`)
    .option('--chunk-size <n>', `users per queued job, 1–${MAX_CHUNK_SIZE} (default 500)`)
    .option('--priority <n>', `0–${MAX_PRIORITY}; higher windows' chunks are computed first (default 0)`)
    .option('--holdout-rate <f>', `share of unselected users precomputed anyway to measure misses, 0–${MAX_HOLDOUT_RATE} (default 0.01)`)
    .option('--timing <mode>', 'midnight: compute every selected user at the occurrence; predicted: each at the slot start before their likely login (default midnight)')
    .option('--timing-slot <duration>', 'with --timing predicted: slot length of compute times, shorter than the horizon (default 1h)')
    .option('--timing-risk <f>', `with --timing predicted: on horizons under a day and in a window's first timed run, the accepted chance that a user's first login comes before their set, 0–${MAX_TIMING_RISK} (default 0.02); after a timed run every user is computed at the start of the span holding most of their logins (half of nightly's median age, from the population's hours)`)
    .option('--disabled', 'create or leave the window disabled')
    .action(
      action(async (name: string, flags: SetFlags) => {
        const settings = settingsFromFlags(flags);
        const context = createCliContext();
        const pool = openPool(context, 'prewarm-windows');
        try {
          const { window, created } = await createWindowStore({ pool, clock: systemClock }).set(name, settings);
          process.stdout.write(`window ${created ? 'created' : 'updated'}: ${summary(window)}\n`);
        } finally {
          await pool.end();
        }
      }),
    );

  for (const [verb, enabled] of [
    ['enable', true],
    ['disable', false],
  ] as const) {
    windows
      .command(verb)
      .description(`${verb} a window (takes effect at the next tick)`)
      .argument('<name>')
      .action(
        action(async (name: string) => {
          const context = createCliContext();
          const pool = openPool(context, 'prewarm-windows');
          try {
            const window = await createWindowStore({ pool, clock: systemClock }).setEnabled(name, enabled);
            process.stdout.write(`window ${verb}d: ${summary(window)}\n`);
          } finally {
            await pool.end();
          }
        }),
      );
  }

  windows
    .command('delete')
    .description('delete a window (its past runs and sets stay)')
    .argument('<name>')
    .action(
      action(async (name: string) => {
        const context = createCliContext();
        const pool = openPool(context, 'prewarm-windows');
        try {
          await createWindowStore({ pool, clock: systemClock }).delete(name);
          process.stdout.write(`window deleted: ${name}\n`);
        } finally {
          await pool.end();
        }
      }),
    );
}
