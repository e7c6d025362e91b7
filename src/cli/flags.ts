import { formatDuration, parseDuration } from '../duration.ts';
import { PrewarmError, isPrewarmError } from '../errors.ts';
import { parseTimestamp } from '../ids.ts';
import { parsePolicy, type Policy } from '../planner/policy.ts';
import { WINDOW_SPECS, parseWindowSpec } from '../window-spec.ts';

/**
 * A command-line instant: a date (`2013-12-01`, midnight UTC) or an ISO 8601 date-time with a
 * zone (`2013-12-01T06:00:00Z`). Anything else is refused naming the flag (exit code 2).
 */
export function parseInstant(text: string, flag: string): Date {
  const at = parseTimestamp(/^\d{4}-\d{2}-\d{2}$/.test(text) ? `${text}T00:00:00Z` : text);
  if (!at) {
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `${flag}: expected an ISO 8601 date or date-time with a zone (2013-12-01, 2013-12-01T06:00:00Z), got "${text}"`);
  }
  return at;
}

/** `--window 1d|6h|1h` as milliseconds (src/window-spec.ts holds the one table). */
export function parseWindowFlag(text: string): number {
  return WINDOW_SPECS[parseWindowSpec(text)].ms;
}

/** An instant on the window grid (UTC midnight + k × window), named after its flag when it is not. */
export function parseGridInstant(text: string, flag: string, windowMs: number): number {
  const ms = parseInstant(text, flag).getTime();
  if (ms % windowMs !== 0) {
    const length = formatDuration(windowMs);
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `${flag} ${text} is not the start of a ${length} window (they start at UTC midnight + k × ${length})`);
  }
  return ms;
}

/** `--window`, `--test-from` and optional `--test-to` of evaluate and backtest: both instants on the window grid. */
export function parseTestPeriodFlags(flags: { window: string; testFrom: string; testTo?: string | undefined }): { windowMs: number; testFromMs: number; testToMs: number | undefined } {
  const windowMs = parseWindowFlag(flags.window);
  return {
    windowMs,
    testFromMs: parseGridInstant(flags.testFrom, '--test-from', windowMs),
    testToMs: flags.testTo === undefined ? undefined : parseGridInstant(flags.testTo, '--test-to', windowMs),
  };
}

/** `--policy SPEC`; a bad spec is bad input (exit code 2), named after the flag. */
export function parsePolicyFlag(text: string): Policy {
  try {
    return parsePolicy(text);
  } catch (error) {
    if (isPrewarmError(error)) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--policy: ${error.message}`, { cause: error });
    throw error;
  }
}

/** A positive duration flag (`7d`, `24h`, `90m`); a bad one is bad input (exit code 2), named after its flag. */
export function parseDurationFlag(text: string, flag: string): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (error) {
    if (isPrewarmError(error)) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `${flag}: ${error.message}`, { cause: error });
    throw error;
  }
  if (!(ms > 0)) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `${flag}: must be a positive duration, not "${text}"`);
  return ms;
}
