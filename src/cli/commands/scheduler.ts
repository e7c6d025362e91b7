import type { Command } from 'commander';
import { action, createCliContext } from '../runtime.ts';

export function registerScheduler(program: Command): void {
  program
    .command('scheduler')
    .description('run the window scheduler until SIGTERM/SIGINT (replicas are safe: each occurrence is planned once)')
    .action(
      action(async () => {
        const { config } = createCliContext();
        const { runScheduler } = await import('../../../workers/scheduler.ts');
        await runScheduler({ config });
      }),
    );
}
