import type { Command } from 'commander';
import { loadConfig, type Config } from '../config.ts';
import { isPrewarmError, toError } from '../errors.ts';
import { configSecrets, createLogger, redactSecrets, type Logger } from '../log.ts';
import { createPool, type Pool } from '../db/pool.ts';

export interface CliContext {
  config: Readonly<Config>;
  log: Logger;
}

/** Config and logger for one CLI invocation; parsed once, here, and passed down. */
export function createCliContext(): CliContext {
  const config = loadConfig();
  const log = createLogger({ level: config.logLevel, name: 'prewarm-cli', secrets: configSecrets(config) });
  return { config, log };
}

export function openPool(context: CliContext, applicationName = 'prewarm-cli'): Pool {
  return createPool({
    databaseUrl: context.config.databaseUrl,
    schema: context.config.dbSchema,
    max: context.config.dbPoolSize,
    applicationName,
    log: context.log,
  });
}

/**
 * Wraps a command's action: any failure becomes one line on stderr and exit code 1 (2 for bad
 * usage), as docs/design.md promises scripts.
 */
export function action<A extends unknown[]>(run: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await run(...args);
    } catch (thrown) {
      const error = toError(thrown);
      const code = isPrewarmError(error) ? `${error.code}: ` : '';
      process.stderr.write(`prewarm: ${code}${redactSecrets(error.message.split('\n')[0] ?? '')}\n`);
      process.exitCode = isPrewarmError(error, 'PREWARM_ERR_BAD_INPUT') || isPrewarmError(error, 'PREWARM_ERR_CONFIG') ? 2 : 1;
      // A command that failed has nothing left to do: if a connection or timer it opened still
      // holds the event loop (a bug, or a library that cannot be closed), exit anyway.
      setTimeout(() => process.exit(), 2_000).unref();
    }
  };
}

export type RegisterCommand = (program: Command) => void;
