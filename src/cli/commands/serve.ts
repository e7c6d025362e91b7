import type { Command } from 'commander';
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
        await new Promise<void>((resolve) => {
          const stop = (signal: string) => {
            context.log.info({ signal }, 'shutting down');
            // A second signal, or a stuck step, must not keep the process alive for ever.
            const force = setTimeout(() => {
              context.log.error('graceful shutdown timed out; exiting');
              process.exit(1);
            }, context.config.shutdownTimeoutMs + 5_000);
            force.unref();
            server.close().then(resolve, resolve);
          };
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
      }),
    );
}
