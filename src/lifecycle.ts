import type { Logger } from './log.ts';

/**
 * Waits for SIGTERM or SIGINT, then runs `close` (the process's ordered shutdown). If that takes
 * longer than `timeoutMs` the process exits anyway, non-zero. Entry points only: libraries never
 * install signal handlers.
 */
export function closeOnSignal(options: { close: () => Promise<void>; log: Logger; timeoutMs: number; name: string }): Promise<void> {
  const { close, log, timeoutMs, name } = options;
  return new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      log.info({ signal }, `shutting down the ${name}`);
      const force = setTimeout(() => {
        log.error({ timeoutMs }, 'shutdown timed out; exiting');
        process.exit(1);
      }, timeoutMs);
      force.unref();
      void close().then(() => {
        clearTimeout(force);
        log.info(`${name} stopped`);
        resolve();
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
