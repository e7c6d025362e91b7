import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { InteractionEvent, LoginEvent } from './generate.ts';

/**
 * Writes activity logs in the plain CSV format the importer reads (README, "CSV formats"): `logins.csv` (`user_id,ts`)
 * and `interactions.csv` (`user_id,item_id,ts,weight`), gzip-compressed when the path ends with
 * `.gz`. Files appear complete or not at all: rows go to a temporary file next to the target,
 * renamed into place once everything is flushed.
 */

export const LOGINS_HEADER = 'user_id,ts';
export const INTERACTIONS_HEADER = 'user_id,item_id,ts,weight';

/** ISO 8601 UTC with second resolution: `2024-01-01T08:13:05Z`. */
export function formatTimestamp(at: Date): string {
  const iso = at.toISOString();
  return `${iso.slice(0, 19)}Z`;
}

/** Quotes a field only when CSV needs it. */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

export function loginRow(login: LoginEvent): string {
  return `${csvField(login.userId)},${formatTimestamp(login.at)}`;
}

export function interactionRow(interaction: InteractionEvent): string {
  return `${csvField(interaction.userId)},${csvField(interaction.itemId)},${formatTimestamp(interaction.at)},${interaction.weight}`;
}

/** Rows are joined into chunks of about this many characters before they are written. */
const CHUNK_CHARS = 64 * 1024;

/** One CSV file being written; `close()` publishes it, `abort()` removes what was written. */
export interface CsvFileWriter {
  readonly path: string;
  readonly rows: number;
  /** Appends one row (without its line break); resolves at once unless the stream asks to wait. */
  write(row: string): Promise<void>;
  /** Flushes and closes the temporary file without publishing it yet. */
  finish(): Promise<void>;
  /** Moves the finished file into place. */
  publish(): Promise<void>;
  /** finish() then publish(). */
  close(): Promise<void>;
  /** Discards the temporary file; a no-op once published. */
  abort(): Promise<void>;
}

export function openCsvFile(path: string, header: string): CsvFileWriter {
  const temporary = `${path}.${process.pid}.${Date.now().toString(36)}.tmp`;
  const file = createWriteStream(temporary, { flags: 'wx' });
  const gzip = path.endsWith('.gz') ? createGzip() : undefined;
  const head: Writable = gzip ?? file;
  const done = gzip ? pipeline(gzip, file) : finished(file);
  // Observed through write(), close() and abort(); never left as an unhandled rejection.
  done.catch(() => undefined);
  let buffer = `${header}\n`;
  let rows = 0;
  let state: 'open' | 'finished' | 'published' | 'aborted' = 'open';

  async function flush(): Promise<void> {
    if (buffer.length === 0) return;
    const chunk = buffer;
    buffer = '';
    if (head.write(chunk)) return;
    // Backpressure: wait for the stream to drain, or fail with the stream's error.
    const abandon = new AbortController();
    try {
      await Promise.race([
        once(head, 'drain', { signal: abandon.signal }),
        done.then(() => {
          throw new Error(`${path}: stream ended while writing`);
        }),
      ]);
    } finally {
      abandon.abort();
    }
  }

  const writer: CsvFileWriter = {
    path,
    get rows() {
      return rows;
    },
    async write(row) {
      if (state !== 'open') throw new Error(`${path}: write after ${state}`);
      buffer += `${row}\n`;
      rows += 1;
      if (buffer.length >= CHUNK_CHARS) await flush();
    },
    async finish() {
      if (state !== 'open') throw new Error(`${path}: finish after ${state}`);
      await flush();
      state = 'finished';
      head.end();
      await done;
    },
    async publish() {
      if (state !== 'finished') throw new Error(`${path}: publish when ${state}`);
      await rename(temporary, path);
      state = 'published';
    },
    async close() {
      await writer.finish();
      await writer.publish();
    },
    async abort() {
      if (state === 'aborted' || state === 'published') return;
      state = 'aborted';
      head.destroy();
      file.destroy();
      await done.catch(() => undefined);
      await unlink(temporary).catch(() => undefined);
    },
  };
  return writer;
}

export interface ActivityBatch {
  logins: readonly LoginEvent[];
  interactions: readonly InteractionEvent[];
}

export interface WriteActivityOptions {
  loginsPath: string;
  interactionsPath: string;
  /** Batches in time order (for example the days of `streamActivity`); each batch sorted by time. */
  batches: Iterable<ActivityBatch> | AsyncIterable<ActivityBatch>;
  /** Called after each batch is written, e.g. to tally figures without a second pass. */
  onBatch?: (batch: ActivityBatch) => void;
}

/**
 * Writes both files from one pass over the batches. Both are finished before either is moved
 * into place, so a failure leaves no half of a pair behind.
 */
export async function writeActivityCsv(options: WriteActivityOptions): Promise<{ logins: number; interactions: number }> {
  const writers: CsvFileWriter[] = [];
  try {
    const logins = openCsvFile(options.loginsPath, LOGINS_HEADER);
    writers.push(logins);
    const interactions = openCsvFile(options.interactionsPath, INTERACTIONS_HEADER);
    writers.push(interactions);
    for await (const batch of options.batches) {
      for (const login of batch.logins) await logins.write(loginRow(login));
      for (const interaction of batch.interactions) await interactions.write(interactionRow(interaction));
      options.onBatch?.(batch);
    }
    await logins.finish();
    await interactions.finish();
    await logins.publish();
    await interactions.publish();
    return { logins: logins.rows, interactions: interactions.rows };
  } catch (error) {
    for (const writer of writers) await writer.abort();
    throw error;
  }
}

export async function writeLoginsCsv(path: string, logins: Iterable<LoginEvent> | AsyncIterable<LoginEvent>): Promise<number> {
  return writeRows(path, LOGINS_HEADER, logins, loginRow);
}

export async function writeInteractionsCsv(
  path: string,
  interactions: Iterable<InteractionEvent> | AsyncIterable<InteractionEvent>,
): Promise<number> {
  return writeRows(path, INTERACTIONS_HEADER, interactions, interactionRow);
}

async function writeRows<T>(path: string, header: string, events: Iterable<T> | AsyncIterable<T>, row: (event: T) => string): Promise<number> {
  const writer = openCsvFile(path, header);
  try {
    for await (const event of events) await writer.write(row(event));
    await writer.close();
    return writer.rows;
  } catch (error) {
    await writer.abort();
    throw error;
  }
}
