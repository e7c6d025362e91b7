import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Transform, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { parse } from 'csv-parse';
import { PrewarmError } from '../errors.ts';

/** The two CSV formats of ../shared/data/README.md. */
export const CSV_COLUMNS = {
  logins: ['user_id', 'ts'],
  interactions: ['user_id', 'item_id', 'ts', 'weight'],
} as const;
export type CsvKind = keyof typeof CSV_COLUMNS;

export interface LoginRow {
  userId: string;
  at: Date;
}
export interface InteractionRow {
  userId: string;
  itemId: string;
  at: Date;
  weight: number;
}
export type CsvRow<K extends CsvKind> = K extends 'logins' ? LoginRow : InteractionRow;

/** A line that was skipped, with its 1-based line number in the file. */
export interface CsvRowError {
  line: number;
  message: string;
}

export const MAX_ID_LENGTH = 128;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;
// Control characters make ids unprintable and unsafe in logs and URLs.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

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

/** Why an id is unacceptable, or undefined when it is fine. Shared by CSV import and HTTP. */
export function idProblem(id: string): string | undefined {
  if (id.length === 0) return 'is empty';
  if (id.length > MAX_ID_LENGTH) return `is longer than ${MAX_ID_LENGTH} characters`;
  if (CONTROL_CHARS.test(id)) return 'contains control characters';
  return undefined;
}

export interface ReadCsvOptions {
  /** Called for every malformed line; the line is skipped and reading goes on. */
  onError?: (error: CsvRowError) => void;
  /** Called with the number of bytes of the file read so far (compressed bytes for .gz). */
  onProgress?: (bytesRead: number) => void;
}

/**
 * Streams the rows of a logins or interactions CSV (plain or gzip, detected from the content),
 * validating each. A bad header is fatal; a bad row is reported with its line number and skipped.
 */
export async function* readCsv<K extends CsvKind>(path: string, kind: K, options: ReadCsvOptions = {}): AsyncGenerator<CsvRow<K>> {
  const expected = CSV_COLUMNS[kind];
  const source = await openMaybeGzip(path, options.onProgress);
  const parser = source.pipe(
    parse({ relax_column_count: true, skip_empty_lines: true, info: true, bom: true, trim: false }),
  );
  let headerSeen = false;
  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
      const line = info.lines;
      if (!headerSeen) {
        headerSeen = true;
        if (record.length !== expected.length || record.some((name, i) => name.trim() !== expected[i])) {
          throw new PrewarmError('PREWARM_ERR_IMPORT', `${path}: line 1: expected header "${expected.join(',')}", found "${record.join(',')}"`);
        }
        continue;
      }
      const result = kind === 'logins' ? toLogin(record) : toInteraction(record);
      if (typeof result === 'string') {
        options.onError?.({ line, message: result });
        continue;
      }
      yield result as CsvRow<K>;
    }
  } catch (error) {
    if (error instanceof PrewarmError) throw error;
    throw new PrewarmError('PREWARM_ERR_IMPORT', `${path}: ${(error as Error).message}`, { cause: error });
  } finally {
    source.destroy();
  }
  if (!headerSeen) throw new PrewarmError('PREWARM_ERR_IMPORT', `${path}: the file is empty (expected header "${expected.join(',')}")`);
}

function toLogin(record: string[]): LoginRow | string {
  if (record.length !== 2) return `expected 2 columns (user_id,ts), found ${record.length}`;
  const [userId, ts] = record as [string, string];
  const problem = idProblem(userId);
  if (problem) return `user_id ${problem}`;
  const at = parseTimestamp(ts);
  if (!at) return `ts "${truncate(ts)}" is not an ISO 8601 timestamp with a zone (e.g. 2004-04-15T05:56:01Z)`;
  return { userId, at };
}

function toInteraction(record: string[]): InteractionRow | string {
  if (record.length !== 4) return `expected 4 columns (user_id,item_id,ts,weight), found ${record.length}`;
  const [userId, itemId, ts, weightText] = record as [string, string, string, string];
  const userProblem = idProblem(userId);
  if (userProblem) return `user_id ${userProblem}`;
  const itemProblem = idProblem(itemId);
  if (itemProblem) return `item_id ${itemProblem}`;
  const at = parseTimestamp(ts);
  if (!at) return `ts "${truncate(ts)}" is not an ISO 8601 timestamp with a zone (e.g. 2004-04-15T05:56:01Z)`;
  const weight = weightText.trim() === '' ? Number.NaN : Number(weightText);
  if (!Number.isFinite(weight) || weight <= 0) return `weight "${truncate(weightText)}" is not a positive number`;
  return { userId, itemId, at, weight };
}

function truncate(text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

async function openMaybeGzip(path: string, onProgress?: (bytes: number) => void): Promise<Readable> {
  let magic: Buffer;
  try {
    const handle = await open(path, 'r');
    try {
      magic = Buffer.alloc(2);
      await handle.read(magic, 0, 2, 0);
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw new PrewarmError('PREWARM_ERR_IMPORT', `cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  const raw = createReadStream(path, { highWaterMark: 1 << 20 });
  let bytes = 0;
  const counted = raw.pipe(
    new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length;
        onProgress?.(bytes);
        callback(null, chunk);
      },
    }),
  );
  raw.on('error', (error) => counted.destroy(error));
  if (magic[0] === 0x1f && magic[1] === 0x8b) {
    const gunzip = createGunzip();
    counted.on('error', (error) => gunzip.destroy(error));
    return counted.pipe(gunzip);
  }
  return counted;
}
