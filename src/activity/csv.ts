import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { pipeline, Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Parser } from 'csv-parse';
import { PrewarmError } from '../errors.ts';
import { idProblem, parseTimestamp } from '../ids.ts';

/** The two CSV formats (README, "CSV formats"): a header line, then one row per login or interaction. */
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

interface TaggedRecord {
  record: string[];
  /** The line the record ends on, 1-based. */
  line: number;
}

/**
 * csv-parse with each record tagged by the line it ends on. Its `info: true` option gives the
 * same number but doubles the parse time (it copies its whole info object for every record);
 * the live `info.lines` counter, read as each record is pushed, costs nothing.
 */
class LineTaggingParser extends Parser {
  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    return super.push(chunk === null ? null : ({ record: chunk as string[], line: this.info.lines } satisfies TaggedRecord), encoding);
  }
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
  // Malformed quoting (`ab"c`, `"a"b`) is a bad row like any other: csv-parse reports it through
  // on_skip and goes on with the next record instead of failing the whole file. It reports while
  // parsing a chunk, ahead of the records the loop below has reached, so those reports wait in
  // `pending` and are passed on in line order.
  const pending: CsvRowError[] = [];
  const flushPending = (beforeLine: number) => {
    while (pending.length > 0 && pending[0]!.line < beforeLine) options.onError?.(pending.shift()!);
  };
  const parser = new LineTaggingParser({
    relax_column_count: true,
    skip_empty_lines: true,
    bom: true,
    trim: false,
    skip_records_with_error: true,
    on_skip: (error) => {
      const line = typeof error?.lines === 'number' ? error.lines : 0;
      pending.push({ line, message: `malformed CSV: ${error?.message ?? 'unreadable record'}` });
      return undefined;
    },
  });
  await openInto(path, parser, options.onProgress);
  const parseTs = lastValueParser();
  let headerSeen = false;
  try {
    for await (const { record, line } of parser as AsyncIterable<TaggedRecord>) {
      flushPending(line);
      if (!headerSeen) {
        headerSeen = true;
        if (record.length !== expected.length || record.some((name, i) => name.trim() !== expected[i])) {
          throw new PrewarmError('PREWARM_ERR_IMPORT', `${path}: line 1: expected header "${expected.join(',')}", found "${record.join(',')}"`);
        }
        continue;
      }
      const result = kind === 'logins' ? toLogin(record, parseTs) : toInteraction(record, parseTs);
      if (typeof result === 'string') {
        options.onError?.({ line: startLine(record, line), message: result });
        continue;
      }
      yield result as CsvRow<K>;
    }
    flushPending(Number.POSITIVE_INFINITY);
  } catch (error) {
    if (error instanceof PrewarmError) throw error;
    throw new PrewarmError('PREWARM_ERR_IMPORT', `${path}: ${(error as Error).message}`, { cause: error });
  } finally {
    // Also ends the file stream when the consumer stops early or the header is refused.
    parser.destroy();
  }
  if (!headerSeen) throw new PrewarmError('PREWARM_ERR_IMPORT', `${path}: the file is empty (expected header "${expected.join(',')}")`);
}

/**
 * csv-parse gives the line a record ends on; a quoted field spanning lines starts it earlier.
 * Inside quotes csv-parse counts every CR and every LF as a line break (so a quoted CRLF counts
 * twice), and so does this, to land on the line it numbers as the record's first.
 */
function startLine(record: string[], endLine: number): number {
  let breaks = 0;
  for (const field of record) breaks += field.match(/[\r\n]/g)?.length ?? 0;
  return endLine - breaks;
}

/**
 * parseTimestamp remembering its last input: the files are sorted by time, so runs of equal
 * timestamps are common (every row of a day-resolution log), and parsing dominates validation.
 */
function lastValueParser(): (text: string) => Date | undefined {
  let lastText: string | undefined;
  let lastMs: number | undefined;
  return (text) => {
    if (text !== lastText) {
      lastText = text;
      lastMs = parseTimestamp(text)?.getTime();
    }
    return lastMs === undefined ? undefined : new Date(lastMs);
  };
}

function toLogin(record: string[], parseTs: (text: string) => Date | undefined): LoginRow | string {
  if (record.length !== 2) return `expected 2 columns (user_id,ts), found ${record.length}`;
  const [userId, ts] = record as [string, string];
  const problem = idProblem(userId);
  if (problem) return `user_id ${problem}`;
  const at = parseTs(ts);
  if (!at) return `ts "${truncate(ts)}" is not an ISO 8601 timestamp with a zone (e.g. 2004-04-15T05:56:01Z)`;
  return { userId, at };
}

function toInteraction(record: string[], parseTs: (text: string) => Date | undefined): InteractionRow | string {
  if (record.length !== 4) return `expected 4 columns (user_id,item_id,ts,weight), found ${record.length}`;
  const [userId, itemId, ts, weightText] = record as [string, string, string, string];
  const userProblem = idProblem(userId);
  if (userProblem) return `user_id ${userProblem}`;
  const itemProblem = idProblem(itemId);
  if (itemProblem) return `item_id ${itemProblem}`;
  const at = parseTs(ts);
  if (!at) return `ts "${truncate(ts)}" is not an ISO 8601 timestamp with a zone (e.g. 2004-04-15T05:56:01Z)`;
  const weight = weightText.trim() === '' ? Number.NaN : Number(weightText);
  if (!Number.isFinite(weight) || weight <= 0) return `weight "${truncate(weightText)}" is not a positive number`;
  return { userId, itemId, at, weight };
}

function truncate(text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

/**
 * Pipes the file (gunzipped when it starts with the gzip magic bytes) into `parser`. pipeline()
 * forwards a read or decompression error to the parser, so it surfaces in the reader's loop
 * (a truncated .gz used to crash the process with an unhandled 'error' event), and destroying
 * the parser closes the file.
 */
async function openInto(path: string, parser: NodeJS.WritableStream, onProgress?: (bytes: number) => void): Promise<void> {
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
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      onProgress?.(bytes);
      callback(null, chunk);
    },
  });
  const gzipped = magic[0] === 0x1f && magic[1] === 0x8b;
  // Small reads keep the byte count (the progress bar) close to what has been parsed.
  const stages = [createReadStream(path, { highWaterMark: 64 * 1024 }), counter, ...(gzipped ? [createGunzip()] : []), parser];
  // The error, if any, reaches the parser's async iterator; nothing to do here.
  pipeline(stages, () => undefined);
}
