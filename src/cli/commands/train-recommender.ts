import type { Command } from 'commander';
import { PrewarmError } from '../../errors.ts';
import { saveModel, trainItemCf } from '../../recommender/item-cf.ts';
import { parseInstant } from '../flags.ts';
import { action, createCliContext, openPool } from '../runtime.ts';

function parseNeighbours(text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1 || value > 10_000) {
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--neighbours: expected an integer from 1 to 10000, got "${text}"`);
  }
  return value;
}

export function registerTrainRecommender(program: Command): void {
  program
    .command('train-recommender')
    .description('train the item-based collaborative filtering model from the interactions and store it as the newest version')
    .option('--until <iso>', 'use only interactions strictly before this instant (default: now)')
    .option('--neighbours <n>', 'similar items kept per item (default: PREWARM_RECOMMENDER_NEIGHBOURS, 50)')
    .action(
      action(async (flags: { until?: string; neighbours?: string }) => {
        const until = flags.until === undefined ? new Date() : parseInstant(flags.until, '--until');
        const neighboursFlag = flags.neighbours === undefined ? undefined : parseNeighbours(flags.neighbours);
        const context = createCliContext();
        const neighbours = neighboursFlag ?? context.config.recommenderNeighbours;
        const pool = openPool(context, 'prewarm-train-recommender');
        try {
          const model = await trainItemCf({ pool, until, neighbours, log: context.log });
          if (model.stats.users === 0) {
            // An empty model would replace the popularity fallback with empty lists.
            throw new PrewarmError('PREWARM_ERR_NO_MODEL', `no interactions before ${until.toISOString()}: nothing to train on (import interactions first)`);
          }
          await saveModel(pool, model);
          const { items, users, pairs, trainMs } = model.stats;
          process.stdout.write(`trained ${model.version}: ${items} items, ${users} users, ${pairs} pairs, ${trainMs} ms\n`);
        } finally {
          await pool.end();
        }
      }),
    );
}
