// The replay's content-staleness figures (ReplayPolicyFigures, `replay --json`, the HTML report)
// on a small generated log with interactions fed through the API: each one against the kept
// schema's rows, recomputed here from its definition, with and without refreshing at login.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quoteIdent } from '../src/db/migrate.ts';
import { parsePolicy } from '../src/planner/policy.ts';
import { renderReplayHtml } from '../src/replay/html-report.ts';
import type { PolicyRun } from '../src/replay/replay.ts';
import { policyFigures, type ReplayPolicyFigures, type ReplayResult } from '../src/replay/run.ts';
import { createReplayTestBed, TEST_DATABASE_URL, generatedReplayData } from './helpers.ts';

const DAY_MS = 86_400_000;
const START = new Date('2024-01-01T00:00:00Z');
const HISTORY_DAYS = 28;
const from = new Date(START.getTime() + HISTORY_DAYS * DAY_MS);
const to = new Date(from.getTime() + 4 * DAY_MS);

const generated = () => generatedReplayData({ seed: 7, users: 300, days: HISTORY_DAYS + 4, start: START });

interface Expected {
  logins: number;
  behindServes: number;
  missed: number[];
  refreshes: number;
  refreshComputeMs: number;
  batchComputeMs: number;
}

const percentile = (sorted: number[], p: number) => {
  const rank = p * (sorted.length - 1);
  const low = Math.floor(rank);
  return (sorted[low] as number) + ((sorted[Math.ceil(rank)] as number) - (sorted[low] as number)) * (rank - low);
};

describe('the replay figures of sets behind their users (generated log, seed 7, 300 users, 4 days)', () => {
  const data = generated();
  const bed = createReplayTestBed({ from, to });
  const admin = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 1 });
  const runs: Record<'never' | 'login', PolicyRun> = {} as Record<'never' | 'login', PolicyRun>;

  beforeAll(async () => {
    runs.never = await bed.replay(data, parsePolicy('recent:3'), { interactionFeed: 'api', refreshBehind: 'never' });
    runs.login = await bed.replay(data, parsePolicy('recent:3'), { interactionFeed: 'api', refreshBehind: 'login' });
  }, 600_000);
  afterAll(async () => {
    await bed.drop();
    await admin.end();
  });

  /** The figures from the kept schema's rows, by their definitions (not through the report's SQL). */
  async function fromRows(run: PolicyRun): Promise<Expected> {
    const schema = quoteIdent(run.schema);
    const serves = await admin.query<{ missed_interactions: number | null }>(`SELECT missed_interactions FROM ${schema}.serves WHERE at >= $1 AND at < $2`, [from, to]);
    const sets = await admin.query<{ user_id: string; source: string; computed_at: Date; expires_at: Date; compute_ms: number }>(
      `SELECT user_id, source, computed_at, expires_at, compute_ms::float8 AS compute_ms FROM ${schema}.recommendations`,
    );
    const missed = serves.rows.flatMap((row) => (row.missed_interactions === null ? [] : [row.missed_interactions])).sort((a, b) => a - b);
    const byUser = new Map<string, (typeof sets.rows)[number][]>();
    for (const set of sets.rows) byUser.set(set.user_id, [...(byUser.get(set.user_id) ?? []), set]);
    // A refresh: an on-demand set computed in the period while an earlier set of its user was still fresh.
    const refreshed = sets.rows.filter(
      (set) =>
        set.source === 'on_demand' &&
        set.computed_at >= from &&
        set.computed_at < to &&
        (byUser.get(set.user_id) ?? []).some((other) => other.computed_at < set.computed_at && other.expires_at > set.computed_at),
    );
    const batch = sets.rows.filter((set) => set.source === 'batch' && set.computed_at >= from && set.computed_at < to);
    return {
      logins: serves.rows.length,
      behindServes: missed.filter((n) => n > 0).length,
      missed,
      refreshes: refreshed.length,
      refreshComputeMs: refreshed.reduce((total, set) => total + set.compute_ms, 0),
      batchComputeMs: batch.reduce((total, set) => total + set.compute_ms, 0),
    };
  }

  function expectFigures(figures: ReplayPolicyFigures, expected: Expected) {
    expect(expected.missed.length).toBeGreaterThan(0);
    expect(figures.behindServes).toBe(expected.behindServes);
    expect(figures.behindShare).toBeCloseTo(expected.behindServes / expected.logins, 10);
    expect(figures.missedMean).toBeCloseTo(expected.missed.reduce((a, b) => a + b, 0) / expected.missed.length, 10);
    expect(figures.missedP50).toBeCloseTo(percentile(expected.missed, 0.5), 10);
    expect(figures.missedP95).toBeCloseTo(percentile(expected.missed, 0.95), 10);
    expect(figures.refreshes).toBe(expected.refreshes);
    expect(figures.refreshComputeMs).toBe(Math.round(expected.refreshComputeMs));
    // recommendations.compute_ms is a real: Postgres sums it in single precision (a relative
    // error of about 1e-6 over these sets), here it is summed in double.
    const share = expected.refreshComputeMs / expected.batchComputeMs;
    expect(Math.abs((figures.refreshComputeShare as number) - share)).toBeLessThanOrEqual(1e-5 * share);
  }

  it('serving behind sets as they are: a share of logins served behind, what they missed, no refresh', async () => {
    const figures = policyFigures('model', runs.never);
    const expected = await fromRows(runs.never);
    expectFigures(figures, expected);
    // Something to measure: on this log users interact between their logins of a day.
    expect(figures.behindServes).toBeGreaterThan(10);
    expect(figures.missedMean).toBeGreaterThan(0);
    expect(figures.refreshes).toBe(0);
    expect(figures.refreshComputeMs).toBe(0);
    expect(figures.refreshComputeShare).toBe(0);
  });

  it('refreshing at login: at most 1% of logins served behind, and the refreshes and their compute are the price', async () => {
    const figures = policyFigures('model', runs.login);
    const never = policyFigures('model', runs.never);
    const expected = await fromRows(runs.login);
    expectFigures(figures, expected);
    expect(figures.behindShare).toBeLessThanOrEqual(0.01);
    // Each behind set of the `never` replay was computed again, at most (the first behind login
    // of a user-window refreshes; a later one may find the refreshed set behind in its turn).
    expect(figures.refreshes).toBeGreaterThan(0);
    expect(figures.refreshComputeMs).toBeGreaterThan(0);
    expect(figures.refreshComputeShare).toBeGreaterThan(0);
    expect(figures.missedMean).toBeLessThan(never.missedMean as number);
    // The on-demand sets computed beyond the `never` replay's are the refreshes.
    expect(figures.onDemand - never.onDemand).toBeLessThanOrEqual(figures.refreshes);
    expect(figures.precomputes).toBe(never.precomputes);
  });

  it("leaves each set's serve count and first serve as its serves say (as maintenance keeps them)", async () => {
    for (const run of [runs.never, runs.login]) {
      const schema = quoteIdent(run.schema);
      const { rows } = await admin.query<{ wrong: number; counted: number }>(
        `SELECT count(*) FILTER (WHERE r.serve_count <> s.n OR r.first_served_at IS DISTINCT FROM s.first_at)::int AS wrong,
                coalesce(sum(r.serve_count), 0)::int AS counted
           FROM ${schema}.recommendations r
           LEFT JOIN LATERAL (SELECT count(*)::int AS n, min(at) AS first_at FROM ${schema}.serves WHERE recommendation_id = r.id) s ON true`,
      );
      expect(rows[0]).toMatchObject({ wrong: 0 });
      expect(rows[0]!.counted).toBeGreaterThan(0);
    }
  });

  it('the HTML report shows them per policy, with how interactions came and what was done with behind sets', () => {
    const policy = (name: string, run: PolicyRun) => ({ ...policyFigures(name, run), daily: run.daily });
    const login = policyFigures('login', runs.login);
    const result: ReplayResult = {
      source: 'generated seed 7',
      from: from.toISOString(),
      to: to.toISOString(),
      window: '1d',
      interactionFeed: 'api',
      refreshBehind: 'login',
      logins: runs.login.logins,
      wallMs: 1,
      policies: [policy('login', runs.login), policy('never', runs.never)],
      oracle: { ...login, name: 'oracle' },
      columns: ['policy'],
      table: [{ policy: 'login' }],
    };
    const html = renderReplayHtml(result);
    const section = html.slice(html.indexOf('<h2>Sets behind their users</h2>'));
    expect(section).toContain('through the interactions API');
    expect(section).toContain('computed again at login');
    for (const header of ['logins served a behind set', 'missed interactions mean / p50 / p95', 'refreshes at login', 'refresh compute s', 'refresh compute / batch compute']) {
      expect(section).toContain(`<th>${header}</th>`);
    }
    const row = (f: ReplayPolicyFigures) =>
      `<tr><td>${f.name}</td><td>${f.behindServes}</td><td>${((f.behindShare as number) * 100).toFixed(1)}%</td><td>${(f.missedMean as number).toFixed(2)} / ${(f.missedP50 as number).toFixed(1)} / ${(f.missedP95 as number).toFixed(1)}</td><td>${f.refreshes}</td><td>${(f.refreshComputeMs / 1000).toFixed(1)}</td><td>${((f.refreshComputeShare as number) * 100).toFixed(1)}%</td>`;
    expect(section).toContain(row(login));
    expect(section).toContain(row(policyFigures('never', runs.never)));
  });
});
