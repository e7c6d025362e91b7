import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createImporter } from '../src/activity/import.ts';
import { knownUsersBefore, onlyKnownUsers, recordLogins } from '../src/activity/user-activity.ts';
import { createRecencyScorer } from '../src/propensity/recency-scorer.ts';
import { createTestDb, silentLog, type TestDb } from './helpers.ts';
import { createScriptedRecommender } from './support/scripted-recommender.ts';
import { createServingHarness } from './support/serving-harness.ts';

// Issue 12: "Every unknown id asked for becomes a known user forever: a --policy all run spent
// 87.6% of its sets on ids seen only as unknown-user requests." A user is known — a planning
// candidate — from their first interaction, first imported login, or first API login that was
// not answered unknown_user (README, "Known users").

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'prewarm-known-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const at = (iso: string) => new Date(iso);

async function knownSince(db: TestDb): Promise<Record<string, string | null>> {
  const { rows } = await db.pool.query<{ user_id: string; known_since: Date | null }>('SELECT user_id, known_since FROM user_activity ORDER BY user_id');
  return Object.fromEntries(rows.map((row) => [row.user_id, row.known_since?.toISOString() ?? null]));
}

describe('known users', () => {
  let db: TestDb | undefined;
  afterEach(async () => db?.drop());

  it('an id only ever asked for through the API is recorded but never a planning candidate', async () => {
    db = await createTestDb();
    const importer = createImporter({ pool: db.pool, log: silentLog });
    // alice: imported logins. bob: API logins, then an interaction imported later. carol: an
    // interaction imported before her first (API) login. ghost: API logins only, each answered
    // unknown_user (vouched: false, as the service records them). eve: an API login answered
    // with a set (the recommender knew her from data prewarm does not hold).
    const logins = join(dir, 'logins.csv');
    await writeFile(logins, 'user_id,ts\nalice,2024-01-02T00:00:00Z\nalice,2024-01-05T00:00:00Z\n');
    await importer.importLogins(logins);
    await recordLogins(db.pool, [
      { userId: 'bob', at: at('2024-01-01T00:00:00Z'), vouched: false },
      { userId: 'ghost', at: at('2024-01-01T00:00:00Z'), vouched: false },
      { userId: 'ghost', at: at('2024-01-03T00:00:00Z'), vouched: false },
      { userId: 'alice', at: at('2024-01-01T00:00:00Z'), vouched: false },
      { userId: 'eve', at: at('2024-01-04T00:00:00Z') },
    ]);
    const interactions = join(dir, 'interactions.csv');
    await writeFile(interactions, 'user_id,item_id,ts,weight\nbob,i1,2024-01-04T00:00:00Z,1\nbob,i2,2024-01-03T00:00:00Z,1\ncarol,i1,2024-01-02T12:00:00Z,1\n');
    await importer.importInteractions(interactions);
    await recordLogins(db.pool, [{ userId: 'carol', at: at('2024-01-06T00:00:00Z') }]);

    expect(await knownSince(db)).toEqual({
      // Her imported logins; an API login earlier than them does not move it.
      alice: '2024-01-02T00:00:00.000Z',
      bob: '2024-01-03T00:00:00.000Z',
      carol: '2024-01-02T12:00:00.000Z',
      eve: '2024-01-04T00:00:00.000Z',
      ghost: null,
    });
    // Re-importing changes nothing.
    await importer.importInteractions(interactions);
    await importer.importLogins(logins);
    expect((await knownSince(db)).alice).toBe('2024-01-02T00:00:00.000Z');

    // ghost still has activity (login counts are kept), but is no candidate.
    const { rows } = await db.pool.query<{ login_count: number }>(`SELECT login_count::int FROM user_activity WHERE user_id = 'ghost'`);
    expect(rows[0]!.login_count).toBe(2);
    const windowStart = at('2024-01-10T00:00:00Z');
    const known = await knownUsersBefore(db.pool, windowStart);
    expect([...known].sort()).toEqual(['alice', 'bob', 'carol', 'eve']);
    // Known "before" the window: a replay planning an earlier window sees only who was known then.
    expect([...(await knownUsersBefore(db.pool, at('2024-01-02T06:00:00Z')))]).toEqual(['alice']);

    // The planner's scorer never offers ghost as a candidate.
    const candidates = await createRecencyScorer({ pool: db.pool }).scoreKnownUsers(windowStart, 86_400_000);
    expect(candidates.map((c) => c.userId).sort()).toEqual(['alice', 'bob', 'carol', 'eve']);
    expect(onlyKnownUsers(candidates, known)).toEqual(candidates);
  });

  it('in-memory interactions (a replay feeding its log) make their users known too', async () => {
    db = await createTestDb();
    await recordLogins(db.pool, [{ userId: 'dave', at: at('2024-01-01T00:00:00Z'), vouched: false }]);
    expect(await knownSince(db)).toEqual({ dave: null });
    const importer = createImporter({ pool: db.pool, log: silentLog });
    await importer.importRows('interactions', [{ userId: 'dave', itemId: 'i1', at: at('2024-01-02T00:00:00Z'), weight: 1 }]);
    expect(await knownSince(db)).toEqual({ dave: '2024-01-02T00:00:00.000Z' });
  });

  it('the login path vouches for a user it answers with a set, not for an id answered unknown_user, and a replay vouches for every login', async () => {
    const { recommender } = createScriptedRecommender({ fran: ['f1', 'f2'] });
    const h = await createServingHarness(recommender);
    try {
      expect((await h.service.getRecommendations('fran', 2)).source).toBe('on_demand');
      expect((await h.service.getRecommendations('nobody', 2)).reason).toBe('unknown_user');
      expect((await h.service.getRecommendations('logged', 2, { fromLog: true })).reason).toBe('unknown_user');
      await h.recorder.flush();
      const { rows } = await h.db.pool.query<{ user_id: string; login_count: number; known: boolean }>(
        'SELECT user_id, login_count::int, known_since IS NOT NULL AS known FROM user_activity ORDER BY user_id',
      );
      expect(rows).toEqual([
        { user_id: 'fran', login_count: 1, known: true },
        { user_id: 'logged', login_count: 1, known: true },
        { user_id: 'nobody', login_count: 1, known: false },
      ]);
    } finally {
      await h.close();
    }
  });
});
