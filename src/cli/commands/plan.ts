import type { Command } from 'commander';
import { systemClock } from '../../clock.ts';
import { dryRunWindow, createPlanner } from '../../planner/planner.ts';
import { createPlanShardQueue, createPrecomputeQueue } from '../../precompute/queue.ts';
import { createDefaultScorer } from '../../propensity/default-scorer.ts';
import { createQueueRedis } from '../../redis.ts';
import { createRunStore } from '../../planner/runs.ts';
import { createWindowStore } from '../../planner/windows.ts';
import { createDashboardFigures, type RunFigures } from '../../dashboard/figures.ts';
import { PrewarmError } from '../../errors.ts';
import { action, createCliContext, openPool } from '../runtime.ts';
import { coverageText, wasteText } from './runs.ts';

const LAST_RUNS = 3;

/** What `plan --dry-run --json` shows of an earlier run: its plan beside its outcome. */
function comparison(run: RunFigures) {
  return {
    id: run.id,
    scheduledFor: run.scheduledFor.toISOString(),
    policy: run.policy,
    status: run.status,
    candidates: run.candidates,
    selected: run.selected,
    expectedCoverage: run.expectedCoverage,
    expectedWaste: run.expectedWaste,
    coverage: run.coverage,
    waste: run.wasteRate,
    final: run.windowEnded,
  };
}

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)}%`;
}

export function registerPlan(program: Command): void {
  program
    .command('plan')
    .description('plan a window now: score users and apply its policy; with --dry-run only print what would be selected')
    .argument('<window>', 'window name')
    .option('--dry-run', 'print candidates, selected, expected coverage and waste beside the last runs\' expected and measured figures; write and enqueue nothing')
    .option('--json', 'print JSON: { window, candidates, selected, expectedCoverage, expectedWaste, … }')
    .option('--shards <n>', 'score the run in N shards taken by `prewarm worker` processes (default: PREWARM_PLAN_SHARDS; 0 or unset: in this process)')
    .action(
      action(async (name: string, flags: { dryRun?: boolean; json?: boolean; shards?: string }) => {
        const asked = flags.shards === undefined ? undefined : Number(flags.shards);
        if (asked !== undefined && !(Number.isInteger(asked) && asked >= 0 && asked <= 10_000)) {
          throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--shards must be a whole number from 0 to 10000, got "${flags.shards}"`);
        }
        const context = createCliContext();
        // As the scheduler plans: on the workers when PREWARM_PLAN_SHARDS is set, unless --shards says otherwise.
        const shards = (asked ?? context.config.planShards) || undefined;
        const pool = openPool(context, 'prewarm-plan');
        try {
          const window = await createWindowStore({ pool, clock: systemClock }).require(name);
          const scorer = createDefaultScorer({ pool, log: context.log });
          if (flags.dryRun) {
            const result = await dryRunWindow({ pool, scorer, clock: systemClock, log: context.log, unselectedSample: context.config.planPredictionSample }, window);
            // The proposal beside what the window's last runs expected and then measured.
            const lastRuns = await createDashboardFigures({ pool, clock: systemClock }).runs({ window: name, limit: LAST_RUNS });
            if (flags.json) process.stdout.write(`${JSON.stringify({ ...result, lastRuns: lastRuns.map(comparison) })}\n`);
            else {
              process.stdout.write(
                `${result.window} (${result.policy}, from ${result.windowStart}): ${result.selected} of ${result.candidates} known users selected, ` +
                  `expected coverage ${percent(result.expectedCoverage)}, expected waste ${percent(result.expectedWaste)}, ` +
                  `about ${result.expectedHoldout} holdout users (dry run: nothing written or enqueued)\n`,
              );
              if (lastRuns.length === 0) process.stdout.write('no earlier runs of this window to compare with\n');
              for (const run of lastRuns) {
                process.stdout.write(
                  `  run #${run.id} ${run.scheduledFor.toISOString()} (${run.policy}): ${run.selected} of ${run.candidates} selected, ` +
                    `expected coverage ${run.expectedCoverage === null ? '—' : percent(run.expectedCoverage)}, measured ${coverageText(run)}; ` +
                    `expected waste ${run.expectedWaste === null ? '—' : percent(run.expectedWaste)}, measured ${wasteText(run)}\n`,
                );
              }
            }
            return;
          }
          // An ad-hoc run scheduled for now (to the second), claimed like a cron occurrence.
          const redis = createQueueRedis(context.config.redisUrl, context.log);
          const queue = createPrecomputeQueue({ connection: redis, prefix: context.config.queuePrefix, log: context.log });
          const shardQueue = shards === undefined ? undefined : createPlanShardQueue({ connection: redis, prefix: context.config.queuePrefix, log: context.log });
          try {
            const planner = createPlanner({
              pool,
              queue,
              scorer,
              clock: systemClock,
              log: context.log,
              itemsPerUser: context.config.maxLimit,
              unselectedSample: context.config.planPredictionSample,
              ...(shardQueue ? { shardQueue, shards } : {}),
            });
            const now = Math.floor(systemClock.now().getTime() / 1000) * 1000;
            const planned = await planner.planRun(window, new Date(now));
            const run = planned?.run ?? (await createRunStore({ pool }).list({ window: name, limit: 1 }))[0];
            if (flags.json) process.stdout.write(`${JSON.stringify(run ?? null)}\n`);
            else if (!planned) process.stdout.write(`an occurrence of ${name} at this second is already claimed\n`);
            else {
              process.stdout.write(
                `run #${planned.run.id} planned for ${name}: ${planned.run.selected} selected + ${planned.run.holdout} holdout of ${planned.run.candidates} ` +
                  `in ${planned.run.chunksTotal} chunks (expected coverage ${percent(planned.run.expectedCoverage ?? 0)}); workers compute it now\n`,
              );
            }
          } finally {
            await shardQueue?.close();
            await queue.close();
            await redis.quit();
          }
        } finally {
          await pool.end();
        }
      }),
    );
}
