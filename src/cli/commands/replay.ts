import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { parseDurationFlag, parseGridInstant, parsePolicyFlag } from '../flags.ts';
import { PrewarmError } from '../../errors.ts';
import type { Policy } from '../../planner/policy.ts';
import { renderReplayHtml } from '../../replay/html-report.ts';
import { prepareModelScorer, retrainModelScorer } from '../../replay/propensity.ts';
import { loadReplayData, runReplay, type ReplayResult } from '../../replay/run.ts';
import { parseWindowSpec, windowStartOf, WINDOW_SPECS } from '../../window-spec.ts';
import { action, createCliContext } from '../runtime.ts';
import type { ReplayData, ReplayProgress } from '../../replay/replay.ts';
import type { RefreshBehind } from '../../serving/service.ts';

interface ReplayFlags {
  logins?: string;
  interactions?: string;
  from?: string;
  to?: string;
  window: string;
  policy: string;
  report?: string;
  json?: boolean;
  items: string;
  retrainEvery: string;
  retrainPropensityEvery?: string;
  keepSchemas?: boolean;
  timing: string;
  timingSlot: string;
  timingRisk: string;
  interactionFeed: string;
  refreshBehind?: string;
}

/** `--interaction-feed` and `--refresh-behind`, checked together (refused with exit code 2). */
export interface BehindFlags {
  interactionFeed: 'api' | 'import';
  refreshBehind: RefreshBehind;
}

export function registerReplay(program: Command): void {
  program
    .command('replay')
    .description('run the whole system over a real log on a virtual clock, beside "precompute everyone" and "on demand only"')
    .requiredOption('--logins <file>', 'logins CSV (user_id,ts), plain or gzip')
    .requiredOption('--interactions <file>', 'interactions CSV (user_id,item_id,ts,weight), plain or gzip')
    .option('--from <date>', 'start of the replayed period (default: 28 days after the first login)')
    .option('--to <date>', 'end of the replayed period, exclusive (default: end of the log)')
    .option('--window <spec>', 'window length: 1d, 6h or 1h, aligned to UTC midnight', '1d')
    .option('--policy <spec>', 'the policy replayed as `model`', 'coverage:0.8')
    .option('--report <file>', 'where to write the HTML report (default reports/replay-<time>.html)')
    .option('--items <n>', 'items per precomputed set', '20')
    .option('--retrain-every <duration>', 'retrain the recommender on the interactions so far this often', '7d')
    .option(
      '--retrain-propensity-every <duration>',
      'retrain the propensity model on the logins so far this often, as the scheduler does (default: every window; `never`: trained once before --from, as evaluate does offline)',
    )
    .option('--timing <mode>', 'midnight: the model row computes its sets at the window start; predicted: each user at the slot start before their likely login (src/planner/timing.ts)', 'midnight')
    .option('--timing-slot <duration>', 'with --timing predicted: slot length of compute times, shorter than the window', '1h')
    .option('--timing-risk <f>', "with --timing predicted: on horizons under a day and in the first timed run, the accepted chance that a user's first login comes before their set, 0–0.5; after a timed run every user is computed at the start of the span holding most of their logins (half of nightly's median age, from the population's hours)", '0.02')
    .option(
      '--interaction-feed <mode>',
      'api: the log\'s interactions after --from reach the replay through the interactions API (POST /v1/interactions\' recorder) as the clock reaches them, so served sets can be behind; import: COPY each window\'s at its start',
      'api',
    )
    .option(
      '--refresh-behind <mode>',
      'login: a set that missed interactions of its user is computed again at login (PREWARM_REFRESH_BEHIND\'s default); never: served as it is (default: login with --interaction-feed api, never with import)',
    )
    .option('--keep-schemas', 'keep the Postgres schemas of the replay for inspection')
    .option('--json', 'print one JSON object (fields in docs/design.md) instead of the table')
    .action(
      action(async (flags: ReplayFlags) => {
        const window = parseWindowSpec(flags.window);
        const policy = parsePolicyFlag(flags.policy);
        const items = Number(flags.items);
        if (!Number.isInteger(items) || items < 1 || items > 100) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--items must be a whole number from 1 to 100, not "${flags.items}"`);
        const retrainEveryMs = parseDurationFlag(flags.retrainEvery, '--retrain-every');
        const timing = timingFromFlags(flags, WINDOW_SPECS[window].ms);
        const behind = behindFromFlags(flags);
        // As production (PREWARM_PROPENSITY_RETRAIN_EVERY, 24h for daily windows): every window.
        const retrainPropensityEveryMs =
          flags.retrainPropensityEvery === 'never'
            ? undefined
            : flags.retrainPropensityEvery === undefined
              ? WINDOW_SPECS[window].ms
              : parseDurationFlag(flags.retrainPropensityEvery, '--retrain-propensity-every');
        const context = createCliContext();
        const data = await loadReplayData(flags.logins as string, flags.interactions as string);
        const result = await replayWithProgress(data, { ...flags, window, retrainPropensityEveryMs, timingOption: timing, behind }, policy, items, retrainEveryMs, context);
        const path = resolve(flags.report ?? `reports/replay-${new Date().toISOString().replace(/[:.]/g, '-')}.html`);
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, renderReplayHtml(result));
        if (flags.json) {
          const { interactionFeed, refreshBehind } = result;
          process.stdout.write(`${JSON.stringify({ interactionFeed, refreshBehind, policies: result.policies.map(({ daily: _daily, ...rest }) => rest), oracle: result.oracle, report: path })}\n`);
        } else {
          process.stdout.write(formatTable(result));
          process.stdout.write(`\nreport: ${path}\n`);
        }
      }),
    );
}

async function replayWithProgress(
  data: ReplayData,
  flags: ReplayFlags & { window: keyof typeof WINDOW_SPECS; retrainPropensityEveryMs: number | undefined; timingOption: { slotMs: number; risk: number } | undefined; behind: BehindFlags },
  policy: Policy,
  items: number,
  retrainEveryMs: number,
  context: ReturnType<typeof createCliContext>,
): Promise<ReplayResult> {
  const first = data.logins[0]?.at.getTime();
  const last = data.logins.at(-1)?.at.getTime();
  if (first === undefined || last === undefined) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `${flags.logins}: no valid logins`);
  const windowMs = WINDOW_SPECS[flags.window].ms;
  const from = new Date(flags.from ? parseGridInstant(flags.from, '--from', windowMs) : windowStartOf(first, windowMs) + 28 * 86_400_000);
  const to = new Date(flags.to ? parseGridInstant(flags.to, '--to', windowMs) : windowStartOf(last, windowMs) + windowMs);
  if (from.getTime() >= to.getTime()) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--from ${from.toISOString()} must be before --to ${to.toISOString()}`);
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar(
        { format: '{policy} {bar} {percentage}% {day} {logins} logins {rate} logins/s', barsize: 20, hideCursor: false, linewrap: true, fps: 5 },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  let currentPolicy = '';
  const onProgress = (progress: ReplayProgress) => {
    if (!bar) return;
    if (progress.policy !== currentPolicy) {
      if (currentPolicy) bar.stop();
      currentPolicy = progress.policy;
      bar.start(to.getTime() - from.getTime(), 0, { policy: progress.policy.padEnd(5), day: '', logins: 0, rate: 0 });
    }
    bar.update(progress.simulatedAt.getTime() - from.getTime(), {
      day: progress.simulatedAt.toISOString().slice(0, 10),
      logins: progress.logins,
      rate: Math.round(progress.loginsPerSecond),
    });
  };
  try {
    return await runReplay(data, policy, {
      source: `${flags.logins} + ${flags.interactions}`,
      databaseUrl: context.config.databaseUrl,
      redisUrl: context.config.redisUrl,
      // A replay plans hundreds of runs: their info lines would bury the progress bar.
      log: context.config.logLevel === 'info' ? context.log.child({}, { level: 'warn' }) : context.log,
      from,
      to,
      window: flags.window,
      prepareScorer: prepareModelScorer,
      ...(flags.retrainPropensityEveryMs === undefined ? {} : { retrainScorer: { every: flags.retrainPropensityEveryMs, retrain: retrainModelScorer } }),
      itemsPerSet: items,
      retrainEveryMs,
      keepSchemas: flags.keepSchemas ?? false,
      ...(flags.timingOption ? { timing: flags.timingOption } : {}),
      interactionFeed: flags.behind.interactionFeed,
      refreshBehind: flags.behind.refreshBehind,
      onProgress,
    });
  } finally {
    bar?.stop();
  }
}

/** `--timing predicted`: the slot and risk, checked against the window (refused with exit code 2). */
function timingFromFlags(flags: ReplayFlags, windowMs: number): { slotMs: number; risk: number } | undefined {
  if (flags.timing === 'midnight') return undefined;
  if (flags.timing !== 'predicted') throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--timing must be "midnight" or "predicted", not "${flags.timing}"`);
  const slotMs = parseDurationFlag(flags.timingSlot, '--timing-slot');
  if (slotMs >= windowMs) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--timing-slot ${flags.timingSlot} must be shorter than the window`);
  const risk = Number(flags.timingRisk);
  if (flags.timingRisk.trim() === '' || !Number.isFinite(risk) || risk < 0 || risk > 0.5) {
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--timing-risk must be a fraction from 0 to 0.5, not "${flags.timingRisk}"`);
  }
  return { slotMs, risk };
}

/**
 * `--interaction-feed` (default api) and `--refresh-behind` (default login with api, never with
 * import). The defaults are a deployment's: interactions arrive through the API and
 * PREWARM_REFRESH_BEHIND defaults to login, so the replay measures what `prewarm serve` would do
 * (issue 15's behind target is measured so). Imported interactions never reach Redis, so the
 * serving path cannot see most behind sets: refreshing them is refused rather than half done.
 */
export function behindFromFlags(flags: { interactionFeed: string; refreshBehind?: string | undefined }): BehindFlags {
  const { interactionFeed } = flags;
  if (interactionFeed !== 'api' && interactionFeed !== 'import') {
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--interaction-feed must be "api" or "import", not "${interactionFeed}"`);
  }
  const refreshBehind = flags.refreshBehind ?? (interactionFeed === 'api' ? 'login' : 'never');
  if (refreshBehind !== 'login' && refreshBehind !== 'never') {
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--refresh-behind must be "login" or "never", not "${refreshBehind}"`);
  }
  if (refreshBehind === 'login' && interactionFeed === 'import') {
    throw new PrewarmError(
      'PREWARM_ERR_BAD_INPUT',
      '--refresh-behind login needs --interaction-feed api: imported interactions do not reach Redis, so the serving path would not see most behind sets (add --refresh-behind never)',
    );
  }
  return { interactionFeed, refreshBehind };
}

export function formatTable(result: ReplayResult): string {
  const widths = result.columns.map((c) => Math.max(c.length, ...result.table.map((row) => String(row[c]).length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number))).join('  ');
  return [
    `replay ${result.from.slice(0, 10)} → ${result.to.slice(0, 10)}, ${result.window} windows, ${result.logins} logins, interactions by ${result.interactionFeed}, behind sets ${result.refreshBehind === 'login' ? 'refreshed at login' : 'served as they are'}, ${(result.wallMs / 1000).toFixed(1)} s`,
    line(result.columns),
    ...result.table.map((row) => line(result.columns.map((c) => String(row[c])))),
  ].join('\n') + '\n';
}
