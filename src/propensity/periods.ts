import { PrewarmError } from '../errors.ts';
import type { LoginLog } from './login-log.ts';
import type { StateGrid } from './state.ts';
import type { TrainingPeriod } from './training-sample.ts';
import { floorToGrid } from './walk.ts';

// The periods a model is trained on, shared by training, the offline protocol and its backtest.

/**
 * Training windows by default: 26 weeks of windows. Rows are weighted by age (half-life 28 days),
 * so the long period adds stability (rare behaviours, every weekday many times) while recent
 * windows still dominate.
 */
export function defaultTrainWindows(windowMs: number): number {
  return Math.max(2, Math.round((182 * 86_400_000) / windowMs));
}

/** Extent of the log on the grid: first window start and end of the last window with a login. */
export function logExtent(log: LoginLog, grid: StateGrid): { fromMs: number; toMs: number } {
  if (log.at.length === 0) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', 'the login log is empty');
  return { fromMs: floorToGrid(log.at[0] as number, grid), toMs: floorToGrid(log.at[log.at.length - 1] as number, grid) + grid.windowMs };
}

/**
 * The training period for a model used from `endMs` on: the `trainWindows` windows before it,
 * cut to the log's start (the first window with a known user is the second of the log).
 */
export function trainingPeriod(log: LoginLog, grid: StateGrid, endMs: number, trainWindows: number, flag = '--test-from'): TrainingPeriod {
  return trainingPeriodWithin(logExtent(log, grid), grid, endMs, trainWindows, flag);
}

/** `trainingPeriod` for a log known only by its extent on the grid (a table read in a sample). */
export function trainingPeriodWithin(extent: { fromMs: number; toMs: number }, grid: StateGrid, endMs: number, trainWindows: number, flag = '--test-from'): TrainingPeriod {
  const earliest = extent.fromMs + grid.windowMs;
  const fromMs = Math.max(earliest, endMs - trainWindows * grid.windowMs);
  if (endMs - fromMs < 2 * grid.windowMs) {
    throw new PrewarmError(
      'PREWARM_ERR_BAD_INPUT',
      `${flag} ${new Date(endMs).toISOString()} leaves fewer than 2 training windows in the log (it starts ${new Date(extent.fromMs).toISOString()})`,
    );
  }
  return { fromMs, toMs: endMs };
}
