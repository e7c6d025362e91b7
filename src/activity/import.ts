import { performance } from 'node:perf_hooks';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import type { Pool, PoolClient } from '../db/pool.ts';
import { PrewarmError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { readCsvBatches, sanitize, type CsvBatch, type CsvKind, type CsvRow, type CsvRowError, type InteractionRow, type LoginRow } from './csv.ts';
import { applyInsertedInteractions, applyInsertedLogins } from './user-activity.ts';

export interface ImporterOptions {
  pool: Pool;
  log: Logger;
  /**
   * Rows per batch. Each batch is one transaction (COPY into a staging table, then insert what
   * is new), so memory stays flat however long the file and a failure loses at most one batch,
   * which a re-run adds. Default 200,000.
   */
  batchSize?: number;
}

export interface ImportProgress {
  /** Bytes of the file read so far (compressed bytes for .gz: compare with the file's size). */
  bytesRead: number;
  /** Valid rows read so far. */
  rowsRead: number;
  /** Rows committed to the table so far. */
  rowsInserted: number;
}

export interface ImportFileOptions {
  /**
   * Every malformed line, in line order, then any row Postgres refused (reported when its batch
   * is written); the line is skipped and the import goes on.
   */
  onError?: (error: CsvRowError) => void;
  /** Called as the file is read and after each committed batch. */
  onProgress?: (progress: ImportProgress) => void;
}

export interface ImportSummary {
  file: string;
  kind: CsvKind;
  /**
   * Valid data rows in the file (that Postgres accepted); `rowsRead + errors` is every non-empty
   * line after the header.
   */
  rowsRead: number;
  /** Rows that were new to the table. */
  rowsInserted: number;
  /** Valid rows not inserted: already in the table, or repeated earlier in the same file. */
  duplicates: number;
  /** Malformed lines skipped, and rows Postgres refused. */
  errors: number;
  /** The first ERROR_SAMPLES malformed lines. */
  errorSamples: CsvRowError[];
  ms: number;
}

export interface Importer {
  importLogins(path: string, options?: ImportFileOptions): Promise<ImportSummary>;
  importInteractions(path: string, options?: ImportFileOptions): Promise<ImportSummary>;
  /**
   * The same COPY path for rows already validated and in memory (a replay feeding its log). A
   * row Postgres refuses is counted in `errors`, numbered by its position (1-based) in `rows`.
   */
  importRows<K extends CsvKind>(kind: K, rows: Iterable<CsvRow<K>>, label?: string): Promise<ImportSummary>;
  /**
   * VACUUM (ANALYZE) of the tables a bulk load filled: fresh statistics for the planner, and a
   * visibility map that lets the recommender's history reads be index-only. Autovacuum does it
   * eventually (if it is on); after millions of rows, "eventually" is the next hour of serving.
   */
  maintain(kinds: readonly CsvKind[]): Promise<void>;
}

export const DEFAULT_IMPORT_BATCH_SIZE = 200_000;
export const ERROR_SAMPLES = 20;

// Temporary, and dropped at the end of each batch's transaction: nothing is left behind on a
// pooled connection, even when the batch fails.
const STAGING = 'prewarm_import_staging';
const SQL = {
  maintain: {
    logins: 'VACUUM (ANALYZE) logins, user_activity',
    interactions: 'VACUUM (ANALYZE) interactions',
  },
  logins: {
    createStaging: `CREATE TEMP TABLE ${STAGING} (user_id text NOT NULL, at timestamptz NOT NULL) ON COMMIT DROP`,
    copy: `COPY ${STAGING} (user_id, at) FROM STDIN (FORMAT csv)`,
  },
  interactions: {
    createStaging: `CREATE TEMP TABLE ${STAGING} (user_id text NOT NULL, item_id text NOT NULL, at timestamptz NOT NULL, weight real NOT NULL) ON COMMIT DROP`,
    copy: `COPY ${STAGING} (user_id, item_id, at, weight) FROM STDIN (FORMAT csv)`,
  },
} as const;

/** Bytes buffered before a write to the COPY stream: fewer, larger CopyData messages. */
const COPY_CHUNK_CHARS = 64 * 1024;

/**
 * Imports logins and interactions CSV files (the formats of README.md, "CSV formats"; plain or
 * gzip) with COPY. Malformed lines are reported and skipped; rows already present are skipped,
 * so importing a file again adds nothing. Logins and interactions also update user_activity
 * (activity, and who is a known user), from the rows that were actually new, in the same
 * transaction.
 */
export function createImporter(options: ImporterOptions): Importer {
  const { pool, log } = options;
  const batchSize = options.batchSize ?? DEFAULT_IMPORT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize <= 0) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `batchSize must be a positive integer, got ${batchSize}`);

  async function importFile<K extends CsvKind>(kind: K, path: string, fileOptions: ImportFileOptions = {}): Promise<ImportSummary> {
    const summary: ImportSummary = { file: path, kind, rowsRead: 0, rowsInserted: 0, duplicates: 0, errors: 0, errorSamples: [], ms: 0 };
    let bytesRead = 0;
    const onError = errorCounter(summary, fileOptions.onError);
    const batches = readCsvBatches(path, kind, {
      onError,
      onProgress: (bytes) => {
        bytesRead = bytes;
        fileOptions.onProgress?.({ bytesRead, rowsRead: summary.rowsRead, rowsInserted: summary.rowsInserted });
      },
    });
    return importFrom(kind, batches, summary, onError, () =>
      fileOptions.onProgress?.({ bytesRead, rowsRead: summary.rowsRead, rowsInserted: summary.rowsInserted }),
    );
  }

  /** The COPY pipeline, fed by a validated row source (a CSV file, or rows already in memory). */
  async function importFrom<K extends CsvKind>(
    kind: K,
    source: AsyncGenerator<CsvBatch<K>>,
    summary: ImportSummary,
    onError: (error: CsvRowError) => void,
    progress: () => void,
  ): Promise<ImportSummary> {
    const path = summary.file;
    const started = performance.now();
    const encode = (kind === 'logins' ? loginEncoder() : interactionEncoder()) as (row: CsvRow<K>) => string;
    const sql = SQL[kind];
    // The source's rows, one chunk at a time. A source that fails part-way (a truncated gzip)
    // has yielded every row before the failure: those are imported, then the failure is raised.
    let current: CsvBatch<K> = { rows: [], lines: [] };
    let position = 0;
    let exhausted = false;
    let sourceError: unknown;
    const refill = async (): Promise<boolean> => {
      while (position >= current.rows.length) {
        if (exhausted) return false;
        try {
          const next = await source.next();
          if (next.done) {
            exhausted = true;
            return false;
          }
          current = next.value;
          position = 0;
        } catch (error) {
          exhausted = true;
          sourceError = error;
          return false;
        }
      }
      return true;
    };
    /** A row Postgres refused: moved from the rows read to the errors, and reported. */
    const refuse = (line: number, error: unknown) => {
      summary.rowsRead -= 1;
      onError({ line, message: `refused by Postgres: ${sanitize((error as Error).message)}` });
    };
    // Two stages overlap: while batch N is inserted and committed on one connection, batch N+1
    // is parsed and copied into its own staging table on another. Batches still commit one at a
    // time, in file order: batch N+1's insert starts only after batch N has committed.
    let committing: Promise<void> | undefined;
    const commitBatch = async (client: PoolClient, batch: number, rowCount: number, batchStarted: number) => {
      let inserted: number;
      try {
        inserted = kind === 'logins' ? (await applyInsertedLogins(client, { table: STAGING })).inserted : await insertInteractions(client);
        await client.query('COMMIT');
      } catch (error) {
        client.release(error instanceof Error ? error : true);
        throw error;
      }
      client.release();
      summary.rowsInserted += inserted;
      progress();
      log.debug({ file: path, kind, batch, rows: rowCount, inserted, ms: Math.round(performance.now() - batchStarted) }, 'import batch committed');
    };
    let batch = 0;
    try {
      // The first rows are read outside any transaction: a missing file or a bad header fails
      // before anything touches the database.
      if (!(await refill()) && sourceError !== undefined) throw sourceError;
      while (position < current.rows.length || (await refill())) {
        batch += 1;
        const batchStarted = performance.now();
        // The batch's rows are kept until it commits: if Postgres refuses one of them, the batch
        // is copied again in halves to find it (see copyBisecting).
        const rows: CsvRow<K>[] = [];
        const lines: number[] = [];
        let client = await pool.connect();
        try {
          await client.query('BEGIN');
          await client.query(sql.createStaging);
          const copy = client.query(copyFrom(sql.copy));
          let copyError: Error | undefined;
          // Without a listener an error event would crash the process; it is handled below.
          copy.on('error', (error) => {
            copyError = error;
          });
          try {
            let chunk = '';
            while (rows.length < batchSize && (position < current.rows.length || (await refill()))) {
              const row = current.rows[position] as CsvRow<K>;
              rows.push(row);
              lines.push(current.lines[position] as number);
              position += 1;
              summary.rowsRead += 1;
              if (copyError) continue; // the rest of the batch is only gathered, for the retry
              chunk += encode(row);
              if (chunk.length >= COPY_CHUNK_CHARS) {
                if (!copy.write(chunk)) await drained(copy).catch((error: Error) => (copyError ??= error));
                chunk = '';
              }
            }
            if (!copyError) {
              copy.end(chunk);
              await finished(copy).catch((error: Error) => (copyError ??= error));
            }
          } catch (error) {
            // Sends CopyFail, so the server leaves COPY mode; the connection is discarded anyway.
            if (!copy.writableFinished) copy.destroy();
            throw error;
          }
          if (copyError) {
            if (!isDataError(copyError)) throw copyError;
            if (!copy.writableFinished) copy.destroy();
            // A value the reader accepted but Postgres did not: never lose the batch for it.
            client.release(copyError);
            client = await pool.connect();
            log.warn({ file: path, kind, batch, error: copyError.message }, 'Postgres refused a row of the batch: copying it again in parts to find it');
            await client.query('BEGIN');
            await client.query(sql.createStaging);
            await copyBisecting(client, sql.copy, rows.map(encode), 0, rows.length, (index, error) => refuse(lines[index] as number, error));
          }
          await committing;
        } catch (error) {
          // Closing the connection rolls this batch back, whatever state COPY left it in.
          client.release(error instanceof Error ? error : true);
          throw error;
        }
        committing = commitBatch(client, batch, rows.length, batchStarted);
        // Its failure is raised by the `await committing` above or below; until then it must not
        // count as unhandled.
        committing.catch(() => undefined);
      }
      await committing;
      if (sourceError !== undefined) throw sourceError;
    } catch (error) {
      // Never return while a batch is still being committed: the summary must be final.
      await committing?.catch(() => undefined);
      // A missing file or a bad header: nothing was read, readCsv's message says it all.
      if (batch === 0 && error instanceof PrewarmError) throw error;
      const message = (error as Error).message;
      const reason = message.startsWith(`${path}: `) ? message.slice(path.length + 2) : message;
      throw new PrewarmError(
        error instanceof PrewarmError ? error.code : 'PREWARM_ERR_IMPORT',
        `${path}: import stopped after ${summary.rowsInserted} new rows were committed: ${reason}`,
        { cause: error },
      );
    } finally {
      await source.return(undefined);
    }
    summary.duplicates = summary.rowsRead - summary.rowsInserted;
    summary.ms = Math.round(performance.now() - started);
    log.debug({ summary: { ...summary, errorSamples: undefined } }, 'import finished');
    return summary;
  }

  return {
    importLogins: (path, fileOptions) => importFile('logins', path, fileOptions),
    importInteractions: (path, fileOptions) => importFile('interactions', path, fileOptions),
    importRows: (kind, rows, label = `in-memory ${kind}`) => {
      const summary: ImportSummary = { file: label, kind, rowsRead: 0, rowsInserted: 0, duplicates: 0, errors: 0, errorSamples: [], ms: 0 };
      return importFrom(kind, inBatches(rows), summary, errorCounter(summary), () => undefined);
    },
    async maintain(kinds) {
      for (const kind of new Set(kinds)) await pool.query(SQL.maintain[kind]);
    },
  };
}

/** Counts an error in the summary (keeping the first ERROR_SAMPLES) and passes it on. */
function errorCounter(summary: ImportSummary, onError?: (error: CsvRowError) => void): (error: CsvRowError) => void {
  return (error) => {
    summary.errors += 1;
    if (summary.errorSamples.length < ERROR_SAMPLES) summary.errorSamples.push(error);
    onError?.(error);
  };
}

/** Rows in memory as the batches a file gives, each numbered by its position (1-based). */
async function* inBatches<K extends CsvKind>(rows: Iterable<CsvRow<K>>): AsyncGenerator<CsvBatch<K>> {
  let batch: CsvBatch<K> = { rows: [], lines: [] };
  let index = 0;
  for (const row of rows) {
    batch.rows.push(row);
    batch.lines.push(++index);
    if (batch.rows.length === 10_000) {
      yield batch;
      batch = { rows: [], lines: [] };
    }
  }
  if (batch.rows.length > 0) yield batch;
}

/**
 * Postgres refused a value (SQLSTATE class 22, data exception: a number or time out of range,
 * bad text) or a constraint (class 23): the row is at fault, not the connection or the server.
 */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23'));
}

/**
 * Copies encoded rows [from, to) into the staging table, each attempt under a savepoint. When
 * Postgres refuses the part, it is split in two and each half tried again, down to the single
 * rows at fault, which are passed to `refuse`; the others are copied. k bad rows among n cost
 * about 2·k·log2(n) COPY statements, and only when the reader's validation missed something.
 */
async function copyBisecting(
  client: PoolClient,
  copySql: string,
  encoded: readonly string[],
  from: number,
  to: number,
  refuse: (index: number, error: unknown) => void,
): Promise<void> {
  if (from >= to) return;
  await client.query('SAVEPOINT prewarm_import_part');
  try {
    const copy = client.query(copyFrom(copySql));
    const failed = new Promise<never>((_, reject) => copy.on('error', reject));
    failed.catch(() => undefined);
    for (let i = from; i < to; i += 1000) {
      if (!copy.write(encoded.slice(i, Math.min(i + 1000, to)).join(''))) await Promise.race([drained(copy), failed]);
    }
    copy.end();
    await Promise.race([finished(copy), failed]);
    await client.query('RELEASE SAVEPOINT prewarm_import_part');
  } catch (error) {
    if (!isDataError(error)) throw error;
    await client.query('ROLLBACK TO SAVEPOINT prewarm_import_part');
    await client.query('RELEASE SAVEPOINT prewarm_import_part');
    if (to - from === 1) {
      refuse(from, error);
      return;
    }
    const middle = (from + to) >>> 1;
    await copyBisecting(client, copySql, encoded, from, middle, refuse);
    await copyBisecting(client, copySql, encoded, middle, to, refuse);
  }
}

/** Inserts the batch's new interactions and marks their users known (user-activity.ts). */
function insertInteractions(client: PoolClient): Promise<number> {
  return applyInsertedInteractions(client, { table: STAGING });
}

/**
 * COPY's CSV format: every id is quoted (a doubled quote inside), so commas, quotes and
 * backslashes pass through unchanged, an empty string can never read as NULL and an id `\.`
 * can never read as the end-of-data marker. Ids hold no control characters (readCsv refuses
 * them), so no line break can occur inside a value.
 */
function quote(text: string): string {
  return `"${text.includes('"') ? text.replaceAll('"', '""') : text}"`;
}

/** Date → ISO text, remembering the last one: rows come sorted by time, in runs of equal times. */
function isoFormatter(): (at: Date) => string {
  let lastMs = Number.NaN;
  let lastText = '';
  return (at) => {
    const ms = at.getTime();
    if (ms !== lastMs) {
      lastMs = ms;
      lastText = at.toISOString();
    }
    return lastText;
  };
}

function loginEncoder(): (row: LoginRow) => string {
  const iso = isoFormatter();
  return (row) => `${quote(row.userId)},${iso(row.at)}\n`;
}

function interactionEncoder(): (row: InteractionRow) => string {
  const iso = isoFormatter();
  return (row) => `${quote(row.userId)},${quote(row.itemId)},${iso(row.at)},${row.weight}\n`;
}

/** Resolves when `stream` can take more; rejects if it fails or closes first. */
function drained(stream: Writable): Promise<void> {
  if (stream.destroyed) return Promise.reject(stream.errored ?? new Error('the COPY stream closed early'));
  return new Promise((resolve, reject) => {
    const settle = (error?: Error) => {
      stream.off('drain', onDrain);
      stream.off('error', onError);
      stream.off('close', onClose);
      if (error) reject(error);
      else resolve();
    };
    const onDrain = () => settle();
    const onError = (error: Error) => settle(error);
    const onClose = () => settle(stream.errored ?? new Error('the COPY stream closed early'));
    stream.on('drain', onDrain);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}
