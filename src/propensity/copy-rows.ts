import { to as copyTo } from 'pg-copy-streams';
import type { Pool } from '../db/pool.ts';

// Reads a binary COPY … TO STDOUT stream row by row without an object per field: the scorers'
// streaming read of a whole table (https://www.postgresql.org/docs/current/sql-copy.html,
// "Binary Format"). A row is handed over as the buffer holding it and each field's offset and
// length (−1: NULL), valid only during the callback.

const HEADER_BYTES = 11 + 4 + 4;

export type RowHandler = (buffer: Buffer, offsets: Int32Array, lengths: Int32Array) => void;

export class BinaryCopyRowParser {
  #pending: Buffer = Buffer.alloc(0);
  #headerRead = false;
  #done = false;
  readonly #offsets: Int32Array;
  readonly #lengths: Int32Array;
  constructor(
    fields: number,
    private readonly onRow: RowHandler,
  ) {
    this.#offsets = new Int32Array(fields);
    this.#lengths = new Int32Array(fields);
  }

  push(chunk: Buffer): void {
    const buffer = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : chunk;
    let at = 0;
    if (!this.#headerRead) {
      if (buffer.length < HEADER_BYTES) {
        this.#pending = buffer;
        return;
      }
      at = HEADER_BYTES + buffer.readInt32BE(15);
      this.#headerRead = true;
    }
    const fields = this.#offsets.length;
    for (;;) {
      if (this.#done || at + 2 > buffer.length) break;
      const count = buffer.readInt16BE(at);
      if (count === -1) {
        this.#done = true;
        at += 2;
        break;
      }
      if (count !== fields) throw new Error(`binary COPY row has ${count} fields, expected ${fields}`);
      let p = at + 2;
      let complete = true;
      for (let f = 0; f < fields; f++) {
        if (p + 4 > buffer.length) {
          complete = false;
          break;
        }
        const length = buffer.readInt32BE(p);
        p += 4;
        this.#offsets[f] = p;
        this.#lengths[f] = length;
        if (length > 0) p += length;
        if (p > buffer.length) {
          complete = false;
          break;
        }
      }
      if (!complete) break;
      this.onRow(buffer, this.#offsets, this.#lengths);
      at = p;
    }
    this.#pending = at < buffer.length ? Buffer.from(buffer.subarray(at)) : Buffer.alloc(0);
  }

  finish(): void {
    if (!this.#done && (this.#headerRead || this.#pending.length > 0)) throw new Error('binary COPY stream ended before its trailer');
  }
}

/**
 * Runs `COPY (query) TO STDOUT (FORMAT binary)` and hands over its rows; `flush` is awaited
 * between network chunks, so a consumer can hand a full batch over before more is parsed (memory
 * stays bounded by a batch plus one chunk).
 */
export async function* copyRows<T>(pool: Pool, query: string, fields: number, onRow: RowHandler, take: () => T | undefined): AsyncGenerator<T> {
  const client = await pool.connect();
  let failed: Error | undefined;
  let completed = false;
  try {
    const stream = client.query(copyTo(`COPY (${query}) TO STDOUT (FORMAT binary)`));
    const parser = new BinaryCopyRowParser(fields, onRow);
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        parser.push(chunk);
        for (let ready = take(); ready !== undefined; ready = take()) yield ready;
      }
    } catch (error) {
      failed = error instanceof Error ? error : new Error(String(error));
      stream.destroy();
      throw error;
    }
    parser.finish();
    completed = true;
  } catch (error) {
    failed ??= error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    // A COPY abandoned half-way (the consumer stopped early) leaves the connection mid-protocol.
    client.release(completed ? undefined : (failed ?? new Error('COPY abandoned before its end')));
  }
}

/** A SQL string literal (COPY takes no parameters). */
export function sqlLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** The shard filter: `hashtext(user_id)` modulo the shard count (nothing for one shard). */
export function shardFilter(column: string, shard: { index: number; count: number }): string {
  if (shard.count <= 1) return 'true';
  if (!Number.isInteger(shard.count) || !Number.isInteger(shard.index)) throw new TypeError('shard index and count must be integers');
  return `mod(abs(hashtext(${column})::bigint), ${shard.count}) = ${shard.index}`;
}
