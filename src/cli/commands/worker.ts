import type { Command } from 'commander';
import { action, createCliContext } from '../runtime.ts';

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('run a precompute worker until SIGTERM/SIGINT (start as many as you like, on any machine)')
    .action(
      action(async () => {
        const { config } = createCliContext();
        // Loaded on use: other commands need not load the recommender.
        const { runPrecomputeWorker } = await import('../../../workers/precompute.ts');
        await runPrecomputeWorker({ config });
      }),
    );
}
