import { stat } from 'node:fs/promises';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { createImporter, DEFAULT_IMPORT_BATCH_SIZE, type ImportFileOptions, type ImportSummary } from '../../activity/import.ts';
import type { CsvKind } from '../../activity/csv.ts';
import { PrewarmError } from '../../errors.ts';
import { action, createCliContext, openPool } from '../runtime.ts';

interface ImportFlags {
  logins?: string;
  interactions?: string;
  batchSize?: string;
  json?: boolean;
}

/** Malformed lines printed per file; the rest are only counted. */
const MAX_PRINTED_ERRORS = 50;

/** Exit code when every file was imported but some lines were skipped (see HELP_AFTER). */
export const EXIT_SKIPPED_LINES = 3;

const HELP_AFTER = `
File formats (README.md, "CSV formats"; \`prewarm generate\` writes examples):
  logins        header "user_id,ts"; one row per login (session start),
                e.g. u0662,2024-01-01T00:00:15Z
  interactions  header "user_id,item_id,ts,weight"; one row per user–item interaction,
                e.g. u0662,i226,2024-01-01T00:00:17Z,5

- CSV with RFC 4180 quoting, UTF-8 (a byte-order mark at the start is ignored), LF or CRLF;
  one row per line (no field may hold a line break). Plain or gzip (detected from the content,
  not the name). The header line is required, with exactly these names in this order; a file
  without it is refused.
- ts: ISO 8601 date and time with seconds and a zone, e.g. 2004-04-15T05:56:01Z or
  2004-04-15T07:56:01+02:00 (a fraction of a second is kept to the millisecond), in the years
  0001-9999 (UTC). A date alone, a missing zone or an impossible date (2013-02-30) is a
  malformed line.
- user_id, item_id: 1 to 128 characters, no control characters, taken as written (not trimmed).
- weight: a positive decimal number that a 4-byte real holds (1.4e-45 to 3.4e38).
- Rows need not be sorted. A login is identified by (user_id, ts), an interaction by
  (user_id, ts, item_id): a repeated one is stored once.

A malformed line (bad timestamp, empty or unprintable id, wrong column count, bad CSV quoting,
a quote left open, invalid UTF-8, a line over 64 KiB, non-positive or out-of-range weight) is
printed on stderr as FILE:LINE: message (the first ${MAX_PRINTED_ERRORS} per file; values escaped and
cut short) and skipped; the valid lines are imported. Rows already in the database are skipped,
so importing a file again adds nothing. Each batch of rows is one transaction: an interrupted
import keeps the batches it committed, and running it again adds the rest. Tables that received
rows are then vacuumed and analyzed (fresh planner statistics; index-only history reads).

Exit status:
  0  every file was imported and every line was valid
  3  every file was imported, but malformed lines were skipped (printed on stderr, counted in
     the summary)
  1  an import failed: a file refused whole (missing or wrong header, empty, binary, UTF-16,
     compressed other than with gzip), a truncated or corrupt gzip file (the rows before the
     cut are imported and the message says how many: import the complete file to add the rest),
     or a database error; files after it are not imported
  2  bad usage, such as a missing file: nothing is imported`;

export function registerImport(program: Command): void {
  program
    .command('import')
    .description('load logins and interactions from CSV files (plain or gzip) into Postgres; re-importing adds nothing')
    .option('--logins <file>', 'logins CSV: user_id,ts')
    .option('--interactions <file>', 'interactions CSV: user_id,item_id,ts,weight')
    .option('--batch-size <rows>', 'rows per transaction', String(DEFAULT_IMPORT_BATCH_SIZE))
    .option('--json', 'print the summaries as one JSON array on stdout instead of text lines')
    .addHelpText('after', HELP_AFTER)
    .action(
      action(async (flags: ImportFlags) => {
        const files: { kind: CsvKind; path: string }[] = [];
        if (flags.logins !== undefined) files.push({ kind: 'logins', path: flags.logins });
        if (flags.interactions !== undefined) files.push({ kind: 'interactions', path: flags.interactions });
        if (files.length === 0) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', 'nothing to import: give --logins FILE and/or --interactions FILE');
        const batchSize = Number(flags.batchSize);
        if (!Number.isSafeInteger(batchSize) || batchSize <= 0) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--batch-size must be a positive integer, not "${flags.batchSize}"`);
        // Every file is checked before any is imported, so a typo in the second does not leave
        // the first half-done.
        const sizes = new Map<string, number>();
        for (const { kind, path } of files) sizes.set(path, await fileSize(kind, path));

        const context = createCliContext();
        const pool = openPool(context, 'prewarm-import');
        const summaries: ImportSummary[] = [];
        try {
          const importer = createImporter({ pool, log: context.log, batchSize });
          for (const { kind, path } of files) {
            const summary = await withFeedback(path, sizes.get(path) ?? 0, kind, (options) =>
              kind === 'logins' ? importer.importLogins(path, options) : importer.importInteractions(path, options),
            );
            summaries.push(summary);
            if (!flags.json) process.stdout.write(`${summaryLine(summary)}\n`);
          }
          const filled = summaries.filter((summary) => summary.rowsInserted > 0).map((summary) => summary.kind);
          await importer.maintain(filled);
        } finally {
          await pool.end();
        }
        if (flags.json) process.stdout.write(`${JSON.stringify(summaries)}\n`);
        if (summaries.some((summary) => summary.errors > 0)) process.exitCode = EXIT_SKIPPED_LINES;
      }),
    );
}

async function fileSize(kind: CsvKind, path: string): Promise<number> {
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--${kind} ${path}: not a regular file`);
    return info.size;
  } catch (error) {
    if (error instanceof PrewarmError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new PrewarmError('PREWARM_ERR_BAD_INPUT', `--${kind} ${path}: ${reason}`, { cause: error });
  }
}

/**
 * Runs one file's import with its malformed lines on stderr and, when stderr is a terminal, a
 * progress bar (bytes of the file read, rows per second). Off a terminal nothing but the lines.
 */
async function withFeedback(
  path: string,
  size: number,
  kind: CsvKind,
  run: (options: ImportFileOptions) => Promise<ImportSummary>,
): Promise<ImportSummary> {
  const started = Date.now();
  const totalMb = (size / 1e6).toFixed(1);
  const bars = process.stderr.isTTY
    ? new cliProgress.MultiBar(
        {
          // At most 80 columns. Line wrapping and the cursor are left alone: cli-progress would
          // turn them off, and after Ctrl-C nothing would turn them back on.
          format: `${kind.padEnd(12)} {bar} {percentage}% {mb}/${totalMb} MB {rows} rows {rate}/s ETA {eta_formatted}`,
          barsize: 15,
          linewrap: true,
          hideCursor: false,
          etaBuffer: 50,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  const bar = bars?.create(Math.max(size, 1), 0, { mb: '0.0', rows: 0, rate: 0 });
  let printed = 0;
  let errors = 0;
  const say = (text: string) => (bars ? bars.log(`${text}\n`) : process.stderr.write(`${text}\n`));
  try {
    const summary = await run({
      onError: (error) => {
        errors += 1;
        if (printed >= MAX_PRINTED_ERRORS) return;
        printed += 1;
        say(`${path}:${error.line}: ${error.message}`);
      },
      onProgress: ({ bytesRead, rowsRead }) => {
        const seconds = Math.max((Date.now() - started) / 1000, 0.001);
        bar?.update(bytesRead, { mb: (bytesRead / 1e6).toFixed(1), rows: rowsRead, rate: Math.round(rowsRead / seconds) });
      },
    });
    bar?.update(Math.max(size, 1));
    if (summary.rowsRead === 0 && summary.errors === 0) say(`${path}: no rows after the header (nothing to import)`);
    return summary;
  } finally {
    // A redraw first: stop() alone drops lines still waiting in the bar's log buffer.
    bars?.update();
    bars?.stop();
    if (errors > printed) process.stderr.write(`${path}: … and ${errors - printed} more malformed lines\n`);
  }
}

export function summaryLine(summary: ImportSummary): string {
  const rate = summary.ms > 0 ? Math.round((summary.rowsRead * 1000) / summary.ms) : 0;
  return (
    `${summary.kind} ${summary.file}: ${summary.rowsRead} rows read, ${summary.rowsInserted} inserted, ` +
    `${summary.duplicates} duplicates (already present), ${summary.errors} malformed rows skipped ` +
    `(${(summary.ms / 1000).toFixed(1)} s, ${rate} rows/s)`
  );
}
