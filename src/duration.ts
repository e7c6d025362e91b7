import { PrewarmError } from './errors.ts';

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/**
 * Longest duration accepted: 1000 years of 365 days. Anything longer is a typo, and added to a
 * date it would leave the range of a JavaScript Date (±8.64e15 ms) and fail far from its cause.
 */
export const MAX_DURATION_MS = 1_000 * 365 * 86_400_000;

/**
 * Parses a duration such as `24h`, `90m`, `1d`, `1h30m` or `500ms` into milliseconds.
 * Bare numbers are refused: a TTL of "24" is ambiguous, and a silent unit guess is how
 * sets end up fresh for 24 ms instead of 24 hours.
 */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  const pattern = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let consumed = 0;
  for (const match of trimmed.matchAll(pattern)) {
    total += Number(match[1]) * (UNIT_MS[match[2] as string] as number);
    consumed += match[0].length;
  }
  if (trimmed.length === 0 || consumed !== trimmed.length || !Number.isFinite(total)) {
    throw new PrewarmError('PREWARM_ERR_BAD_DURATION', `${quote(text)} is not a duration (examples: 24h, 90m, 1d, 500ms)`);
  }
  if (total > MAX_DURATION_MS) {
    throw new PrewarmError('PREWARM_ERR_BAD_DURATION', `${quote(text)} is longer than 1000 years`);
  }
  return Math.round(total);
}

/** The input as a one-line JSON string, cut to 40 characters: messages stay one printable line. */
function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}

/** Formats milliseconds with the largest unit that divides them exactly (86400000 → "1d"). */
export function formatDuration(ms: number): string {
  for (const unit of ['w', 'd', 'h', 'm', 's'] as const) {
    const size = UNIT_MS[unit] as number;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
