// Property tests against real Postgres: the binary COPY encoder reads back what it wrote, and
// the event recorder never counts a serve twice however its flushes fail and are retried.
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordLogins } from '../src/activity/user-activity.ts';
import { BinaryCopyWriter, copyIn } from '../src/db/copy-binary.ts';
import type { Pool, PoolClient } from '../src/db/pool.ts';
import { fillServeCounts } from '../src/maintenance/rollups.ts';
import { createEventRecorder, type ServeEvent } from '../src/serving/event-recorder.ts';
import type { RecommendationSet } from '../src/sets/set.ts';
import { createRecommendationStore } from '../src/sets/store.ts';
import { createTestDb, silentLog, type TestDb } from './helpers.ts';

// Text Postgres can hold: well-formed Unicode without NUL, with the strings arrays must quote.
/** No unpaired surrogate half (String#isWellFormed is ES2024, above this project's lib). */
const isWellFormed = (text: string): boolean => !/\p{Surrogate}/u.test(text);

const pgTextAny = (maxLength: number) =>
  fc
    .oneof(
      fc.string({ unit: 'binary', maxLength }),
      fc.string({ unit: 'grapheme', maxLength }),
      fc.constantFrom('', 'NULL', 'null', '"', '\\', '{}', '{a,b}', ' ', 'a,b', "'", '\t\n\r', 'x'.repeat(65), 'é'.repeat(70)),
    )
    .filter((text) => text.length <= maxLength * 4 && isWellFormed(text) && !text.includes('\u0000'));

describe('binary COPY encoder, round trip through Postgres', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await createTestDb({ migrate: false });
    await db.pool.query(`CREATE TABLE copy_round_trip (
      run text, n int, t text, i4 int4, i8 int8, b bool, f real, ts timestamptz, u uuid, ta text[], fa real[], maybe text)`);
  });
  afterAll(() => db?.drop());

  const row = fc.record({
    t: pgTextAny(80),
    i4: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
    i8: fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
    b: fc.boolean(),
    f: fc.float(),
    ts: fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true }),
    u: fc.uuid(),
    ta: fc.array(pgTextAny(20), { maxLength: 8 }),
    fa: fc.array(fc.float(), { maxLength: 8 }),
    maybe: fc.option(pgTextAny(10), { nil: null }),
  });

  it('reads back every value it wrote', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(row, { maxLength: 12 }), async (rows) => {
        const run = randomUUID();
        const writer = new BinaryCopyWriter(64);
        rows.forEach((r, n) => {
          writer.row(12).text(run).int4(n).text(r.t).int4(r.i4).int8(r.i8).bool(r.b).float4(r.f).timestamptz(r.ts).uuid(r.u).textArray(r.ta).float4Array(r.fa);
          if (r.maybe === null) writer.null();
          else writer.text(r.maybe);
        });
        const client = await db.pool.connect();
        try {
          await copyIn(client, 'COPY copy_round_trip FROM STDIN (FORMAT binary)', writer.finish());
        } finally {
          client.release();
        }
        const { rows: back } = await db.pool.query(`SELECT t, i4, i8::text AS i8, b, f::float8 AS f, ts, u::text AS u, ta, fa::float8[] AS fa, maybe FROM copy_round_trip WHERE run = $1 ORDER BY n`, [run]);
        expect(back).toHaveLength(rows.length);
        rows.forEach((r, n) => {
          const got = back[n];
          expect(got.t).toBe(r.t);
          expect(got.i4).toBe(r.i4);
          expect(got.i8).toBe(String(r.i8));
          expect(got.b).toBe(r.b);
          expect(Object.is(got.f, Math.fround(r.f))).toBe(true);
          expect((got.ts as Date).getTime()).toBe(r.ts.getTime());
          expect(got.u).toBe(r.u.toLowerCase());
          expect(got.ta).toEqual(r.ta);
          expect((got.fa as number[]).map((x) => (Object.is(x, -0) ? -0 : x))).toEqual(r.fa.map((x) => Math.fround(x)));
          expect(got.maybe).toBe(r.maybe);
        });
      }),
      { numRuns: 60 },
    );
  });
});

describe('binary COPY encoder, uuids', () => {
  it('takes the canonical form and 32 bare hex digits, in either case, and refuses anything else', () => {
    const bytes = (value: string) => {
      const writer = new BinaryCopyWriter(64);
      writer.row(1).uuid(value);
      return writer.finish().subarray(19 + 2 + 4, 19 + 2 + 4 + 16).toString('hex');
    };
    expect(bytes('0189ABCD-ef01-7234-8567-89abcdef0123')).toBe('0189abcdef017234856789abcdef0123');
    expect(bytes('0189abcdef017234856789abcdef0123')).toBe('0189abcdef017234856789abcdef0123');
    for (const bad of ['', '0189abcd-ef01-7234-8567-89abcdef012', '0189abcd-ef01-7234-8567-89abcdef01234', '0189abcd-ef01-7234-8567-89abcdef012g', '{0189abcd-ef01-7234-8567-89abcdef0123}', '0189abcd--ef01-7234-8567-89abcdef0123', 'é189abcd-ef01-7234-8567-89abcdef0123']) {
      expect(() => new BinaryCopyWriter(64).uuid(bad), bad).toThrow(/not a uuid/);
    }
  });
});

type FlushFault = 'none' | 'before-commit' | 'after-commit';

/** A pool whose next transactions fail as told: the COMMIT refused, or applied but its answer lost. */
function faultyPool(pool: Pool, faults: FlushFault[]): Pool {
  const wrapClient = (client: PoolClient): PoolClient =>
    new Proxy(client, {
      get(target, key, receiver) {
        if (key === 'query') {
          // Not async: a COPY passes a stream through query() and gets it back.
          return (...args: unknown[]) => {
            const query = target.query as (...a: unknown[]) => unknown;
            if (args[0] !== 'COMMIT') return query.apply(target, args);
            const fault = faults.shift() ?? 'none';
            if (fault === 'before-commit') return Promise.reject(new Error('connection lost before commit'));
            return (query.apply(target, args) as Promise<unknown>).then((result) => {
              if (fault === 'after-commit') throw new Error('connection lost after commit (it committed)');
              return result;
            });
          };
        }
        const value = Reflect.get(target, key, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  return new Proxy(pool, {
    get(target, key, receiver) {
      if (key === 'connect') return async () => wrapClient(await target.connect());
      const value = Reflect.get(target, key, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('event recorder: a retried flush never counts a serve twice', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await createTestDb();
  });
  afterAll(() => db?.drop());

  const step = fc.oneof(
    fc.record({ kind: fc.constant('serve' as const), set: fc.integer({ min: 0, max: 2 }), minute: fc.integer({ min: 0, max: 59 }) }),
    fc.record({ kind: fc.constant('flush' as const), fault: fc.constantFrom<FlushFault>('none', 'before-commit', 'after-commit') }),
  );

  it('serve counts and first-served times equal the distinct serves, whatever failed', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 25 }), async (steps) => {
        const faults: FlushFault[] = [];
        const pool = faultyPool(db.pool, faults);
        const store = createRecommendationStore({ pool });
        const recorder = createEventRecorder({ pool, store, recordLogins, log: silentLog, flushIntervalMs: 3_600_000, maxBatch: 1_000_000 });
        const tag = randomUUID().slice(0, 8);
        const base = Date.parse('2024-03-01T00:00:00Z');
        const sets: RecommendationSet[] = [0, 1, 2].map((i) => ({
          id: randomUUID(),
          userId: `${tag}-u${i}`,
          source: 'on_demand',
          runId: null,
          holdout: false,
          computedAt: new Date(base),
          expiresAt: new Date(base + 86_400_000),
          itemIds: ['a'],
          scores: [1],
          modelVersion: 'v',
          computeMs: 1,
        }));
        for (const set of sets) recorder.addSet(set);
        const served: ServeEvent[] = [];
        try {
          for (const s of steps) {
            if (s.kind === 'serve') {
              const set = sets[s.set] as RecommendationSet;
              const serve: ServeEvent = {
                id: randomUUID(),
                userId: set.userId,
                at: new Date(base + s.minute * 60_000),
                source: 'reused',
                recommendationId: set.id,
                stalenessMs: 0,
                latencyMs: 1,
                reason: null,
              };
              served.push(serve);
              recorder.addLogin({ userId: set.userId, at: serve.at });
              recorder.addServe(serve);
            } else {
              faults.push(s.fault);
              const hadEvents = recorder.pending() > 0;
              const failed = await recorder.flush().then(() => false, () => true);
              // The fault did happen: the recorder saw a failed flush and kept the batch.
              expect(failed).toBe(hadEvents && s.fault !== 'none');
              if (failed) expect(recorder.pending()).toBeGreaterThan(0);
              faults.length = 0;
            }
          }
          await recorder.close(10_000); // no faults left: everything is written
        } finally {
          await recorder.close(10_000).catch(() => undefined);
        }
        await fillServeCounts(db.pool, new Date(base + 86_400_000));
        const { rows } = await db.pool.query<{ id: string; serve_count: number; first_served_at: Date | null }>(
          'SELECT id, serve_count, first_served_at FROM recommendations WHERE id = ANY($1::uuid[])',
          [sets.map((set) => set.id)],
        );
        expect(rows).toHaveLength(3);
        for (const row of rows) {
          const mine = served.filter((serve) => serve.recommendationId === row.id);
          expect(row.serve_count).toBe(mine.length);
          expect(row.first_served_at?.getTime() ?? null).toBe(mine.length === 0 ? null : Math.min(...mine.map((serve) => serve.at.getTime())));
        }
        const { rows: serveRows } = await db.pool.query('SELECT count(*)::int AS n FROM serves WHERE user_id LIKE $1', [`${tag}-%`]);
        expect(serveRows[0].n).toBe(served.length);
        // Logins too: one row per (user, instant), the activity count in step with the rows.
        const { rows: activity } = await db.pool.query<{ user_id: string; login_count: number; rows: number }>(
          `SELECT a.user_id, a.login_count, (SELECT count(*)::int FROM logins l WHERE l.user_id = a.user_id) AS rows
             FROM user_activity a WHERE a.user_id LIKE $1`,
          [`${tag}-%`],
        );
        for (const row of activity) {
          const distinct = new Set(served.filter((serve) => serve.userId === row.user_id).map((serve) => serve.at.getTime())).size;
          expect(row.rows).toBe(distinct);
          expect(row.login_count).toBe(distinct);
        }
      }),
      { numRuns: 25 },
    );
  });
});
