import { describe, expect, it } from 'vitest';
import { isPrewarmError } from '../src/errors.ts';
import { validateSchedule } from '../src/planner/cron.ts';

function refusal(cron: string): string {
  try {
    validateSchedule(cron, 'UTC');
  } catch (error) {
    expect(isPrewarmError(error, 'PREWARM_ERR_BAD_WINDOW')).toBe(true);
    return (error as Error).message;
  }
  throw new Error(`expected "${cron}" to be refused`);
}

describe('cron refusals give the real reason (issue 12)', () => {
  it.each([
    ['61 * * * *', 'invalid cron expression "61 * * * *": minute 61 is out of range 0–59'],
    ['0 24 * * *', 'invalid cron expression "0 24 * * *": hour 24 is out of range 0–23'],
    ['0 2 32 * *', 'invalid cron expression "0 2 32 * *": day-of-month 32 is out of range 1–31'],
    ['0 2 * 0 *', 'invalid cron expression "0 2 * 0 *": month 0 is out of range 1–12'],
    ['0 2 * * 8', 'invalid cron expression "0 2 * * 8": day-of-week 8 is out of range 0–7'],
    ['75 0 2 * * *', 'invalid cron expression "75 0 2 * * *": second 75 is out of range 0–59'],
    ['0-70/5 * * * *', 'invalid cron expression "0-70/5 * * * *": minute 70 is out of range 0–59'],
    ['*/0 * * * *', 'invalid cron expression "*/0 * * * *": minute step "0" must be a positive whole number'],
  ])('%j', (cron, message) => {
    expect(refusal(cron)).toBe(message);
  });

  it('says "5 or 6 fields" only when the count is wrong', () => {
    expect(refusal('0 2 * *')).toBe('invalid cron expression "0 2 * *": expected 5 fields (minute first) or 6 (second first), found 4; e.g. "0 2 * * *" for 02:00 every day');
    expect(refusal('every night')).toMatch(/found 2/);
  });
});
