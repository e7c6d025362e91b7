// The replay with its interactions fed through the interactions API (src/replay/interaction-feed.ts):
// the same decisions as importing them, every serve's missed interactions exact against the log,
// and refreshing behind sets at login (PREWARM_REFRESH_BEHIND=login) leaves almost none served.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quoteIdent } from '../src/db/migrate.ts';
import { parsePolicy } from '../src/planner/policy.ts';
import type { PolicyRun, ReplayData, ReplayOptions } from '../src/replay/replay.ts';
import { createReplayTestBed, TEST_DATABASE_URL, generatedReplayData } from './helpers.ts';

const DAY_MS = 86_400_000;
const START = new Date('2024-01-01T00:00:00Z');
const HISTORY_DAYS = 28;
const from = new Date(START.getTime() + HISTORY_DAYS * DAY_MS);
const to = new Date(from.getTime() + 4 * DAY_MS);

const generated = () => generatedReplayData({ seed: 7, users: 300, days: HISTORY_DAYS + 4, start: START });

describe('replay with interactions fed through the API', () => {
  let data: ReplayData;
  const admin = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 1 });
  const bed = createReplayTestBed({ from, to });
  const replay = (overrides: Partial<ReplayOptions>): Promise<PolicyRun> => bed.replay(data, parsePolicy('recent:3'), overrides);

  beforeAll(async () => {
    data = generated();
  });
  afterAll(async () => {
    await bed.drop();
    await admin.end();
  });

  it('decides as the import did, and records for every serve exactly the interactions its set missed', async () => {
    const imported = await replay({ interactionFeed: 'import' });
    const fed = await replay({ interactionFeed: 'api', refreshBehind: 'never' });
    // Imported interactions are in Postgres only: counted just for the sets Redis cannot vouch for
    // (those computed within 5 minutes of the replay's start, before its marker), so fewer.
    expect(imported.report.behindServes).toBeLessThan(fed.report.behindServes);
    for (const key of ['precomputes', 'wasted', 'coverage', 'logins', 'servesBySource', 'onDemand'] as const) {
      expect(fed.report[key], key).toEqual(imported.report[key]);
    }
    expect(fed.report.behindServes).toBeGreaterThan(10);
    expect(fed.report.refreshes).toBe(0);

    // Each served set against the log itself: interactions of its user in [computedAt, login),
    // a repeat of (user, item, at) once, as Postgres keeps it.
    const served = await admin.query<{ user_id: string; at: Date; computed_at: Date; missed_interactions: number }>(
      `SELECT s.user_id, s.at, r.computed_at, s.missed_interactions
         FROM ${quoteIdent(fed.schema)}.serves s JOIN ${quoteIdent(fed.schema)}.recommendations r ON r.id = s.recommendation_id`,
    );
    expect(served.rows.length).toBe(fed.logins - (fed.report.servesBySource.fallback ?? 0));
    const byUser = new Map<string, Set<string>>();
    for (const interaction of data.interactions) {
      let keys = byUser.get(interaction.userId);
      if (!keys) byUser.set(interaction.userId, (keys = new Set()));
      keys.add(`${interaction.at.getTime()}|${interaction.itemId}`);
    }
    let behind = 0;
    for (const row of served.rows) {
      const times = [...(byUser.get(row.user_id) ?? [])].map((key) => Number(key.split('|')[0]));
      const expected = times.filter((t) => t >= row.computed_at.getTime() && t < row.at.getTime()).length;
      expect(row.missed_interactions, `${row.user_id} at ${row.at.toISOString()}`).toBe(expected);
      if (expected > 0) behind++;
    }
    expect(behind).toBe(fed.report.behindServes);
  }, 600_000);

  it('computes behind sets again at login: almost no login is served one, and the refreshes are counted', async () => {
    const never = await replay({ refreshBehind: 'never' });
    const refreshed = await replay({ refreshBehind: 'login' });
    expect(refreshed.report.behindShare).toBeLessThanOrEqual(0.01);
    expect(refreshed.report.refreshes).toBeGreaterThan(0);
    expect(refreshed.report.refreshComputeMs).toBeGreaterThan(0);
    expect(never.report.refreshes).toBe(0);
    expect(refreshed.report.onDemand).toBeGreaterThan(never.report.onDemand);
    // Refreshing changes what is served, not what is planned.
    expect(refreshed.report.precomputes).toBe(never.report.precomputes);
  }, 600_000);
});
