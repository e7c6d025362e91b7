// `prewarm runs list|show` and `prewarm windows list` as an operator runs them (child processes),
// over the known history of test/dashboard-history.ts.
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VirtualClock } from '../src/clock.ts';
import { recordModelQuality } from '../src/propensity/quality.ts';
import { seedHistory, type SeededHistory } from './dashboard-history.ts';
import { TEST_DATABASE_URL, createTestDb, silentLog, type TestDb } from './helpers.ts';

describe('prewarm runs', () => {
  let db: TestDb;
  let history: SeededHistory;

  function prewarm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const env = { ...process.env, DATABASE_URL: TEST_DATABASE_URL, PREWARM_DB_SCHEMA: db.schema, PREWARM_LOG_LEVEL: 'silent' };
    return new Promise((resolve) => {
      execFile('node', ['src/cli/bin.mjs', ...args], { env }, (error, stdout, stderr) => {
        resolve({ code: error ? Number((error as NodeJS.ErrnoException & { code?: number }).code ?? 1) : 0, stdout, stderr });
      });
    });
  }

  beforeAll(async () => {
    db = await createTestDb();
    history = await seedHistory(db.pool);
  });
  afterAll(async () => db?.drop());

  it('lists runs newest first with counts, waste and coverage', async () => {
    const { code, stdout, stderr } = await prewarm(['runs', 'list', '--window', 'nightly']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    const [newest] = [...history.runIds].reverse();
    expect(lines[0]).toMatch(new RegExp(`^#${newest} +nightly +${history.days[2]} 00:00 UTC +completed +4/5 precomputed, 1 failed +waste 25\\.0% +coverage 75\\.0%$`));
    expect(lines[2]).toContain(`${history.days[0]} 00:00 UTC`);
  });

  it('lists runs as JSON', async () => {
    const { code, stdout } = await prewarm(['runs', 'list', '--json', '--limit', '2']);
    expect(code).toBe(0);
    const runs = JSON.parse(stdout);
    expect(runs).toHaveLength(2);
    expect(runs[0]).toMatchObject({ window: 'nightly', status: 'completed', candidates: 10, selected: 5, precomputed: 4, failed: 1, sets: 4, setsWasted: 1, wasteRate: 0.25, coverage: 0.75, windowEnded: true });
  });

  it('shows one run: status, counts, durations, failures, waste and coverage', async () => {
    const id = history.runIds[2];
    const { code, stdout } = await prewarm(['runs', 'show', String(id)]);
    expect(code).toBe(0);
    expect(stdout).toContain(`#${id} of window nightly, occurrence ${history.days[2]} 00:00 UTC`);
    expect(stdout).toMatch(/status +completed/);
    expect(stdout).toMatch(/users +10 scored, 5 selected, 0 holdout; 4 precomputed, 1 failed/);
    expect(stdout).toMatch(/chunks +2 of 2 done/);
    expect(stdout).toMatch(/planning +20 s/);
    expect(stdout).toMatch(/finished +.*, 6 min 00 s after the occurrence/);
    expect(stdout).toMatch(/waste +25\.0% \(1 wasted of 4 ended, 4 policy sets; expected 30\.0%\)/);
    expect(stdout).toMatch(/coverage +75\.0% \(3 of 4 known users who logged in\); expected 80\.0%/);
    expect(stdout).toMatch(/failure +chunk 1: 1 of 1 users failed: recommender timed out/);
  });

  it('refuses an unknown or malformed run id', async () => {
    const unknown = await prewarm(['runs', 'show', '999999']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('prewarm: no run #999999\n');
    const malformed = await prewarm(['runs', 'show', 'abc']);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('run id must be a positive whole number');
  });

  it('shows the live model quality of a run whose horizon ended: weighted AP, ROC AUC, holdout misses', async () => {
    const id = history.runIds[2] as number;
    const before = await prewarm(['runs', 'show', String(id)]);
    expect(before.stdout).toMatch(/model quality +not evaluated yet/);
    // u0, u1, u2 and u4 logged in during the run; u5 is holdout; u6–u9 are a sample weighing 2 each.
    const users = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7', 'u8', 'u9'];
    await db.pool.query(
      `INSERT INTO predictions (run_id, user_id, p, selected, holdout, weight)
       SELECT $1, u, (10 - ord)::real / 10, ord <= 5, u = 'u5', CASE WHEN ord > 6 THEN 2 ELSE 1 END
         FROM unnest($2::text[]) WITH ORDINALITY AS t (u, ord)`,
      [id, users],
    );
    const recorded = await recordModelQuality({ pool: db.pool, log: silentLog, clock: new VirtualClock(Date.now()), driftMargin: 0.05 });
    expect(recorded.map((q) => q.runId)).toEqual([id]);
    const { code, stdout } = await prewarm(['runs', 'show', String(id)]);
    expect(code).toBe(0);
    // AP = (1 + 1 + 1 + 4/5) / 4; ROC AUC = (3 × 10 + 9) / (4 × 10) with the negatives weighing 10.
    expect(stdout).toMatch(/model quality +AP 0\.9500, ROC AUC 0\.9750, calibration error \d\.\d{4}/);
    expect(stdout).toMatch(/scored +10 users recorded, standing for 14 scored \(4 logged in; weighted by the predictions sample\)/);
    expect(stdout).toMatch(/holdout misses +0 of 1 holdout users logged in \(0\.0%\)/);
    const json = JSON.parse((await prewarm(['runs', 'show', String(id), '--json'])).stdout);
    expect(json.quality).toMatchObject({ runId: id, averagePrecision: 0.95, rocAuc: 0.975, scoredUsers: 14, loggedIn: 4, holdoutUsers: 1, holdoutLoggedIn: 0, holdoutMissRate: 0, coverage: 0.75, waste: 0.25 });
    expect(json.quality.reliability).toHaveLength(10);
  });

  it('windows list shows the last run with its waste and coverage', async () => {
    const { code, stdout } = await prewarm(['windows', 'list']);
    expect(code).toBe(0);
    expect(stdout).toContain(`last run #${history.runIds[2]} for ${history.days[2]}T00:00:00.000Z: completed, 4/5 precomputed, 1 failed, waste 25.0%, coverage 75.0%`);
    const json = JSON.parse((await prewarm(['windows', 'list', '--json'])).stdout);
    expect(json[0]).toMatchObject({ name: 'nightly', lastWaste: 0.25, lastCoverage: 0.75 });
  });

  it('plan --dry-run puts the proposal beside the last runs: what they expected and what they measured', async () => {
    // The seeded model row only feeds the dashboard's reliability chart; the dry run must plan
    // with the recency rule, as a deployment does before its first trained model. Last in the file.
    await db.pool.query('DELETE FROM propensity_models');
    const json = await prewarm(['plan', 'nightly', '--dry-run', '--json']);
    expect(json.stderr).toBe('');
    expect(json.code).toBe(0);
    const proposal = JSON.parse(json.stdout);
    for (const key of ['window', 'candidates', 'selected', 'expectedCoverage', 'expectedWaste']) expect(proposal).toHaveProperty(key);
    const newestFirst = [...history.runIds].reverse();
    expect(proposal.lastRuns.map((run: { id: number }) => run.id)).toEqual(newestFirst);
    expect(proposal.lastRuns[0]).toMatchObject({ selected: 5, candidates: 10, expectedCoverage: 0.8, expectedWaste: 0.3, coverage: 0.75, waste: 0.25, final: true });

    const text = await prewarm(['plan', 'nightly', '--dry-run']);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`run #${newestFirst[0]} `);
    expect(text.stdout).toMatch(/expected coverage 80\.0%, measured 75\.0%; expected waste 30\.0%, measured 25\.0%/);
  });
});
