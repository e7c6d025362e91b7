// src/serving/time-ordered-id.ts: UUID version 7, ordered by the millisecond it was made in, accepted by Postgres.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { timeOrderedId } from '../src/serving/time-ordered-id.ts';
import { createTestDb, type TestDb } from './helpers.ts';

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('timeOrderedId', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await createTestDb({ migrate: false });
  });
  afterAll(() => db.drop());

  it('is a version-7 UUID carrying its millisecond, random after it', () => {
    const at = Date.parse('2026-12-04T19:00:00.123Z');
    const ids = Array.from({ length: 1_000 }, () => timeOrderedId(at));
    for (const id of ids) {
      expect(id).toMatch(V7);
      expect(parseInt(id.slice(0, 8) + id.slice(9, 13), 16)).toBe(at);
    }
    expect(new Set(ids).size).toBe(ids.length);
    expect(timeOrderedId()).toMatch(V7);
  });

  it('sorts by the millisecond it was made in, as text and as a Postgres uuid', async () => {
    const made = [0, 1, 255, 256, 4_095, 1_700_000_000_000, 1_700_000_000_001, 2 ** 48 - 1].map((ms) => timeOrderedId(ms));
    expect([...made].sort()).toEqual(made);
    const { rows } = await db.pool.query<{ id: string }>('SELECT id FROM unnest($1::uuid[]) AS t(id) ORDER BY id', [made.slice().reverse()]);
    expect(rows.map((row) => row.id)).toEqual(made);
  });
});
