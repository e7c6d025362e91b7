import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, readCsvBatches, type CsvRowError, type InteractionRow } from '../src/activity/csv.ts';
import { idProblem } from '../src/ids.ts';

// Property tests of the CSV reader (issue 12): any valid row survives, whatever garbage shares
// its file; garbage never crashes the reader and is reported or (when it happens to be a valid
// row) read, never both, never lost.

let dir: string;
let runNumber = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'prewarm-csv-props-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Ids the reader must accept, including commas, quotes, non-Latin scripts and astral characters. */
const validId = fc
  .string({ unit: fc.oneof(fc.constantFrom(',', '"', ' ', '\\', 'é', '😀', '中', '\u00a0'), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 })), minLength: 1, maxLength: 40 })
  // Through UTF-8 and back unchanged, and acceptable to the id rules (whatever they become).
  .filter((id) => Buffer.from(id, 'utf8').toString('utf8') === id && idProblem(id) === undefined);

const validAt = fc.integer({ min: MIN_TIMESTAMP_MS, max: MAX_TIMESTAMP_MS }).map((ms) => new Date(ms));
const validWeight = fc.oneof(fc.double({ min: 1.5e-45, max: 3.4e38, noNaN: true, noDefaultInfinity: true }), fc.integer({ min: 1, max: 1000 }));

const validRow = fc.record({ userId: validId, itemId: validId, at: validAt, weight: validWeight });

/** RFC 4180 quoting: when needed (and a leading U+FEFF is quoted, see README), else sometimes. */
function field(value: string, quoteAnyway: boolean): string {
  const needs = /[",\r\n]/.test(value) || value.startsWith('\ufeff');
  return needs || quoteAnyway ? `"${value.replaceAll('"', '""')}"` : value;
}

/** Lines that are probably not valid rows: arbitrary text and bytes, and near misses. */
const garbageLine = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 60 }).map((text) => Buffer.from(text.replaceAll('\n', ' '), 'utf8')),
  fc.uint8Array({ maxLength: 60 }).map((bytes) => Buffer.from(bytes.map((byte) => (byte === 0x0a ? 0x20 : byte)))),
  fc.constantFrom('"', '"u1,i1,2013-02-01T00:00:00Z,1', 'u1,"i1,2013-02-01T00:00:00Z,1', 'u1,i1,2013-02-01T00:00:00Z,"1', 'a"b,i,2013-02-01T00:00:00Z,1', '"a"b,i,2013-02-01T00:00:00Z,1', 'u1,i1,0000-01-01T00:00:00Z,1', 'u1,i1,2013-02-01T00:00:00Z,1e40', 'u1,i1,2013-02-01T00:00:00Z,1e-50', 'u1,i1,2013-02-01T00:00:00Z', '\ufeffu1,i1,2013-02-01T00:00:00Z,1', '\r', 'user_id,item_id,ts,weight').map((text) => Buffer.from(text)),
  fc.constant(Buffer.from([0x75, 0xff, 0x2c, 0x69, 0x2c])),
);

type Line = { kind: 'valid'; row: InteractionRow; bytes: Buffer } | { kind: 'garbage'; bytes: Buffer };

const validLine = fc.tuple(validRow, fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }), fc.boolean()).map(([row, quoted, crlf]): Line => {
  const text = [field(row.userId, quoted[0]!), field(row.itemId, quoted[1]!), field(row.at.toISOString(), quoted[2]!), field(String(row.weight), quoted[3]!)].join(',');
  return { kind: 'valid', row, bytes: Buffer.from(crlf ? `${text}\r` : text) };
});

const fileLines = fc.array(fc.oneof({ arbitrary: validLine, weight: 2 }, { arbitrary: garbageLine.map((bytes): Line => ({ kind: 'garbage', bytes })), weight: 1 }), { maxLength: 40 });

async function readAll(lines: Line[], noFinalNewline = false): Promise<{ rows: Map<number, InteractionRow>; errors: CsvRowError[] }> {
  const path = join(dir, `props-${++runNumber}.csv`);
  const body = Buffer.concat([Buffer.from('user_id,item_id,ts,weight\n'), ...lines.flatMap((line) => [line.bytes, Buffer.from('\n')])]);
  await writeFile(path, noFinalNewline ? body.subarray(0, body.length - 1) : body);
  const rows = new Map<number, InteractionRow>();
  const errors: CsvRowError[] = [];
  for await (const batch of readCsvBatches(path, 'interactions', { onError: (error) => errors.push(error) })) {
    batch.rows.forEach((row, i) => rows.set(batch.lines[i]!, row));
  }
  return { rows, errors };
}

describe('CSV reader properties', () => {
  it('every valid row survives, with its line number, whatever garbage lines share the file', async () => {
    await fc.assert(
      fc.asyncProperty(fileLines, fc.boolean(), async (lines, noFinalNewline) => {
        const { rows, errors } = await readAll(lines, noFinalNewline);
        lines.forEach((line, i) => {
          if (line.kind === 'valid') expect(rows.get(i + 2)).toEqual(line.row);
        });
        // Each line is read, reported or empty: never both, never neither.
        const reported = new Set(errors.map((error) => error.line));
        expect(reported.size).toBe(errors.length);
        lines.forEach((line, i) => {
          const empty = line.bytes.length === 0 || (line.bytes.length === 1 && line.bytes[0] === 0x0d);
          expect(Number(rows.has(i + 2)) + Number(reported.has(i + 2)) + Number(empty)).toBe(1);
        });
        expect(Math.max(0, ...errors.map((error) => error.line), ...rows.keys())).toBeLessThanOrEqual(lines.length + 1);
        // Line order.
        expect(errors.map((error) => error.line)).toEqual([...errors.map((error) => error.line)].sort((a, b) => a - b));
      }),
      { numRuns: 150 },
    );
  });

  it('never crashes and never echoes raw control characters, on arbitrary bytes after the header', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 2000 }), async (bytes) => {
        const path = join(dir, `bytes-${++runNumber}.csv`);
        await writeFile(path, Buffer.concat([Buffer.from('user_id,ts\n'), Buffer.from(bytes)]));
        const errors: CsvRowError[] = [];
        for await (const batch of readCsvBatches(path, 'logins', { onError: (error) => errors.push(error) })) expect(batch.rows.length).toBe(batch.lines.length);
        // eslint-disable-next-line no-control-regex
        for (const error of errors) expect(error.message).not.toMatch(/[\u0000-\u001f\u007f-\u009f\ufffd]/);
      }),
      { numRuns: 150 },
    );
  });
});
