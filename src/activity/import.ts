import { performance } from 'node:perf_hooks';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import type { Pool, PoolClient } from '../db/pool.ts';
import { PrewarmError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { readCsv, type CsvKind, type CsvRow, type CsvRowError, type InteractionRow, type LoginRow } from './csv.ts';
import { applyInsertedLogins } from './user-activity.ts';

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
  /** Every malformed line, in line order; the line is skipped and the import goes on. */
  onError?: (error: CsvRowError) => void;
  /** Called as the file is read and after each committed batch. */
  onProgress?: (progress: ImportProgress) => void;
}

export interface ImportSummary {
  file: string;
  kind: CsvKind;
  /** Valid data rows in the file; `rowsRead + errors` is every non-empty line after the header. */
  rowsRead: number;
  /** Rows that were new to the table. */
  rowsInserted: number;
  /** Valid rows not inserted: already in the table, or repeated earlier in the same file. */
  duplicates: number;
  /** Malformed lines skipped. */
  errors: number;
  /** The first ERROR_SAMPLES malformed lines. */
  errorSamples: CsvRowError[];
  ms: number;
}

export interface Importer {
  importLogins(path: string, options?: ImportFileOptions): Promise<ImportSummary>;
  importInteractions(path: string, options?: ImportFileOptions): Promise<ImportSummary>;
  /** The same COPY path for rows already validated and in memory (a replay feeding its log). */
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
    // Sorted like the primary key so its index is filled in order; DO NOTHING also drops a row
    // repeated within the batch (it conflicts with its first copy, inserted by this statement).
    insert: `INSERT INTO interactions (user_id, item_id, at, weight)
      SELECT user_id, item_id, at, weight FROM ${STAGING} ORDER BY user_id, at, item_id
      ON CONFLICT DO NOTHING`,
  },
} as const;

/** Bytes buffered before a write to the COPY stream: fewer, larger CopyData messages. */
const COPY_CHUNK_CHARS = 64 * 1024;

/**
 * Imports logins and interactions CSV files (the formats of README.md, "CSV formats"; plain or
 * gzip) with COPY. Malformed lines are reported and skipped; rows already present are skipped,
 * so importing a file again adds nothing. Logins also update user_activity, from the rows that
 * were actually new, in the same transaction.
 */
export function createImporter(options: ImporterOptions): Importer {
  const { pool, log } = options;
  const batchSize = options.batchSize ?? DEFAULT_IMPORT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize <= 0) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `batchSize must be a positive integer, got ${batchSize}`);

  async function importFile<K extends CsvKind>(kind: K, path: string, fileOptions: ImportFileOptions = {}): Promise<ImportSummary> {
    const summary: ImportSummary = { file: path, kind, rowsRead: 0, rowsInserted: 0, duplicates: 0, errors: 0, errorSamples: [], ms: 0 };
    let bytesRead = 0;
    const rows = readCsv(path, kind, {
      onError: (error) => {
        summary.errors += 1;
        if (summary.errorSamples.length < ERROR_SAMPLES) summary.errorSamples.push(error);
        fileOptions.onError?.(error);
      },
      onProgress: (bytes) => {
        bytesRead = bytes;
        fileOptions.onProgress?.({ bytesRead, rowsRead: summary.rowsRead, rowsInserted: summary.rowsInserted });
      },
    });
    return importFrom(kind, rows, summary, () => fileOptions.onProgress?.({ bytesRead, rowsRead: summary.rowsRead, rowsInserted: summary.rowsInserted }));
  }

  /** The COPY pipeline, fed by a validated row source (a CSV file, or rows already in memory). */
  async function importFrom<K extends CsvKind>(kind: K, rows: AsyncGenerator<CsvRow<K>>, summary: ImportSummary, progress: () => void): Promise<ImportSummary> {
    const path = summary.file;
    const started = performance.now();
    const encode = (kind === 'logins' ? loginEncoder() : interactionEncoder()) as (row: CsvRow<K>) => string;
    const sql = SQL[kind];
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
      // The first row is read outside any transaction: a missing file or a bad header fails
      // before anything touches the database.
      let next = await rows.next();
      while (!next.done) {
        batch += 1;
        const batchStarted = performance.now();
        const client = await pool.connect();
        let rowCount = 0;
        try {
          await client.query('BEGIN');
          await client.query(sql.createStaging);
          const copy = client.query(copyFrom(sql.copy));
          let copyError: Error | undefined;
          // Without a listener an error event would crash the process; it is rethrown below.
          copy.on('error', (error) => {
            copyError = error;
          });
          try {
            let chunk = '';
            while (!next.done && rowCount < batchSize) {
              chunk += encode(next.value);
              rowCount += 1;
              summary.rowsRead += 1;
              if (chunk.length >= COPY_CHUNK_CHARS) {
                if (copyError) throw copyError;
                if (!copy.write(chunk)) await drained(copy);
                chunk = '';
              }
              next = await rows.next();
            }
            copy.end(chunk);
            await finished(copy);
          } catch (error) {
            // Sends CopyFail, so the server leaves COPY mode; the connection is discarded anyway.
            if (!copy.writableFinished) copy.destroy();
            throw error;
          }
          await committing;
        } catch (error) {
          // Closing the connection rolls this batch back, whatever state COPY left it in.
          client.release(error instanceof Error ? error : true);
          throw error;
        }
        committing = commitBatch(client, batch, rowCount, batchStarted);
        // Its failure is raised by the `await committing` above or below; until then it must not
        // count as unhandled.
        committing.catch(() => undefined);
      }
      await committing;
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
      await rows.return(undefined);
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
      const source = (async function* () {
        yield* rows;
      })();
      return importFrom(kind, source, summary, () => undefined);
    },
    async maintain(kinds) {
      for (const kind of new Set(kinds)) await pool.query(SQL.maintain[kind]);
    },
  };
}

async function insertInteractions(client: PoolClient): Promise<number> {
  const result = await client.query(SQL.interactions.insert);
  return result.rowCount ?? 0;
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
