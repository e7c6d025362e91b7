import { parseTimestamp } from '../activity/csv.ts';
import { PrewarmError } from '../errors.ts';

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
