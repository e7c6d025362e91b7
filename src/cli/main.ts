import { Command, CommanderError } from 'commander';
import type { RegisterCommand } from './runtime.ts';
// One module per command; keep this list in the order `--help` shows them.
import { registerMigrate } from './commands/migrate.ts';
import { registerMaintain } from './commands/maintain.ts';
import { registerImport } from './commands/import.ts';
import { registerTrainRecommender } from './commands/train-recommender.ts';
import { registerTrainPropensity } from './commands/train-propensity.ts';
import { registerEvaluate } from './commands/evaluate.ts';
import { registerBacktest } from './commands/backtest.ts';
import { registerServe } from './commands/serve.ts';
import { registerReport } from './commands/report.ts';
import { registerWindows } from './commands/windows.ts';
import { registerPlan } from './commands/plan.ts';
import { registerRuns } from './commands/runs.ts';
import { registerModels } from './commands/models.ts';
import { registerScheduler } from './commands/scheduler.ts';
import { registerWorker } from './commands/worker.ts';
import { registerGenerate } from './commands/generate.ts';
import { registerReplay } from './commands/replay.ts';

const COMMANDS: RegisterCommand[] = [
  registerMigrate,
  registerMaintain,
  registerImport,
  registerTrainRecommender,
  registerTrainPropensity,
  registerEvaluate,
  registerBacktest,
  registerServe,
  registerReport,
  registerWindows,
  registerPlan,
  registerRuns,
  registerModels,
  registerScheduler,
  registerWorker,
  registerReplay,
  registerGenerate,
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
