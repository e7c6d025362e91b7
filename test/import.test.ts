import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { constants as zlibConstants, gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createImporter, type ImportSummary } from '../src/activity/import.ts';
import { recordLogins } from '../src/activity/user-activity.ts';
import type { CsvRowError } from '../src/activity/csv.ts';
import { isPrewarmError } from '../src/errors.ts';
import { createTestDb, silentLog, TEST_DATABASE_URL, type TestDb } from './helpers.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'import');
const LOGINS_GOOD = join(FIXTURES, 'logins-good.csv');
const LOGINS_BROKEN = join(FIXTURES, 'logins-broken.csv');
const LOGINS_BAD_HEADER = join(FIXTURES, 'logins-bad-header.csv');
const INTERACTIONS_BROKEN = join(FIXTURES, 'interactions-broken.csv');

// Ids with a comma, doubled quotes, a backslash and a `\.` line that COPY must not take for its
// end-of-data marker; one in-file duplicate; a timestamp with an offset.
const INTERACTIONS_GOOD = [
  'user_id,item_id,ts,weight',
  'alice,book-1,2013-02-01T00:00:00Z,1',
  'alice,"book, 2",2013-02-01T00:00:00Z,2.5',
  'bob,"the ""best"" film",2013-02-02T10:00:00+01:00,3',
  'alice,book-1,2013-02-01T00:00:00Z,7',
  'c\\d,\\.,2013-02-03T00:00:00Z,0.25',
].join('\n');

interface UserActivityRow {
  user_id: string;
  first_login_at: string;
  last_login_at: string;
  login_count: number;
}

async function userActivity(db: TestDb): Promise<UserActivityRow[]> {
  const { rows } = await db.pool.query<{ user_id: string; first_login_at: Date; last_login_at: Date; login_count: number }>(
    'SELECT user_id, first_login_at, last_login_at, login_count FROM user_activity ORDER BY user_id',
  );
  return rows.map((row) => ({
    user_id: row.user_id,
    first_login_at: row.first_login_at.toISOString(),
    last_login_at: row.last_login_at.toISOString(),
    login_count: row.login_count,
  }));
}

async function count(db: TestDb, table: 'logins' | 'interactions'): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return rows[0]!.n;
}

/** user_activity must be exactly what aggregating the logins table gives. */
async function expectActivityMatchesLogins(db: TestDb): Promise<void> {
  const { rows } = await db.pool.query<{ user_id: string; first_login_at: Date; last_login_at: Date; login_count: number }>(
    `SELECT user_id, min(at) AS first_login_at, max(at) AS last_login_at, count(*)::int AS login_count
     FROM logins GROUP BY user_id ORDER BY user_id`,
  );
  expect(await userActivity(db)).toEqual(
    rows.map((row) => ({
      user_id: row.user_id,
      first_login_at: row.first_login_at.toISOString(),
      last_login_at: row.last_login_at.toISOString(),
      login_count: row.login_count,
    })),
  );
}

function collect(): { errors: CsvRowError[]; onError: (error: CsvRowError) => void } {
  const errors: CsvRowError[] = [];
  return { errors, onError: (error) => errors.push(error) };
}

const withoutMs = ({ ms: _ms, ...rest }: ImportSummary) => rest;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'prewarm-import-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('import of good files', () => {
  let db: TestDb | undefined;
  afterEach(async () => db?.drop());

  it('imports logins and builds user_activity from them', async () => {
    db = await createTestDb();
    const importer = createImporter({ pool: db.pool, log: silentLog });
    const progress: number[] = [];
    const summary = await importer.importLogins(LOGINS_GOOD, { onProgress: (p) => progress.push(p.rowsInserted) });
    expect(withoutMs(summary)).toEqual({
      file: LOGINS_GOOD,
      kind: 'logins',
      rowsRead: 8,
      rowsInserted: 7,
      duplicates: 1,
      errors: 0,
      errorSamples: [],
    });
    expect(progress.at(-1)).toBe(7);
    expect(await count(db, 'logins')).toBe(7);
    expect(await userActivity(db)).toEqual([
      { user_id: '\\.', first_login_at: '2013-02-04T00:00:00.000Z', last_login_at: '2013-02-04T00:00:00.000Z', login_count: 1 },
      { user_id: 'alice', first_login_at: '2013-02-01T00:00:00.000Z', last_login_at: '2013-02-03T00:00:00.000Z', login_count: 2 },
      { user_id: 'back\\slash', first_login_at: '2013-02-05T00:00:00.000Z', last_login_at: '2013-02-05T00:00:00.000Z', login_count: 1 },
      { user_id: 'bob', first_login_at: '2013-02-01T08:30:00.000Z', last_login_at: '2013-02-01T08:30:00.000Z', login_count: 1 },
      { user_id: 'carol, jr.', first_login_at: '2013-02-02T10:00:00.000Z', last_login_at: '2013-02-02T10:00:00.000Z', login_count: 1 },
      { user_id: 'say "hi"', first_login_at: '2013-02-04T10:00:00.250Z', last_login_at: '2013-02-04T10:00:00.250Z', login_count: 1 },
    ]);
  });

  it('imports a gzip interactions file, ids with commas, quotes and backslashes intact', async () => {
    db = await createTestDb();
    const path = join(dir, 'interactions-good.csv.gz');
    await writeFile(path, gzipSync(INTERACTIONS_GOOD));
    const importer = createImporter({ pool: db.pool, log: silentLog });
    const summary = await importer.importInteractions(path);
    expect(withoutMs(summary)).toEqual({ file: path, kind: 'interactions', rowsRead: 5, rowsInserted: 4, duplicates: 1, errors: 0, errorSamples: [] });
    const { rows } = await db.pool.query<{ user_id: string; item_id: string; at: Date; weight: number }>(
      'SELECT user_id, item_id, at, weight FROM interactions ORDER BY user_id, item_id',
    );
    expect(rows.map((row) => [row.user_id, row.item_id, row.at.toISOString(), row.weight])).toEqual([
      ['alice', 'book, 2', '2013-02-01T00:00:00.000Z', 2.5],
      // The first copy of a repeated (user, time, item) wins.
      ['alice', 'book-1', '2013-02-01T00:00:00.000Z', 1],
      ['bob', 'the "best" film', '2013-02-02T09:00:00.000Z', 3],
      ['c\\d', '\\.', '2013-02-03T00:00:00.000Z', 0.25],
    ]);
  });

  it('imports rows already in memory through the same COPY path, idempotently', async () => {
    db = await createTestDb();
    const importer = createImporter({ pool: db.pool, log: silentLog, batchSize: 2 });
    const rows = [
      { userId: 'm1', at: new Date('2024-01-01T10:00:00Z') },
      { userId: 'm1', at: new Date('2024-01-03T10:00:00Z') },
      { userId: 'm"2,x', at: new Date('2024-01-02T10:00:00Z') },
    ];
    expect(await importer.importRows('logins', rows)).toMatchObject({ rowsRead: 3, rowsInserted: 3, duplicates: 0 });
    expect(await importer.importRows('logins', rows)).toMatchObject({ rowsRead: 3, rowsInserted: 0, duplicates: 3 });
    const activity = await db.pool.query(`SELECT user_id, login_count, first_login_at, last_login_at FROM user_activity ORDER BY user_id`);
    expect(activity.rows).toEqual([
      { user_id: 'm"2,x', login_count: 1, first_login_at: new Date('2024-01-02T10:00:00Z'), last_login_at: new Date('2024-01-02T10:00:00Z') },
      { user_id: 'm1', login_count: 2, first_login_at: new Date('2024-01-01T10:00:00Z'), last_login_at: new Date('2024-01-03T10:00:00Z') },
    ]);
  });

  it('adds nothing when the same files are imported again', async () => {
    db = await createTestDb();
    const gz = join(dir, 'interactions-again.csv.gz');
    await writeFile(gz, gzipSync(INTERACTIONS_GOOD));
    const importer = createImporter({ pool: db.pool, log: silentLog });
    await importer.importLogins(LOGINS_GOOD);
    await importer.importInteractions(gz);
    const activityBefore = await userActivity(db);

    const logins = await importer.importLogins(LOGINS_GOOD);
    const interactions = await importer.importInteractions(gz);
    expect([logins.rowsRead, logins.rowsInserted, logins.duplicates]).toEqual([8, 0, 8]);
    expect([interactions.rowsRead, interactions.rowsInserted, interactions.duplicates]).toEqual([5, 0, 5]);
    expect(await count(db, 'logins')).toBe(7);
    expect(await count(db, 'interactions')).toBe(4);
    expect(await userActivity(db)).toEqual(activityBefore);
  });

  it('gives the same tables in many small batches as in one, duplicates across batches included', async () => {
    db = await createTestDb();
    // Batches of 2: the repeated alice login (line 6) lands in a later batch than its first copy.
    const importer = createImporter({ pool: db.pool, log: silentLog, batchSize: 2 });
    const summary = await importer.importLogins(LOGINS_GOOD);
    expect([summary.rowsRead, summary.rowsInserted, summary.duplicates]).toEqual([8, 7, 1]);
    expect(await count(db, 'logins')).toBe(7);
    expect((await userActivity(db)).find((row) => row.user_id === 'alice')).toEqual({
      user_id: 'alice',
      first_login_at: '2013-02-01T00:00:00.000Z',
      last_login_at: '2013-02-03T00:00:00.000Z',
      login_count: 2,
    });
    await expectActivityMatchesLogins(db);
  });

  it('streams a larger gzip file in batches and keeps user_activity equal to the logins', async () => {
    db = await createTestDb();
    const lines = ['user_id,ts'];
    for (let i = 0; i < 5000; i += 1) {
      const day = String(1 + (i % 28)).padStart(2, '0');
      lines.push(`user-${i % 97},2013-03-${day}T${String(i % 24).padStart(2, '0')}:00:00Z`);
    }
    const path = join(dir, 'many.csv.gz');
    await writeFile(path, gzipSync(lines.join('\n')));
    const importer = createImporter({ pool: db.pool, log: silentLog, batchSize: 700 });
    const first = await importer.importLogins(path);
    const distinct = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM logins');
    expect(first.rowsRead).toBe(5000);
    expect(first.rowsInserted).toBe(distinct.rows[0]!.n);
    expect(first.duplicates).toBe(5000 - first.rowsInserted);
    await expectActivityMatchesLogins(db);
    const second = await importer.importLogins(path);
    expect(second.rowsInserted).toBe(0);
    await expectActivityMatchesLogins(db);
  });
});

describe('import of broken files', () => {
  let db: TestDb | undefined;
  afterEach(async () => db?.drop());

  it('reports each malformed interactions line with its number, skips it and keeps the valid rows', async () => {
    db = await createTestDb();
    const importer = createImporter({ pool: db.pool, log: silentLog });
    const { errors, onError } = collect();
    const summary = await importer.importInteractions(INTERACTIONS_BROKEN, { onError });
    expect(errors.map((error) => error.line)).toEqual([3, 4, 5, 6, 7, 9, 10, 11]);
    expect(errors.map((error) => error.message)).toEqual([
      expect.stringContaining('ts "2013-02-30T00:00:00Z" is not an ISO 8601 timestamp'),
      'user_id is empty',
      'expected 4 columns (user_id,item_id,ts,weight), found 3',
      'weight "0" is not a positive number',
      'user_id contains control characters',
      expect.stringContaining('ts "yesterday" is not an ISO 8601 timestamp'),
      expect.stringMatching(/^malformed CSV: Invalid Opening Quote/),
      'weight "-1" is not a positive number',
    ]);
    expect(withoutMs(summary)).toEqual({
      file: INTERACTIONS_BROKEN,
      kind: 'interactions',
      rowsRead: 3,
      rowsInserted: 3,
      duplicates: 0,
      errors: 8,
      errorSamples: errors,
    });
    const { rows } = await db.pool.query<{ user_id: string; item_id: string }>('SELECT user_id, item_id FROM interactions ORDER BY user_id');
    expect(rows).toEqual([
      { user_id: 'u1', item_id: 'i1' },
      { user_id: 'u4, the second', item_id: 'i3' },
      { user_id: 'u7', item_id: 'i1' },
    ]);
  });

  it('keeps the valid logins of a broken file, with user_activity from them only', async () => {
    db = await createTestDb();
    const importer = createImporter({ pool: db.pool, log: silentLog });
    const { errors, onError } = collect();
    const summary = await importer.importLogins(LOGINS_BROKEN, { onError });
    expect(errors.map((error) => error.line)).toEqual([3, 4, 5, 6]);
    expect([summary.rowsRead, summary.rowsInserted, summary.errors]).toEqual([2, 2, 4]);
    expect(await userActivity(db)).toEqual([
      { user_id: 'u1', first_login_at: '2013-02-01T00:00:00.000Z', last_login_at: '2013-02-02T00:00:00.000Z', login_count: 2 },
    ]);
    // Again: nothing new, the same errors.
    const again = await importer.importLogins(LOGINS_BROKEN);
    expect([again.rowsInserted, again.errors]).toEqual([0, 4]);
    expect((await userActivity(db))[0]!.login_count).toBe(2);
  });

  it('refuses a file with the wrong header before writing anything', async () => {
    db = await createTestDb();
    const importer = createImporter({ pool: db.pool, log: silentLog });
    const failure = await importer.importLogins(LOGINS_BAD_HEADER).catch((error: unknown) => error);
    expect(isPrewarmError(failure, 'PREWARM_ERR_IMPORT')).toBe(true);
    expect((failure as Error).message).toContain('expected header "user_id,ts"');
    // The interactions header is not a logins header either.
    const swapped = await importer.importLogins(INTERACTIONS_BROKEN).catch((error: unknown) => error);
    expect(isPrewarmError(swapped, 'PREWARM_ERR_IMPORT')).toBe(true);
    expect(await count(db, 'logins')).toBe(0);
  });

  it('fails with PREWARM_ERR_IMPORT on a missing file', async () => {
    db = await createTestDb();
    const importer = createImporter({ pool: db.pool, log: silentLog });
    const failure = await importer.importInteractions(join(dir, 'no-such-file.csv')).catch((error: unknown) => error);
    expect(isPrewarmError(failure, 'PREWARM_ERR_IMPORT')).toBe(true);
    expect((failure as Error).message).toMatch(/no-such-file\.csv.*ENOENT/);
  });

  it('keeps every complete row before a truncated gzip ends, reports the cut line and the truncation; a re-run adds the rest', async () => {
    db = await createTestDb();
    const lines = ['user_id,ts'];
    // Random-looking ids so that gzip cannot shrink the file to nothing.
    for (let i = 0; i < 20_000; i += 1) lines.push(`user-${(i * 7919) % 1013}-${i % 7},2013-04-01T00:${String(i % 60).padStart(2, '0')}:${String(Math.floor(i / 60) % 60).padStart(2, '0')}Z`);
    const whole = gzipSync(lines.join('\n'));
    const truncated = whole.subarray(0, Math.floor(whole.length * 0.6));
    const truncatedPath = join(dir, 'truncated.csv.gz');
    const wholePath = join(dir, 'whole.csv.gz');
    await writeFile(truncatedPath, truncated);
    await writeFile(wholePath, whole);
    // What the truncated file still holds: its complete lines, then part of one.
    const readable = gunzipSync(truncated, { finishFlush: zlibConstants.Z_SYNC_FLUSH }).toString();
    const completeRows = readable.split('\n').length - 2;

    const importer = createImporter({ pool: db.pool, log: silentLog, batchSize: 1000 });
    const { errors, onError } = collect();
    const failure = await importer.importLogins(truncatedPath, { onError }).catch((error: unknown) => error);
    expect(isPrewarmError(failure, 'PREWARM_ERR_IMPORT')).toBe(true);
    expect((failure as Error).message).toMatch(/truncated\.csv\.gz: import stopped after \d+ new rows were committed: unexpected end of file/);
    const kept = await count(db, 'logins');
    expect(completeRows).toBeGreaterThan(1000);
    expect(kept).toBe(completeRows);
    expect((failure as Error).message).toContain(`after ${kept} new rows`);
    expect(errors).toEqual([{ line: completeRows + 2, message: expect.stringContaining('the file ends in the middle of this line') }]);
    await expectActivityMatchesLogins(db);

    const rest = await importer.importLogins(wholePath);
    expect(rest.rowsInserted).toBe(20_000 - kept);
    expect(await count(db, 'logins')).toBe(20_000);
    await expectActivityMatchesLogins(db);
  });
});

describe('recordLogins (the API flush)', () => {
  let db: TestDb | undefined;
  afterEach(async () => db?.drop());

  it('inserts new logins only and folds exactly those into user_activity', async () => {
    db = await createTestDb();
    const at = (iso: string) => new Date(iso);
    expect(await recordLogins(db.pool, [])).toEqual({ inserted: 0, users: 0 });
    const first = await recordLogins(db.pool, [
      { userId: 'u1', at: at('2024-01-02T00:00:00Z') },
      { userId: 'u1', at: at('2024-01-02T00:00:00Z') },
      { userId: 'u2', at: at('2024-01-01T00:00:00Z') },
    ]);
    expect(first).toEqual({ inserted: 2, users: 2 });
    const second = await recordLogins(db.pool, [
      { userId: 'u1', at: at('2024-01-02T00:00:00Z') },
      { userId: 'u1', at: at('2023-12-31T00:00:00Z') },
      { userId: 'u1', at: at('2024-01-05T00:00:00Z') },
    ]);
    expect(second).toEqual({ inserted: 2, users: 1 });
    expect(await userActivity(db)).toEqual([
      { user_id: 'u1', first_login_at: '2023-12-31T00:00:00.000Z', last_login_at: '2024-01-05T00:00:00.000Z', login_count: 3 },
      { user_id: 'u2', first_login_at: '2024-01-01T00:00:00.000Z', last_login_at: '2024-01-01T00:00:00.000Z', login_count: 1 },
    ]);
  });

  it('counts every login once when concurrent flushes overlap', async () => {
    db = await createTestDb();
    const pool = db.pool;
    const base = Date.parse('2024-01-01T00:00:00Z');
    // Six concurrent flushes sharing most of their logins, half of them in reverse order.
    const flushes = Array.from({ length: 6 }, (_, f) => {
      const rows = Array.from({ length: 4000 }, (_, i) => ({ userId: `u${(i + f * 7) % 300}`, at: new Date(base + ((i + f * 50) % 4000) * 60_000) }));
      return f % 2 === 0 ? rows : rows.reverse();
    });
    const results = await Promise.all(flushes.map((rows) => recordLogins(pool, rows)));
    const total = await count(db, 'logins');
    expect(results.reduce((sum, result) => sum + result.inserted, 0)).toBe(total);
    await expectActivityMatchesLogins(db);
  });
});

describe('prewarm import (CLI)', () => {
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

  it('prints a summary per file, each malformed line on stderr, and exits 3 when rows were skipped', async () => {
    db = await createTestDb();
    const result = await cli(['--logins', LOGINS_GOOD, '--interactions', INTERACTIONS_BROKEN], db.schema);
    expect(result.code).toBe(3);
    expect(result.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^logins ${LOGINS_GOOD}: 8 rows read, 7 inserted, 1 duplicates \\(already present\\), 0 malformed rows skipped \\(`)),
      expect.stringMatching(
        new RegExp(`^interactions ${INTERACTIONS_BROKEN}: 3 rows read, 3 inserted, 0 duplicates \\(already present\\), 8 malformed rows skipped \\(`),
      ),
    ]);
    const stderrLines = result.stderr.trim().split('\n');
    expect(stderrLines).toHaveLength(8);
    expect(stderrLines[0]).toBe(`${INTERACTIONS_BROKEN}:3: ts "2013-02-30T00:00:00Z" is not an ISO 8601 timestamp with a zone (e.g. 2004-04-15T05:56:01Z)`);
    expect(stderrLines[1]).toBe(`${INTERACTIONS_BROKEN}:4: user_id is empty`);
    expect(await count(db, 'logins')).toBe(7);
    expect(await count(db, 'interactions')).toBe(3);
    // The loaded tables were vacuumed and analyzed (the visibility map is what index-only reads
    // need). Asked of the statistics, not of the visibility map itself: how much a VACUUM can mark
    // visible depends on the oldest snapshot of any session on the server, such as the other test
    // files running beside this one.
    const maintained = await db.pool.query<{ relname: string; vacuumed: boolean; analyzed: boolean }>(
      // logins is partitioned (migration 0008): its partitions are what VACUUM and ANALYZE visit.
      `SELECT t.relname, bool_and(s.last_vacuum IS NOT NULL) AS vacuumed, bool_and(s.last_analyze IS NOT NULL) AS analyzed
         FROM pg_class t
         CROSS JOIN LATERAL (SELECT t.oid AS relid UNION SELECT relid FROM pg_partition_tree(t.oid)) p
         JOIN pg_class c ON c.oid = p.relid AND c.relkind = 'r'
         JOIN pg_stat_user_tables s ON s.relid = c.oid
        WHERE t.relnamespace = $1::regnamespace AND t.relname IN ('logins', 'user_activity', 'interactions')
        GROUP BY t.relname ORDER BY t.relname`,
      [db.schema],
    );
    expect(maintained.rows).toEqual(['interactions', 'logins', 'user_activity'].map((relname) => ({ relname, vacuumed: true, analyzed: true })));

    const again = await cli(['--logins', LOGINS_GOOD, '--json'], db.schema);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual([expect.objectContaining({ kind: 'logins', rowsRead: 8, rowsInserted: 0, duplicates: 8, errors: 0 })]);
  });

  it('caps the malformed lines it prints', async () => {
    db = await createTestDb();
    const path = join(dir, 'many-bad.csv');
    await writeFile(path, ['user_id,ts', ...Array.from({ length: 60 }, (_, i) => `u${i},never`), 'ok,2013-02-01T00:00:00Z'].join('\n'));
    const result = await cli(['--logins', path], db.schema);
    expect(result.code).toBe(3);
    const stderrLines = result.stderr.trim().split('\n');
    expect(stderrLines).toHaveLength(51);
    expect(stderrLines[49]).toMatch(new RegExp(`^${path}:51: ts "never"`));
    expect(stderrLines[50]).toBe(`${path}: … and 10 more malformed lines`);
    expect(result.stdout).toContain('1 rows read, 1 inserted, 0 duplicates (already present), 60 malformed rows skipped');
  });

  it('exits 2 with one line on stderr for a missing file or no file, and 1 for a bad header', async () => {
    db = await createTestDb();
    const missing = await cli(['--logins', LOGINS_GOOD, '--interactions', join(dir, 'nope.csv.gz')], db.schema);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(`prewarm: PREWARM_ERR_BAD_INPUT: --interactions ${join(dir, 'nope.csv.gz')}: no such file\n`);
    // Checked before anything is imported.
    expect(await count(db, 'logins')).toBe(0);

    const nothing = await cli([], db.schema);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toContain('nothing to import');

    const badHeader = await cli(['--logins', LOGINS_BAD_HEADER], db.schema);
    expect(badHeader.code).toBe(1);
    expect(badHeader.stderr).toMatch(/^prewarm: PREWARM_ERR_IMPORT: .*expected header "user_id,ts"/);
    expect(badHeader.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('documents the exit status in --help', async () => {
    const { stdout } = await run('node', ['src/cli/bin.mjs', 'import', '--help']);
    expect(stdout).toContain('0  every file was imported and every line was valid');
    expect(stdout).toContain('3  every file was imported, but malformed lines were skipped');
    expect(stdout).toContain('1  an import failed');
    expect(stdout).toContain('2  bad usage');
  });
});
