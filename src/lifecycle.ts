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

/** One step of a process's ordered shutdown. */
export type ShutdownStep = [name: string, run: () => Promise<unknown> | unknown];

/**
 * Runs shutdown steps in their fixed order. A failing step is logged and the next one runs
 * anyway: a Redis that will not quit must not keep the Postgres pool (and its buffered writes)
 * from closing. With `rethrow`, the first failure is thrown once every step has run, for a
 * caller that must not go on as if all went well (a replay reporting on the events it wrote).
 */
export async function runShutdownSteps(steps: readonly ShutdownStep[], log: Logger, options: { rethrow?: boolean } = {}): Promise<void> {
  let failure: { error: unknown } | undefined;
  for (const [name, run] of steps) {
    try {
      await run();
    } catch (error) {
      log.error({ err: error, step: name }, 'shutdown step failed');
      failure ??= { error };
    }
  }
  if (failure && options.rethrow) throw failure.error;
}
