import type { Command } from 'commander';
import { closeOnSignal } from '../../lifecycle.ts';
import { startServer } from '../../server.ts';
import { action, createCliContext } from '../runtime.ts';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the HTTP API (GET /v1/users/:userId/recommendations) until SIGINT/SIGTERM')
    .action(
      action(async () => {
        const context = createCliContext();
        const server = await startServer(context.config, context.log);
        // The event flush has PREWARM_SHUTDOWN_TIMEOUT_MS of its own; the forced exit waits a little longer.
        await closeOnSignal({ close: server.close, log: context.log, timeoutMs: context.config.shutdownTimeoutMs + 5_000, name: 'API' });
      }),
    );
}
