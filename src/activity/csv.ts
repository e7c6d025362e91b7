import { isUtf8 } from 'node:buffer';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { pipeline, Transform, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { PrewarmError } from '../errors.ts';
import { idProblem, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, parseTimestamp, weightProblem } from '../ids.ts';

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

/**
 * Longest line read, in bytes. A valid row is far shorter (two ids of at most 128 characters,
 * a timestamp, a number: ≈ 1.1 KB at worst); a longer line is reported as bad and skipped while
 * it streams by, so memory stays bounded whatever the file holds (one 1.2 GB line used to take
 * the process to 1.5 GB and kill it).
 */
export const MAX_LINE_BYTES = 64 * 1024;

// The instants Postgres stores in a timestamptz and prewarm writes back as ISO text: the years
// 0001–9999 in UTC (`0000-01-01T00:00:00Z` parses in JavaScript, and a whole batch failed on it).
// parseTimestamp refuses the others; the reader says why.
export { MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS } from '../ids.ts';

// Decimal notation only: Number() would also take "0x10", "0b1" and " 1 ".
const DECIMAL = /^\+?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

export interface ReadCsvOptions {
  /** Called for every malformed line, in line order; the line is skipped and reading goes on. */
  onError?: (error: CsvRowError) => void;
  /** Called with the number of bytes of the file read so far (compressed bytes for .gz). */
  onProgress?: (bytesRead: number) => void;
}

/** Valid rows of one stretch of the file, with the line each came from. */
export interface CsvBatch<K extends CsvKind> {
  rows: CsvRow<K>[];
  lines: number[];
}

/**
 * Streams the rows of a logins or interactions CSV (plain or gzip, detected from the content),
 * validating each. A bad header, an empty file or an unreadable one is fatal; a bad row is
 * reported with its line number and skipped.
 */
export async function* readCsv<K extends CsvKind>(path: string, kind: K, options: ReadCsvOptions = {}): AsyncGenerator<CsvRow<K>> {
  for await (const batch of readCsvBatches(path, kind, options)) yield* batch.rows;
}

/**
 * readCsv in batches (one per chunk of the file), each row with its line number: what the
 * importer needs to name a row Postgres refuses, at a fraction of the cost of a generator step
 * per row.
 *
 * Every physical line is one record. No valid field can hold a line break (ids refuse control
 * characters, timestamps and numbers have none), so a quoted field that does not close on its
 * line is a bad record, and the next line is read afresh: one stray quote can no longer swallow
 * the rest of the file. Lines are checked to be UTF-8 before they are decoded (invalid bytes used
 * to become U+FFFD silently, merging distinct ids), and bounded in length (MAX_LINE_BYTES).
 *
 * When the file cannot be read to its end (a truncated gzip), the rows before the cut are
 * yielded, a line cut in two is reported as bad, and then PREWARM_ERR_IMPORT is thrown.
 */
export async function* readCsvBatches<K extends CsvKind>(path: string, kind: K, options: ReadCsvOptions = {}): AsyncGenerator<CsvBatch<K>> {
  const expected = CSV_COLUMNS[kind];
  const header = `"${expected.join(',')}"`;
  const report = (line: number, message: string) => options.onError?.({ line, message });
  const toRow = (kind === 'logins' ? toLogin : toInteraction) as (fields: string[], parseTs: (text: string) => Date | undefined) => CsvRow<K> | string;
  const parseTs = lastValueParser();
  const source = await openBytes(path, options.onProgress);
  const splitter = new LineSplitter();
  let headerSeen = false;

  const consume = (lines: RawLine[]): CsvBatch<K> => {
    const batch: CsvBatch<K> = { rows: [], lines: [] };
    for (const raw of lines) {
      // A UTF-8 byte-order mark opening the file is allowed (README); anywhere else it is a
      // sign of files joined together, and would start an id with an invisible character.
      if (raw.text !== undefined && raw.text.charCodeAt(0) === 0xfeff) {
        if (raw.line === 1) raw.text = raw.text.slice(1);
        else if (headerSeen) {
          report(raw.line, 'starts with a byte-order mark (U+FEFF): files joined together? skipped');
          continue;
        }
      }
      if (!headerSeen) {
        if (raw.text === '') continue;
        checkHeader(path, raw, expected);
        headerSeen = true;
        continue;
      }
      if (raw.text === undefined) {
        report(raw.line, raw.problem);
        continue;
      }
      if (raw.text === '') continue;
      const fields = splitFields(raw.text);
      const result = typeof fields === 'string' ? fields : toRow(fields, parseTs);
      if (typeof result === 'string') {
        report(raw.line, result);
        continue;
      }
      batch.rows.push(result);
      batch.lines.push(raw.line);
    }
    return batch;
  };

  let failure: unknown;
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      const batch = consume(splitter.push(chunk));
      if (batch.rows.length > 0) yield batch;
    }
  } catch (error) {
    if (error instanceof PrewarmError) throw error;
    failure = error;
  } finally {
    // Also ends the file stream when the consumer stops early or the header is refused.
    source.destroy();
  }
  if (failure === undefined) {
    const batch = consume(splitter.end());
    if (batch.rows.length > 0) yield batch;
    if (!headerSeen) throw new PrewarmError('PREWARM_ERR_IMPORT', `${path}: the file is empty (expected header ${header})`);
    return;
  }
  // The file ends early: what was read before the cut counts, a line cut in two does not.
  const cut = splitter.cut();
  const reason = describeFailure(failure);
  if (headerSeen && cut) report(cut.line, `the file ends in the middle of this line (${reason}), which is skipped`);
  throw new PrewarmError('PREWARM_ERR_IMPORT', `${path}: ${reason}`, { cause: failure });
}

function describeFailure(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'Z_BUF_ERROR' || message === 'unexpected end of file') return 'unexpected end of file: the gzip data is truncated';
  if (typeof code === 'string' && code.startsWith('Z_')) return `corrupt gzip data (${message})`;
  return message;
}

function checkHeader(path: string, raw: RawLine, expected: readonly string[]): void {
  const want = `expected header "${expected.join(',')}"`;
  if (raw.text === undefined) {
    throw new PrewarmError('PREWARM_ERR_IMPORT', `${path}: line ${raw.line}: ${want}, but the line is ${raw.problem.replace(/^line is /, '')} (a binary file, or text not in UTF-8?)`);
  }
  const fields = splitFields(raw.text);
  if (typeof fields !== 'string' && fields.length === expected.length && fields.every((name, i) => name.trim() === expected[i])) return;
  let hint = '';
  if (raw.text.includes('\r')) hint = ' (lines end in a bare CR: save the file with LF or CRLF line ends)';
  // eslint-disable-next-line no-control-regex -- looking for them is the point
  else if (/[\u0000-\u0008\u000e-\u001f]/.test(raw.text)) hint = ' (binary data, not a CSV text file)';
  throw new PrewarmError('PREWARM_ERR_IMPORT', `${path}: line ${raw.line}: ${want}, found ${excerpt(raw.text, 60)}${hint}`);
}

/** One physical line: its text, or why it could not be read. */
type RawLine = { line: number; text: string; problem?: undefined } | { line: number; text?: undefined; problem: string };

/**
 * Cuts a byte stream into lines (LF; a CR before it is dropped), checks each is UTF-8 and at
 * most MAX_LINE_BYTES long, and decodes it. A whole chunk of lines is checked and decoded at once
 * when it is valid, which it nearly always is; only a chunk with a bad byte is looked at line by
 * line.
 */
class LineSplitter {
  /** The line being accumulated (the start of it, when it spans chunks). */
  private carry: Buffer[] = [];
  private carryBytes = 0;
  /** Bytes of the current line seen while it is too long to keep. */
  private overlongBytes = 0;
  private overlongStart: Buffer | undefined;
  /** Number of the line being accumulated. */
  private line = 1;

  push(chunk: Buffer): RawLine[] {
    const out: RawLine[] = [];
    const last = chunk.lastIndexOf(0x0a);
    if (last === -1) {
      this.append(chunk);
      return out;
    }
    let from = 0;
    if (this.carryBytes > 0 || this.overlongBytes > 0) {
      const first = chunk.indexOf(0x0a);
      this.append(chunk.subarray(0, first));
      out.push(this.takeCarry());
      from = first + 1;
    }
    if (from <= last) this.decodeRegion(chunk.subarray(from, last), out);
    this.append(chunk.subarray(last + 1));
    return out;
  }

  /** The last line, when the file does not end with a line break. */
  end(): RawLine[] {
    return this.carryBytes > 0 || this.overlongBytes > 0 ? [this.takeCarry()] : [];
  }

  /** The unfinished line when the stream broke off, if any. */
  cut(): { line: number } | undefined {
    return this.carryBytes > 0 || this.overlongBytes > 0 ? { line: this.line } : undefined;
  }

  private append(piece: Buffer): void {
    if (piece.length === 0) return;
    if (this.overlongBytes > 0) {
      this.overlongBytes += piece.length;
      return;
    }
    if (this.carryBytes + piece.length > MAX_LINE_BYTES) {
      this.overlongStart = Buffer.concat([...this.carry, piece.subarray(0, 64)]).subarray(0, 64);
      this.overlongBytes = this.carryBytes + piece.length;
      this.carry = [];
      this.carryBytes = 0;
      return;
    }
    this.carry.push(piece);
    this.carryBytes += piece.length;
  }

  private takeCarry(): RawLine {
    let raw: RawLine;
    if (this.overlongBytes > 0) {
      raw = {
        line: this.line,
        problem: `line is longer than ${MAX_LINE_BYTES} bytes (${this.overlongBytes} bytes, starting ${bytesExcerpt(this.overlongStart ?? Buffer.alloc(0), 40)}): skipped`,
      };
      this.overlongBytes = 0;
      this.overlongStart = undefined;
    } else {
      raw = decodeLine(this.carry.length === 1 ? this.carry[0]! : Buffer.concat(this.carry), this.line);
    }
    this.carry = [];
    this.carryBytes = 0;
    this.line += 1;
    return raw;
  }

  /** Lines separated by LF, the region ending just before an LF. */
  private decodeRegion(region: Buffer, out: RawLine[]): void {
    if (isUtf8(region)) {
      const texts = region.toString('utf8').split('\n');
      for (const text of texts) {
        const line = this.line++;
        // A line of n UTF-16 units holds at most 3n bytes: only a long one needs measuring.
        if (text.length * 3 > MAX_LINE_BYTES && Buffer.byteLength(text) > MAX_LINE_BYTES + 1) {
          out.push({ line, problem: `line is longer than ${MAX_LINE_BYTES} bytes (${Buffer.byteLength(text)} bytes, starting ${excerpt(text, 40)}): skipped` });
          continue;
        }
        out.push({ line, text: text.endsWith('\r') ? text.slice(0, -1) : text });
      }
      return;
    }
    let from = 0;
    for (;;) {
      const nl = region.indexOf(0x0a, from);
      const bytes = region.subarray(from, nl === -1 ? region.length : nl);
      const line = this.line++;
      out.push(bytes.length > MAX_LINE_BYTES + 1 ? { line, problem: `line is longer than ${MAX_LINE_BYTES} bytes (${bytes.length} bytes): skipped` } : decodeLine(bytes, line));
      if (nl === -1) break;
      from = nl + 1;
    }
  }
}

function decodeLine(bytes: Buffer, line: number): RawLine {
  const content = bytes.length > 0 && bytes[bytes.length - 1] === 0x0d ? bytes.subarray(0, -1) : bytes;
  if (line === 1 && ((content[0] === 0xff && content[1] === 0xfe) || (content[0] === 0xfe && content[1] === 0xff))) {
    return { line, problem: 'UTF-16 text (the file starts with a UTF-16 byte-order mark): save it as UTF-8' };
  }
  if (!isUtf8(content)) {
    return { line, problem: `not valid UTF-8 (${badUtf8At(content)}): ${bytesExcerpt(content, 40)}` };
  }
  return { line, text: content.toString('utf8') };
}

/** Where the first invalid UTF-8 sequence starts, for the message (only run for a bad line). */
function badUtf8At(bytes: Buffer): string {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i]!;
    if (lead < 0x80) {
      i += 1;
      continue;
    }
    const follow = lead >= 0xc2 && lead <= 0xdf ? 1 : lead >= 0xe0 && lead <= 0xef ? 2 : lead >= 0xf0 && lead <= 0xf4 ? 3 : 0;
    if (follow === 0 || i + follow >= bytes.length) break;
    let ok = true;
    for (let k = 1; k <= follow; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) ok = false;
    const second = bytes[i + 1]!;
    // Overlong forms, UTF-16 surrogates and code points beyond U+10FFFF.
    if ((lead === 0xe0 && second < 0xa0) || (lead === 0xed && second > 0x9f) || (lead === 0xf0 && second < 0x90) || (lead === 0xf4 && second > 0x8f)) ok = false;
    if (!ok) break;
    i += follow + 1;
  }
  const at = Math.min(i, bytes.length - 1);
  return `byte 0x${bytes[at]!.toString(16).padStart(2, '0')} at byte ${at + 1} of the line`;
}

/**
 * The fields of one line under RFC 4180 quoting, or why it is malformed. A quoted field must
 * close on its line (see readCsvBatches).
 */
export function splitFields(text: string): string[] | string {
  if (!text.includes('"')) return text.split(',');
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    const field = fields.length + 1;
    if (text.charCodeAt(i) === 0x22) {
      let value = '';
      let from = i + 1;
      for (;;) {
        const quote = text.indexOf('"', from);
        if (quote === -1) return `malformed CSV: Unterminated Quote: quoted field ${field} is not closed on its line`;
        value += text.slice(from, quote);
        if (text.charCodeAt(quote + 1) === 0x22) {
          value += '"';
          from = quote + 2;
          continue;
        }
        i = quote + 1;
        break;
      }
      fields.push(value);
      if (i === text.length) return fields;
      if (text.charCodeAt(i) !== 0x2c) return `malformed CSV: Invalid Closing Quote: field ${field} goes on after its closing quote`;
      i += 1;
      continue;
    }
    const comma = text.indexOf(',', i);
    const value = text.slice(i, comma === -1 ? text.length : comma);
    if (value.includes('"')) return `malformed CSV: Invalid Opening Quote: a quote inside unquoted field ${field}`;
    fields.push(value);
    if (comma === -1) return fields;
    i = comma + 1;
  }
}

/**
 * A value as it may be echoed in a message: at most `max` characters, in quotes, with every
 * control, format, separator or replacement character escaped, so that no byte of a file (a
 * binary one included) reaches a terminal or a log raw.
 */
export function excerpt(text: string, max = 40): string {
  return `"${escapeText(text, max, true)}"`;
}

/** Text from elsewhere (a Postgres message quoting a value) made safe to print, unquoted. */
export function sanitize(text: string, max = 200): string {
  return escapeText(text, max, false);
}

const UNSAFE = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}\p{Co}\p{Cn}\uFFFD]/u;

function escapeText(text: string, max: number, quoted: boolean): string {
  const chars = Array.from(text.length > max * 2 ? text.slice(0, max * 2) : text);
  let shown = '';
  for (const char of chars.slice(0, max)) {
    if (quoted && (char === '"' || char === '\\')) shown += `\\${char}`;
    else if (!UNSAFE.test(char)) shown += char;
    else {
      const code = char.codePointAt(0)!;
      shown += code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
    }
  }
  return chars.length > max ? `${shown}…` : shown;
}

/** Raw bytes as they may be echoed: printable ASCII as is, anything else as \xNN. */
export function bytesExcerpt(bytes: Buffer, max = 40): string {
  let shown = '';
  for (const byte of bytes.subarray(0, max)) {
    shown += byte >= 0x20 && byte < 0x7f && byte !== 0x22 && byte !== 0x5c ? String.fromCharCode(byte) : byte === 0x22 || byte === 0x5c ? `\\${String.fromCharCode(byte)}` : `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return `"${shown}${bytes.length > max ? '…' : ''}"`;
}

/**
 * parseTimestamp remembering its last input: the files are sorted by time, so runs of equal
 * timestamps are common (every row of a day-resolution log), and parsing dominates validation.
 * Instants Postgres cannot store (years outside 0001–9999 in UTC) are refused here.
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

function timestampProblem(ts: string, at: Date | undefined): string | undefined {
  const ms = at ? at.getTime() : /^\d{4}-\d{2}-\d{2}T/.test(ts) ? Date.parse(ts) : Number.NaN;
  if (ms < MIN_TIMESTAMP_MS || ms > MAX_TIMESTAMP_MS) return `ts ${excerpt(ts)} is outside the years 0001–9999 (in UTC) that can be stored`;
  if (!at) return `ts ${excerpt(ts)} is not an ISO 8601 timestamp with a zone (e.g. 2004-04-15T05:56:01Z)`;
  return undefined;
}

function toLogin(record: string[], parseTs: (text: string) => Date | undefined): LoginRow | string {
  if (record.length !== 2) return `expected 2 columns (user_id,ts), found ${record.length}`;
  const [userId, ts] = record as [string, string];
  const problem = idProblem(userId);
  if (problem) return `user_id ${problem}`;
  const at = parseTs(ts);
  const tsProblem = timestampProblem(ts, at);
  if (tsProblem) return tsProblem;
  return { userId, at: at! };
}

function toInteraction(record: string[], parseTs: (text: string) => Date | undefined): InteractionRow | string {
  if (record.length !== 4) return `expected 4 columns (user_id,item_id,ts,weight), found ${record.length}`;
  const [userId, itemId, ts, weightText] = record as [string, string, string, string];
  const userProblem = idProblem(userId);
  if (userProblem) return `user_id ${userProblem}`;
  const itemProblem = idProblem(itemId);
  if (itemProblem) return `item_id ${itemProblem}`;
  const at = parseTs(ts);
  const tsProblem = timestampProblem(ts, at);
  if (tsProblem) return tsProblem;
  const weight = DECIMAL.test(weightText) ? Number(weightText) : Number.NaN;
  const weightIssue = weightProblem(weight);
  if (weightIssue) return `weight ${excerpt(weightText)} ${weightIssue}`;
  return { userId, itemId, at: at!, weight };
}

/**
 * The file's bytes (gunzipped when it starts with the gzip magic bytes). pipeline() forwards a
 * read or decompression error to the last stream, so it surfaces in the reader's loop (a
 * truncated .gz used to crash the process with an unhandled 'error' event), and destroying the
 * last stream closes the file. Other compressions are refused by name rather than read as text.
 */
async function openBytes(path: string, onProgress?: (bytes: number) => void): Promise<Readable> {
  const magic = Buffer.alloc(6);
  let magicLength = 0;
  try {
    const handle = await open(path, 'r');
    try {
      magicLength = (await handle.read(magic, 0, magic.length, 0)).bytesRead;
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw new PrewarmError('PREWARM_ERR_IMPORT', `cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  const head = magic.subarray(0, magicLength);
  const other = otherCompression(head);
  if (other) throw new PrewarmError('PREWARM_ERR_IMPORT', `${path}: the file is ${other}; import reads plain or gzip CSV only`);
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      onProgress?.(bytes);
      callback(null, chunk);
    },
  });
  const gzipped = head[0] === 0x1f && head[1] === 0x8b;
  // Small reads keep the byte count (the progress bar) close to what has been parsed.
  const stages = [createReadStream(path, { highWaterMark: 64 * 1024 }), counter, ...(gzipped ? [createGunzip()] : [])] as const;
  // The error, if any, reaches the last stream's async iterator; nothing to do here.
  return pipeline(stages as unknown as [Readable, Transform], () => undefined) as unknown as Readable;
}

function otherCompression(head: Buffer): string | undefined {
  const starts = (...bytes: number[]) => bytes.every((byte, i) => head[i] === byte);
  if (starts(0x50, 0x4b, 0x03, 0x04)) return 'a zip archive';
  if (starts(0x42, 0x5a, 0x68)) return 'bzip2-compressed';
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'xz-compressed';
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'zstd-compressed';
  return undefined;
}
