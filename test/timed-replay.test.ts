import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { quoteIdent } from '../src/db/migrate.ts';
import { parsePolicy } from '../src/planner/policy.ts';
import { generateActivity } from '../src/replay/generate.ts';
import type { PolicyRun } from '../src/replay/replay.ts';
import { createReplayTestBed, TEST_DATABASE_URL } from './helpers.ts';

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
const START = new Date('2024-01-01T00:00:00Z');
const HISTORY_DAYS = 35;
const REPLAYED_DAYS = 7;

/**
 * The replay in timed mode on a generated log (its users keep a preferred hour, as people do):
 * the same selection as the nightly replay of the same policy, each set computed at the slot start
 * before its user's likely login, so the sets served are younger.
 */
describe('replay with timed precompute (generated log, seed 42, 400 users, one week)', () => {
  const { logins, interactions } = generateActivity({ seed: 42, users: 400, days: HISTORY_DAYS + REPLAYED_DAYS, start: START });
  const data = { logins, interactions };
  const from = new Date(START.getTime() + HISTORY_DAYS * DAY_MS);
  const to = new Date(from.getTime() + REPLAYED_DAYS * DAY_MS);
  const bed = createReplayTestBed({ from, to, retrainEveryMs: 14 * DAY_MS });
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  afterAll(async () => {
    await bed.drop();
    await client.end();
  });

  async function precomputedAge(run: PolicyRun): Promise<number> {
    const result = await client.query<{ p50: number }>(
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY staleness_ms) AS p50 FROM ${quoteIdent(run.schema)}.serves WHERE source = 'precomputed'`,
    );
    return Number(result.rows[0]?.p50);
  }

  it('selects the same users as nightly, computes them later in the day, serves younger sets, and keeps coverage', async () => {
    await client.connect();
    // Trained once and open loop, so both replays select from the same scores.
    const policy = parsePolicy('coverage:0.8,fixed');
    const nightly = await bed.replay(data, policy);
    const timed = await bed.replay(data, policy, { timing: { slotMs: HOUR_MS, risk: 0.02 } });

    const runs = await client.query<{ status: string; n: number }>(`SELECT status, count(*)::int AS n FROM ${quoteIdent(timed.schema)}.batch_runs GROUP BY status`);
    expect(runs.rows).toEqual([{ status: 'completed', n: REPLAYED_DAYS }]);
    // Every set at a slot start of its run's day, before the day ends, living until the next
    // day's end (chained: superseded by the user's next set); most of them after midnight.
    const sets = await client.query<{ offset_ms: number; expires: boolean }>(
      `SELECT (extract(epoch FROM r.computed_at - b.scheduled_for) * 1000)::float8 AS offset_ms,
              r.expires_at = b.expires_at + b.horizon_ms * interval '1 millisecond' AS expires
         FROM ${quoteIdent(timed.schema)}.recommendations r JOIN ${quoteIdent(timed.schema)}.batch_runs b ON b.id = r.run_id WHERE r.source = 'batch'`,
    );
    expect(sets.rows.length).toBeGreaterThan(0);
    expect(sets.rows.every((row) => row.expires && row.offset_ms >= 0 && row.offset_ms < DAY_MS && row.offset_ms % HOUR_MS === 0)).toBe(true);
    expect(sets.rows.filter((row) => row.offset_ms > 0).length).toBeGreaterThan(sets.rows.length / 2);

    expect(timed.report.precomputes).toBe(nightly.report.precomputes);
    expect(timed.report.coverage).toBeGreaterThanOrEqual((nightly.report.coverage ?? 1) - 0.03);
    const [nightlyAge, timedAge] = [await precomputedAge(nightly), await precomputedAge(timed)];
    expect(timedAge).toBeLessThan(nightlyAge * 0.75);
  }, 300_000);
});
