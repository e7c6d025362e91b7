import cronParser from 'cron-parser';
import nodeCron from 'node-cron';
import { PrewarmError } from '../errors.ts';

/**
 * Occurrence arithmetic for window schedules.
 *
 * node-cron fires the real-time ticks, but it cannot answer "which occurrence is the latest one
 * at or before this instant?", which the scheduler needs to claim occurrences (and a replay needs
 * on a virtual clock). cron-parser (BullMQ's own dependency) answers that. The two libraries agree
 * on standard expressions but not on one point: when both day-of-month and day-of-week are
 * restricted, cron-parser (like Vixie cron) fires on either, node-cron only on both. Such
 * expressions are refused, so every accepted expression means the same thing to both.
 */

const TIME_ZONE_CACHE = new Map<string, boolean>();

/** True for an IANA zone name this Node.js knows (`UTC`, `Europe/Paris`). */
export function isKnownTimeZone(zone: string): boolean {
  const known = TIME_ZONE_CACHE.get(zone);
  if (known !== undefined) return known;
  let ok: boolean;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    ok = zone.trim() === zone && zone.length > 0;
  } catch {
    ok = false;
  }
  TIME_ZONE_CACHE.set(zone, ok);
  return ok;
}

const unrestricted = (field: string) => field === '*' || field === '?';

/**
 * Refuses a cron expression or time zone that the scheduler could not run unambiguously; the
 * message says what to fix.
 */
export function validateSchedule(cron: string, timezone: string): void {
  const expression = cron.trim();
  if (expression === '') throw badWindow('cron expression is empty');
  if (!isKnownTimeZone(timezone)) {
    throw badWindow(`unknown time zone "${timezone}" (use an IANA name such as UTC or Europe/Paris)`);
  }
  if (!nodeCron.validate(expression)) {
    throw badWindow(`invalid cron expression "${cron}": ${cronProblem(expression)}`);
  }
  try {
    cronParser.parseExpression(expression, { tz: timezone }).next();
  } catch (error) {
    throw badWindow(`invalid cron expression "${cron}": ${(error as Error).message}`);
  }
  if (!expression.startsWith('@')) {
    const fields = expression.split(/\s+/);
    const dayOfMonth = fields[fields.length - 3] as string;
    const dayOfWeek = fields[fields.length - 1] as string;
    if (!unrestricted(dayOfMonth) && !unrestricted(dayOfWeek)) {
      throw badWindow(
        `cron expression "${cron}" restricts both day-of-month and day-of-week, which cron implementations read differently; restrict only one of them`,
      );
    }
  }
}

/** The latest occurrence at or before `at` in `timezone`, or undefined if there is none. */
export function latestOccurrence(cron: string, timezone: string, at: Date): Date | undefined {
  // prev() is strictly before currentDate; +1 ms makes an occurrence exactly at `at` count.
  const iterator = cronParser.parseExpression(cron.trim(), { currentDate: new Date(at.getTime() + 1), tz: timezone });
  try {
    const previous = iterator.prev().toDate();
    return previous.getTime() <= at.getTime() ? previous : undefined;
  } catch {
    return undefined; // "Out of the timespan range": no earlier occurrence
  }
}

/** The first occurrence strictly after `at`, or undefined. */
export function nextOccurrence(cron: string, timezone: string, at: Date): Date | undefined {
  const iterator = cronParser.parseExpression(cron.trim(), { currentDate: at, tz: timezone });
  try {
    return iterator.next().toDate();
  } catch {
    return undefined;
  }
}

const CRON_FIELDS = [
  { name: 'second', min: 0, max: 59 },
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day-of-month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day-of-week', min: 0, max: 7 },
] as const;

/** Why node-cron refuses an expression: the field count, else the first number out of its field's range. */
function cronProblem(expression: string): string {
  const fields = expression.split(/\s+/);
  const example = 'e.g. "0 2 * * *" for 02:00 every day';
  if (fields.length !== 5 && fields.length !== 6) return `expected 5 fields (minute first) or 6 (second first), found ${fields.length}; ${example}`;
  const specs = CRON_FIELDS.slice(6 - fields.length);
  for (const [i, field] of fields.entries()) {
    const spec = specs[i]!;
    for (const part of field.split(',')) {
      const [range = '', step] = part.split('/');
      if (step !== undefined && !/^[1-9]\d*$/.test(step)) return `${spec.name} step "${step}" must be a positive whole number`;
      for (const value of range.split('-')) {
        if (!/^\d+$/.test(value)) continue;
        if (Number(value) < spec.min || Number(value) > spec.max) return `${spec.name} ${value} is out of range ${spec.min}–${spec.max}`;
      }
    }
  }
  return `node-cron cannot read it; ${example}`;
}

function badWindow(message: string): PrewarmError {
  return new PrewarmError('PREWARM_ERR_BAD_WINDOW', message);
}
