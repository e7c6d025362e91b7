import { PrewarmError } from './errors.ts';

/** `--window 1d|6h|1h`: windows aligned to UTC midnight, each set fresh for exactly that long. */
export const WINDOW_SPECS = {
  '1d': { ms: 86_400_000, cron: '0 0 * * *' },
  '6h': { ms: 21_600_000, cron: '0 */6 * * *' },
  '1h': { ms: 3_600_000, cron: '0 * * * *' },
} as const;
export type WindowSpec = keyof typeof WINDOW_SPECS;

export function parseWindowSpec(text: string): WindowSpec {
  if (text in WINDOW_SPECS) return text as WindowSpec;
  throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--window "${text}" must be one of ${Object.keys(WINDOW_SPECS).join(', ')}`);
}

/** The start of the window containing `ms` (windows aligned to UTC midnight). */
export function windowStartOf(ms: number, windowMs: number): number {
  return Math.floor(ms / windowMs) * windowMs;
}
