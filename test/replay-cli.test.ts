import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { TEST_DATABASE_URL, TEST_REDIS_URL } from './helpers.ts';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'prewarm-replay-cli-'));
const env = { ...process.env, DATABASE_URL: TEST_DATABASE_URL, REDIS_URL: TEST_REDIS_URL, PREWARM_LOG_LEVEL: 'warn' };
const prewarm = (...args: string[]) => run(process.execPath, ['src/cli/bin.mjs', ...args], { env, maxBuffer: 16 << 20 });

describe('prewarm generate → prewarm replay (the demo pipeline)', () => {
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prints the replay JSON for model, all and none, with the oracle, and writes the HTML report', async () => {
    await prewarm('generate', '--out', dir, '--seed', '11', '--users', '120', '--days', '36');
    const report = join(dir, 'report.html');
    const { stdout } = await prewarm('replay', '--logins', join(dir, 'logins.csv'), '--interactions', join(dir, 'interactions.csv'), '--json', '--report', report);
    const result = JSON.parse(stdout);
    expect(result.policies.map((p: { name: string }) => p.name)).toEqual(['model', 'all', 'none']);
    // The defaults: interactions through the API, behind sets refreshed at login, as `prewarm serve`.
    expect(result).toMatchObject({ interactionFeed: 'api', refreshBehind: 'login' });
    const [model, all, none] = result.policies;
    for (const policy of result.policies) {
      for (const key of ['precomputes', 'wasted', 'waste', 'coverage', 'loginCoverage', 'stalenessP50Ms', 'stalenessP95Ms', 'onDemand', 'batchComputeMs', 'onDemandComputeMs', 'latencyP50Ms', 'latencyP99Ms']) {
        expect(policy).toHaveProperty(key);
      }
      // Content staleness and the price of refreshing, counted for every serve of a set.
      expect(policy.behindShare).toBeTypeOf('number');
      expect(policy.behindShare).toBeGreaterThanOrEqual(0);
      expect(policy.behindShare).toBeLessThanOrEqual(1);
      expect(policy.behindServes).toBeGreaterThanOrEqual(0);
      for (const key of ['missedMean', 'missedP50', 'missedP95']) expect(policy[key]).toBeTypeOf('number');
      expect(policy.refreshes).toBeGreaterThanOrEqual(0);
      expect(policy.refreshComputeMs).toBeGreaterThanOrEqual(0);
      expect(policy.onDemand).toBeGreaterThanOrEqual(policy.refreshes);
    }
    expect(model.refreshComputeShare).toBeTypeOf('number');
    expect(none.refreshComputeShare).toBeNull();
    expect(result.oracle).toMatchObject({ behindServes: 0, behindShare: null, refreshes: 0, refreshComputeMs: 0 });
    // Precompute everyone covers every known active user; on demand only covers none of them.
    expect(all.coverage).toBe(1);
    expect(none.precomputes).toBe(0);
    expect(none.coverage).toBe(0);
    expect(none.onDemand).toBeGreaterThan(0);
    expect(model.precomputes).toBeLessThan(all.precomputes);
    expect(model.waste).toBeLessThan(all.waste);
    // The oracle precomputes exactly the known users who log in: the active user-windows.
    expect(result.oracle).toMatchObject({ name: 'oracle', wasted: 0, waste: 0, coverage: 1 });
    expect(result.oracle.precomputes).toBe(all.precomputes - all.wasted);
    expect(result.report).toBe(report);
    const html = readFileSync(report, 'utf8');
    expect(html).toContain('<table>');
    expect(html).toContain('model (coverage:0.8)');
    // Four charts, and the fifth of the logins served a behind set: the replay feeds its
    // interactions through the API, so every serve's missed interactions are counted.
    expect((html.match(/<svg /g) ?? []).length).toBe(5);
    expect(html).toContain('Logins served a behind set per day');
    expect(html).toContain('<h2>Sets behind their users</h2>');
    expect(html).toContain('computed again at login');
  }, 240_000);

  it('lists --interaction-feed and --refresh-behind in its help, with their defaults', async () => {
    const { stdout } = await prewarm('replay', '--help');
    expect(stdout).toMatch(/--interaction-feed <mode>[\s\S]*\(default: "api"\)/);
    expect(stdout).toMatch(/--refresh-behind <mode>[\s\S]*default: login with --interaction-feed api, never with import/);
  });

  it.each([
    [['--retrain-every', 'soon'], /--retrain-every: "soon" is not a duration/],
    [['--retrain-propensity-every', '0s'], /--retrain-propensity-every: must be a positive duration/],
    [['--policy', 'coverage:2'], /--policy: /],
    [['--interaction-feed', 'kafka'], /--interaction-feed must be "api" or "import", not "kafka"/],
    [['--refresh-behind', 'always'], /--refresh-behind must be "login" or "never", not "always"/],
    [['--interaction-feed', 'import', '--refresh-behind', 'login'], /--refresh-behind login needs --interaction-feed api/],
  ])('a bad flag (%j) exits 2 naming it, before reading any file', async (flags, message) => {
    const failed = await prewarm('replay', '--logins', join(dir, 'missing.csv'), '--interactions', join(dir, 'missing.csv'), ...flags).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(failed.code).toBe(2);
    expect(failed.stderr).toMatch(/PREWARM_ERR_BAD_INPUT/);
    expect(failed.stderr).toMatch(message);
  });
});
