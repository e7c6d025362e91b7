// src/db/array-literal.ts: what Postgres reads back from the literals is what was written, for
// any text (quotes, backslashes, braces, commas, spaces, the word NULL, any Unicode) and number.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { booleanArrayLiteral, numberArrayLiteral, textArrayLiteral } from '../src/db/array-literal.ts';
import { createTestDb, type TestDb } from './helpers.ts';

// Postgres text cannot hold NUL; every other code point can.
const text = fc.string({ unit: 'grapheme', maxLength: 16 }).filter((s) => !s.includes('\u0000'));
const tricky = fc.constantFrom('NULL', 'null', '', ' ', '"', '\\', '\\"', '{', '}', ',', 'a,b', '{"x"}', ' lead', 'trail ', 'é', '😀');

describe('array literals', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await createTestDb({ migrate: false });
  });
  afterAll(() => db.drop());

  it('texts and nulls come back as written', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.option(fc.oneof(text, tricky), { nil: null }), { maxLength: 20 }), async (values) => {
        const { rows } = await db.pool.query<{ a: (string | null)[] }>('SELECT $1::text[] AS a', [textArrayLiteral(values)]);
        expect(rows[0]!.a).toEqual(values);
      }),
      { seed: 20261204, numRuns: 300 },
    );
  });

  it('numbers come back as written: float8 exactly, bigint and integer as integers', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.option(fc.double({ noNaN: true, noDefaultInfinity: true }), { nil: null }), { maxLength: 20 }),
        fc.array(fc.option(fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 }), { nil: null }), { maxLength: 20 }),
        async (doubles, integers) => {
          const { rows } = await db.pool.query<{ d: (number | null)[]; i: (string | null)[] }>('SELECT $1::float8[] AS d, $2::bigint[] AS i', [
            numberArrayLiteral(doubles),
            numberArrayLiteral(integers),
          ]);
          // -0 reads back as 0 through node-postgres' float parsing; equal as numbers.
          expect(rows[0]!.d.map((v) => (v === null ? null : v + 0))).toEqual(doubles.map((v) => (v === null ? null : v + 0)));
          expect(rows[0]!.i.map((v) => (v === null ? null : Number(v)))).toEqual(integers);
        },
      ),
      { seed: 20261204, numRuns: 300 },
    );
  });

  it('booleans; and refuses a number Postgres would misread', async () => {
    const { rows } = await db.pool.query<{ b: (boolean | null)[] }>('SELECT $1::bool[] AS b', [booleanArrayLiteral([true, false, null])]);
    expect(rows[0]!.b).toEqual([true, false, null]);
    expect(() => numberArrayLiteral([1, Number.NaN])).toThrow(RangeError);
    expect(() => numberArrayLiteral([Number.POSITIVE_INFINITY])).toThrow(RangeError);
    expect(textArrayLiteral([])).toBe('{}');
  });
});
