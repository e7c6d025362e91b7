/**
 * What prewarm accepts as an id and as a timestamp from outside: the CSV files
 * (src/activity/csv.ts), the HTTP API (src/api/schemas.ts, src/api/app.ts) and the CLI's flags
 * (src/cli/flags.ts).
 *
 * One id rule for import and HTTP: 1–128 Unicode code points (an emoji is one, as JSON Schema's
 * `maxLength` counts in Fastify's Ajv), none of them a control character (C0, DEL, C1), a line or
 * paragraph separator (U+2028, U+2029: line breaks to JavaScript and to many log viewers) or an
 * unpaired surrogate half. Anything else is opaque: quotes, `%`, `/`, `..`, shell and SQL
 * metacharacters are ordinary characters of an id, and every query passes ids as parameters.
 */

/** Longest id, in Unicode code points. */
export const MAX_ID_LENGTH = 128;

/**
 * The characters an id may not contain, as the body of a regular-expression character class
 * read in Unicode mode (`u`): in that mode a surrogate pair is one code point outside
 * `\ud800-\udfff`, so the range matches only unpaired halves.
 */
const FORBIDDEN_ID_CHARS = '\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\ud800-\\udfff';
const FORBIDDEN_ID_CHAR = new RegExp(`[${FORBIDDEN_ID_CHARS}]`, 'u');

/** Code points of `text`, counting an unpaired surrogate half as one (as Ajv does). */
export function codePointLength(text: string): number {
  let length = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    length++;
  }
  return length;
}

/** Why an id is unacceptable, or undefined when it is fine: the rule of import and HTTP alike. */
export function idProblem(id: string): string | undefined {
  if (id.length === 0) return 'is empty';
  // UTF-16 units bound code points from above (≤ 128 units: fine) and at most halve them (> 256 units: too long).
  if (id.length > MAX_ID_LENGTH && (id.length > 2 * MAX_ID_LENGTH || codePointLength(id) > MAX_ID_LENGTH)) {
    return `is longer than ${MAX_ID_LENGTH} characters`;
  }
  if (FORBIDDEN_ID_CHAR.test(id)) return 'contains control characters';
  return undefined;
}

/**
 * The same rule as JSON Schema, for the HTTP route and its OpenAPI document. Ajv counts
 * `maxLength` in code points and compiles `pattern` in Unicode mode, so it accepts exactly the
 * ids idProblem accepts (test/properties-ids.test.ts checks both sides on random strings).
 */
export const userIdJsonSchema = {
  type: 'string',
  minLength: 1,
  maxLength: MAX_ID_LENGTH,
  pattern: `^[^${FORBIDDEN_ID_CHARS}]+$`,
  description: 'Opaque user id: 1–128 Unicode code points, no control characters (C0, C1, U+2028, U+2029)',
} as const;

// Hours 00–23: `T24:00:00` (which Date.parse rolls over to the next day) is refused like 30 February.
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T(?:[01]\d|2[0-3]):\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

/** The instants parseTimestamp accepts: UTC years 0001–9999. */
export const MIN_TIMESTAMP_MS = Date.parse('0001-01-01T00:00:00.000Z');
export const MAX_TIMESTAMP_MS = Date.parse('9999-12-31T23:59:59.999Z');

/**
 * Strict ISO 8601 with an explicit zone, UTC years 0001–9999; `2013-02-30T00:00:00Z` and
 * `T24:00:00` are refused, not rolled over.
 */
export function parseTimestamp(text: string): Date | undefined {
  if (!ISO_UTC.test(text)) return undefined;
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) return undefined;
  const [year, month, day] = text.slice(0, 10).split('-').map(Number) as [number, number, number];
  const check = new Date(Date.UTC(year, month - 1, day));
  if (check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day) return undefined;
  // An instant whose UTC year is 0000 or 10000 (`0001-01-01T00:00:00+01:00`) has no ISO form
  // Postgres reads back (`toISOString` gives "0000-…" or "+010000-…").
  if (ms < MIN_TIMESTAMP_MS || ms > MAX_TIMESTAMP_MS) return undefined;
  return new Date(ms);
}

/** Largest and smallest positive 4-byte `real` (the interactions' weight column). */
const MAX_REAL = 3.4028234663852886e38;
const MIN_REAL = 1.401298464324817e-45;

/**
 * Why an interaction's weight is unacceptable, or undefined when it is fine: a positive number
 * that a 4-byte real keeps (what rounds to infinity or to zero there, Postgres refuses, and a
 * refused row would fail its whole batch). The rule of import and HTTP alike.
 */
export function weightProblem(weight: number): string | undefined {
  if (!Number.isFinite(weight) || weight <= 0) return 'is not a positive number';
  const stored = Math.fround(weight);
  if (stored > MAX_REAL) return 'is too large for a 4-byte real (at most 3.4028235e38)';
  if (stored < MIN_REAL) return 'is too small for a 4-byte real (it would be 0; at least 1.4e-45)';
  return undefined;
}
