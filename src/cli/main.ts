import { Command, CommanderError } from 'commander';
import type { RegisterCommand } from './runtime.ts';
// One module per command; keep this list in the order `--help` shows them.
import { registerMigrate } from './commands/migrate.ts';

const COMMANDS: RegisterCommand[] = [
  registerMigrate,
];

export function buildProgram(): Command {
  const program = new Command('prewarm')
    .description('Precompute recommendations for the users who will log in; compute the rest at login.')
    .showHelpAfterError()
    .exitOverride();
  for (const register of COMMANDS) register(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has already printed its message (or the help text).
      process.exitCode = error.exitCode === 0 ? 0 : 2;
      return;
    }
    throw error;
  }
}
