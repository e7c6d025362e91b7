/**
 * What prewarm accepts as an id and as a timestamp from outside: the CSV files
 * (src/activity/csv.ts), the HTTP API (src/api/schemas.ts) and the CLI's flags (src/cli/flags.ts).
 *
 * The id rules of CSV import and HTTP are the same but for how they count length, and stand side
 * by side here until they are made one: CSV import counts UTF-16 code units (`id.length`); HTTP
 * counts code points, as JSON Schema's `maxLength` does in Fastify's Ajv. An id with characters
 * outside the Basic Multilingual Plane (emoji, some CJK) of 65–128 such characters is served over
 * HTTP but refused by import.
 */

/** Longest id, in UTF-16 code units for CSV import, in code points over HTTP (see above). */
export const MAX_ID_LENGTH = 128;

// Control characters make ids unprintable and unsafe in logs and URLs.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/** CSV import's rule: why an id is unacceptable, or undefined when it is fine. Length in UTF-16 code units. */
export function idProblem(id: string): string | undefined {
  if (id.length === 0) return 'is empty';
  if (id.length > MAX_ID_LENGTH) return `is longer than ${MAX_ID_LENGTH} characters`;
  if (CONTROL_CHARS.test(id)) return 'contains control characters';
  return undefined;
}

/** HTTP's rule for a user id in a path, as JSON Schema. Length in code points (Ajv's `maxLength`). */
export const userIdJsonSchema = {
  type: 'string',
  minLength: 1,
  maxLength: MAX_ID_LENGTH,
  // No control characters: the characters of CONTROL_CHARS.
  pattern: '^[^\\u0000-\\u001f\\u007f]+$',
  description: 'Opaque user id: 1–128 characters, no control characters',
} as const;

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

/** Strict ISO 8601 with an explicit zone; `2013-02-30T00:00:00Z` is refused, not rolled over. */
export function parseTimestamp(text: string): Date | undefined {
  if (!ISO_UTC.test(text)) return undefined;
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) return undefined;
  const [year, month, day] = text.slice(0, 10).split('-').map(Number) as [number, number, number];
  const check = new Date(Date.UTC(year, month - 1, day));
  if (check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day) return undefined;
  return new Date(ms);
}
