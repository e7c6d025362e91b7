import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readCsv, type CsvRowError, type InteractionRow, type LoginRow } from '../src/activity/csv.ts';
import { createImporter } from '../src/activity/import.ts';
import { isPrewarmError } from '../src/errors.ts';
import { createTestDb, silentLog, TEST_DATABASE_URL, type TestDb } from './helpers.ts';

// Issue 12: bad input is refused, nothing valid is lost.

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'prewarm-bad-input-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let fileNumber = 0;
async function file(content: string | Buffer, name = `f${++fileNumber}.csv`): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

async function read<K extends 'logins' | 'interactions'>(path: string, kind: K): Promise<{ rows: (K extends 'logins' ? LoginRow : InteractionRow)[]; errors: CsvRowError[] }> {
  const errors: CsvRowError[] = [];
  const rows = [];
  for await (const row of readCsv(path, kind, { onError: (error) => errors.push(error) })) rows.push(row);
  return { rows: rows as (K extends 'logins' ? LoginRow : InteractionRow)[], errors };
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  const thrown = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(thrown).toBeInstanceOf(Error);
  return thrown as Error;
}

/** No raw control, format or replacement character may reach a terminal through a message. */
// eslint-disable-next-line no-control-regex
const RAW_UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\ufffd\u202a-\u202e\u2066-\u2069]/u;

const loginLines = (count: number, from = 0) =>
  Array.from({ length: count }, (_, i) => `u${from + i},2013-02-01T${String(Math.floor((from + i) / 3600) % 24).padStart(2, '0')}:${String(Math.floor((from + i) / 60) % 60).padStart(2, '0')}:${String((from + i) % 60).padStart(2, '0')}Z`);

describe('reading a partly broken file', () => {
  it('an unterminated quote is one bad line: the lines after it are read', async () => {
    // Line 6 opens a quote that never closes; csv-parse used to read the rest of the file into
    // that one field (9,994 of 10,000 valid rows lost, the error reported at the last line).
    const lines = ['user_id,ts', ...loginLines(4), 'u"nclosed,"2013-02-01T00:00:00Z', ...loginLines(9_995, 4)];
    const { rows, errors } = await read(await file(lines.join('\n')), 'logins');
    expect(errors).toEqual([{ line: 6, message: expect.stringMatching(/^malformed CSV: /) }]);
    expect(rows).toHaveLength(9_999);
    const quoteAtStart = ['user_id,ts', '"u1,2013-02-01T00:00:00Z', 'u2,2013-02-01T00:00:00Z'].join('\n');
    const second = await read(await file(quoteAtStart), 'logins');
    expect(second.errors).toEqual([{ line: 2, message: expect.stringContaining('Unterminated Quote') }]);
    expect(second.rows.map((row) => row.userId)).toEqual(['u2']);
  });

  it('refuses values Postgres would refuse, each on its own line, before anything is written', async () => {
    const lines = [
      'user_id,item_id,ts,weight',
      'u1,i1,2013-02-01T00:00:00Z,1e40',
      'u1,i1,2013-02-01T00:00:01Z,1e-50',
      'u1,i1,0000-06-01T00:00:00Z,1',
      'u1,i1,0001-01-01T00:30:00+01:00,1',
      'u1,i1,9999-12-31T23:00:00-05:00,1',
      'u1,i1,2013-02-01T00:00:02Z,0x10',
      'u1,i1,2013-02-01T00:00:03Z,3.4028234e38',
      'u1,i1,2013-02-01T00:00:04Z,1e-45',
      'u1,i1,0001-01-01T00:00:00Z,2.5',
    ];
    const { rows, errors } = await read(await file(lines.join('\n')), 'interactions');
    expect(errors).toEqual([
      { line: 2, message: 'weight "1e40" is too large for a 4-byte real (at most 3.4028235e38)' },
      { line: 3, message: 'weight "1e-50" is too small for a 4-byte real (it would be 0; at least 1.4e-45)' },
      { line: 4, message: 'ts "0000-06-01T00:00:00Z" is outside the years 0001–9999 (in UTC) that can be stored' },
      { line: 5, message: expect.stringContaining('outside the years 0001–9999') },
      { line: 6, message: expect.stringContaining('outside the years 0001–9999') },
      { line: 7, message: 'weight "0x10" is not a positive number' },
    ]);
    expect(rows.map((row) => row.weight)).toEqual([3.4028234e38, 1e-45, 2.5]);
  });

  it('refuses invalid UTF-8 line by line, naming the line, instead of merging ids into U+FFFD', async () => {
    const content = Buffer.concat([
      Buffer.from('user_id,ts\nok,2013-02-01T00:00:00Z\n'),
      Buffer.from([0x75, 0xff]), // "u" + a byte that is never UTF-8
      Buffer.from(',2013-02-01T00:00:00Z\n'),
      Buffer.from([0x75, 0xfe]), // a different id that used to read as the same "u\uFFFD"
      Buffer.from(',2013-02-01T00:00:00Z\n'),
      Buffer.from([0x75, 0xc3]), // a sequence cut short
      Buffer.from(',2013-02-01T00:00:00Z\nr\u00e9sum\u00e9,2013-02-01T00:00:00Z\n'),
    ]);
    const { rows, errors } = await read(await file(content), 'logins');
    expect(rows.map((row) => row.userId)).toEqual(['ok', 'résumé']);
    expect(errors.map((error) => error.line)).toEqual([3, 4, 5]);
    expect(errors[0]!.message).toBe('not valid UTF-8 (byte 0xff at byte 2 of the line): "u\\xff,2013-02-01T00:00:00Z"');
    for (const error of errors) expect(error.message).not.toMatch(RAW_UNSAFE);
  });

  it('a line longer than 64 KiB is one bad line, read in bounded memory, and the file goes on', async () => {
    // 256 MB on one line, gzipped to a few hundred KB: it used to be held whole (and a 1.2 GB
    // one took the process to 1.5 GB and killed it).
    const hugeLine = Buffer.alloc(256 * 1024 * 1024, 'x');
    const content = Buffer.concat([Buffer.from('user_id,ts\nu1,2013-02-01T00:00:00Z\n'), hugeLine, Buffer.from(',2013-02-01T00:00:00Z\nu2,2013-02-01T00:00:00Z\n')]);
    const path = await file(gzipSync(content, { level: 1 }), 'huge.csv.gz');
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      const { rows, errors } = await read(path, 'logins');
      expect(rows.map((row) => row.userId)).toEqual(['u1', 'u2']);
      expect(errors).toEqual([{ line: 3, message: expect.stringMatching(/^line is longer than 65536 bytes \(268435477 bytes, starting "x{40}…"\): skipped$/) }]);
    } finally {
      clearInterval(sampler);
    }
    expect(peak - before).toBeLessThan(128 * 1024 * 1024);
  }, 60_000);

  it('escapes what it echoes: a binary file, terminal escape sequences, invisible characters', async () => {
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x1b, 0x5b, 0x32, 0x4a]);
    const binary = await failure(read(await file(png, 'image.csv'), 'logins'));
    expect(isPrewarmError(binary, 'PREWARM_ERR_IMPORT')).toBe(true);
    expect(binary.message).toContain('line 1: expected header "user_id,ts", but the line is not valid UTF-8');
    expect(binary.message).toContain('"\\x89PNG"');
    expect(binary.message).not.toMatch(RAW_UNSAFE);

    const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0x00, 0x1b]), Buffer.from('[31mred\n')]);
    const elfError = await failure(read(await file(elf), 'logins'));
    expect(elfError.message).toContain('"\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x1b[31mred"');
    expect(elfError.message).toContain('binary data');
    expect(elfError.message).not.toMatch(RAW_UNSAFE);

    const rows = ['user_id,ts', 'u1,\u001b[2J2013-02-01T00:00:00Z', 'u2,2013\u202e-02-01', `u3,${'9'.repeat(500)}`, 'u4,2013-02-01T00:00:00Z'];
    const { errors } = await read(await file(rows.join('\n')), 'logins');
    expect(errors.map((error) => error.message)).toEqual([
      'ts "\\x1b[2J2013-02-01T00:00:00Z" is not an ISO 8601 timestamp with a zone (e.g. 2004-04-15T05:56:01Z)',
      'ts "2013\\u{202e}-02-01" is not an ISO 8601 timestamp with a zone (e.g. 2004-04-15T05:56:01Z)',
      `ts "${'9'.repeat(40)}…" is not an ISO 8601 timestamp with a zone (e.g. 2004-04-15T05:56:01Z)`,
    ]);
  });
});

describe('encodings, line ends and empty files', () => {
  it('reads CRLF files and a leading byte-order mark; refuses a mark in the middle (joined files)', async () => {
    const crlf = await read(await file(`\ufeffuser_id,ts\r\n${loginLines(3).join('\r\n')}\r\n`), 'logins');
    expect(crlf).toEqual({ rows: loginLines(3).map((line) => ({ userId: line.split(',')[0], at: new Date(line.split(',')[1]!) })), errors: [] });

    const joined = await read(await file(`user_id,ts\n${loginLines(1).join('\n')}\n\ufeffuser_id,ts\n\ufeffu9,2013-02-01T00:00:00Z\n"\ufeffu8",2013-02-01T00:00:00Z\n`), 'logins');
    expect(joined.rows.map((row) => row.userId)).toEqual(['u0', '\ufeffu8']);
    expect(joined.errors).toEqual([
      { line: 3, message: 'starts with a byte-order mark (U+FEFF): files joined together? skipped' },
      { line: 4, message: 'starts with a byte-order mark (U+FEFF): files joined together? skipped' },
    ]);
  });

  it('refuses whole files it cannot read as UTF-8 CSV, each with the reason', async () => {
    const cases: [string | Buffer, RegExp][] = [
      ['', /the file is empty \(expected header "user_id,ts"\)/],
      ['\n\r\n\n', /the file is empty/],
      [Buffer.from('\ufeffuser_id,ts\nu1,2013-02-01T00:00:00Z\n', 'utf16le'), /line 1: .*UTF-16 text .*save it as UTF-8/],
      ['user_id,ts\ru1,2013-02-01T00:00:00Z\r', /bare CR: save the file with LF or CRLF line ends/],
      [Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0x00]), /the file is a zip archive; import reads plain or gzip CSV only/],
      [Buffer.from('BZh91AY&SY'), /bzip2-compressed/],
      [gzipSync(Buffer.alloc(0)), /the file is empty/],
    ];
    for (const [content, message] of cases) {
      const error = await failure(read(await file(content), 'logins'));
      expect(isPrewarmError(error, 'PREWARM_ERR_IMPORT')).toBe(true);
      expect(error.message).toMatch(message);
      expect(error.message).not.toMatch(RAW_UNSAFE);
    }
  });

  it('reads a header-only file as no rows', async () => {
    expect(await read(await file('user_id,ts\n'), 'logins')).toEqual({ rows: [], errors: [] });
  });
});

describe('importing a partly broken file', () => {
  let db: TestDb | undefined;
  afterEach(async () => db?.drop());

  it('one value Postgres refuses no longer aborts the batch: only that row is reported', async () => {
    // Rows in memory skip the reader's validation (a replay feeds them so): Postgres is the last
    // line of defence, and the batch is bisected down to the rows it refuses.
    db = await createTestDb();
    const importer = createImporter({ pool: db.pool, log: silentLog, batchSize: 1000 });
    const at = (i: number) => new Date(Date.UTC(2013, 1, 1, 0, 0, i));
    const rows: InteractionRow[] = Array.from({ length: 2500 }, (_, i) => ({ userId: `u${i % 50}`, itemId: `i${i}`, at: at(i), weight: 1 }));
    rows[10] = { ...rows[10]!, weight: 1e40 };
    rows[11] = { ...rows[11]!, weight: 1e-50 };
    rows[1999] = { ...rows[1999]!, at: new Date(Date.parse('0000-06-01T00:00:00Z')) };
    const summary = await importer.importRows('interactions', rows, 'in-memory');
    expect(summary.errorSamples.map((error) => error.line)).toEqual([11, 12, 2000]);
    expect(summary.errorSamples[0]!.message).toMatch(/^refused by Postgres: .*out of range for type real/);
    expect(summary.errorSamples[2]!.message).toMatch(/^refused by Postgres: .*out of range/);
    expect(summary).toMatchObject({ rowsRead: 2497, rowsInserted: 2497, errors: 3 });
    const { rows: counted } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM interactions');
    expect(counted[0]!.n).toBe(2497);
  });

  it('keeps the valid rows around bad ones in the same batch, from a file', async () => {
    db = await createTestDb();
    const lines = ['user_id,item_id,ts,weight', 'u1,i1,2013-02-01T00:00:00Z,1', 'u1,i2,2013-02-01T00:00:00Z,1e40', 'u1,i3,0000-01-01T00:00:00Z,1', 'u1,"i4,2013-02-01T00:00:00Z,1', 'u1,i5,2013-02-01T00:00:00Z,2'];
    const importer = createImporter({ pool: db.pool, log: silentLog });
    const summary = await importer.importInteractions(await file(lines.join('\n')));
    expect(summary).toMatchObject({ rowsRead: 2, rowsInserted: 2, errors: 3 });
    expect(summary.errorSamples.map((error) => error.line)).toEqual([3, 4, 5]);
  });
});

describe('prewarm import exit codes', () => {
  const run = promisify(execFile);
  let db: TestDb | undefined;
  afterEach(async () => db?.drop());
  const cli = (args: string[], schema: string) =>
    run('node', ['src/cli/bin.mjs', 'import', ...args], {
      env: { ...process.env, DATABASE_URL: TEST_DATABASE_URL, PREWARM_DB_SCHEMA: schema, PREWARM_LOG_LEVEL: 'silent' },
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
    );
  const count = async (table: string) => (await db!.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;

  it('0 for a clean file, 3 when lines were skipped (the unterminated quote), 1 for a file refused whole or truncated', async () => {
    db = await createTestDb();
    const clean = await file(['user_id,ts', ...loginLines(5)].join('\n'));
    expect((await cli(['--logins', clean], db.schema)).code).toBe(0);

    const broken = await file(['user_id,ts', 'ux,"2013-02-01T00:00:00Z', ...loginLines(1000, 100)].join('\n'));
    const skipped = await cli(['--logins', broken], db.schema);
    expect(skipped.code).toBe(3);
    expect(skipped.stderr).toBe(`${broken}:2: malformed CSV: Unterminated Quote: quoted field 2 is not closed on its line\n`);
    expect(skipped.stdout).toContain('1000 rows read, 1000 inserted, 0 duplicates (already present), 1 malformed rows skipped');
    expect(await count('logins')).toBe(1005);

    const headerOnly = await file('user_id,ts\n');
    const nothing = await cli(['--logins', headerOnly], db.schema);
    expect(nothing.code).toBe(0);
    expect(nothing.stderr).toBe(`${headerOnly}: no rows after the header (nothing to import)\n`);

    const binary = await file(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x1b, 0x5b, 0x32, 0x4a, 0x0a]));
    const refused = await cli(['--logins', binary], db.schema);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr.trimEnd()).not.toMatch(RAW_UNSAFE);

    const whole = gzipSync(['user_id,ts', ...loginLines(20_000, 2000)].join('\n'));
    const truncated = await file(whole.subarray(0, Math.floor(whole.length / 2)), 'cut.csv.gz');
    const cut = await cli(['--logins', truncated], db.schema);
    expect(cut.code).toBe(1);
    expect(cut.stderr).toMatch(/cut\.csv\.gz: import stopped after \d+ new rows were committed: unexpected end of file: the gzip data is truncated\n$/);
    const kept = Number(/after (\d+) new rows/.exec(cut.stderr)![1]);
    expect(kept).toBeGreaterThan(0);
    expect(await count('logins')).toBe(1005 + kept);
  });
});
