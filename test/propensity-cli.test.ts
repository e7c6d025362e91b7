import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const FIXTURE = 'test/fixtures/propensity-logins.csv';

// Unreachable services: evaluate and backtest must not need them.
const NO_SERVICES = { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', REDIS_URL: 'redis://127.0.0.1:1' };

function prewarm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('node', ['src/cli/bin.mjs', ...args], { env: { ...process.env, ...NO_SERVICES, PREWARM_LOG_LEVEL: 'silent' } }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as NodeJS.ErrnoException & { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('prewarm evaluate / backtest (child process, no Redis or Postgres needed)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'prewarm-propensity-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('evaluate --json prints exactly one JSON object with the documented fields', async () => {
    const { code, stdout } = await prewarm(['evaluate', '--logins', FIXTURE, '--window', '1d', '--test-from', '2024-02-15', '--json']);
    expect(code).toBe(0);
    expect(stdout.trim().split('\n')).toHaveLength(1);
    const report = JSON.parse(stdout);
    expect(report).toMatchObject({ window: '1d', testFrom: '2024-02-15T00:00:00.000Z', testTo: '2024-03-11T00:00:00.000Z' });
    expect(report.knownUserWindows).toBeGreaterThan(0);
    expect(report.activeUserWindows).toBeGreaterThan(0);
    expect(report.policies.map((p: { name: string }) => p.name)).toEqual(['model', 'all', 'recent-1', 'recent-3', 'recent-7', 'recent-28', 'oracle']);
    for (const p of report.policies) {
      for (const field of ['volume', 'waste', 'coverage']) {
        expect(p[field]).toBeGreaterThanOrEqual(0);
        expect(p[field]).toBeLessThanOrEqual(1);
      }
    }
    const model = report.policies[0];
    for (const field of ['averagePrecision', 'rocAuc', 'wasteAtCoverage80', 'wasteAtCoverage90', 'coverageAtWaste50']) {
      expect(typeof model[field]).toBe('number');
    }
    expect(report.comparisons.map((c: { rule: string }) => c.rule)).toEqual(['recent-1', 'recent-3', 'recent-7', 'recent-28']);
  });

  it('evaluate prints the aligned tables by default', async () => {
    const { code, stdout } = await prewarm(['evaluate', '--logins', FIXTURE, '--test-from', '2024-02-15', '--policy', 'recent:3']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^policy +volume +waste +coverage/m);
    expect(stdout).toMatch(/^recent-28 /m);
  });

  it.each([
    [['--window', '2d'], /--window "2d" must be one of 1d, 6h, 1h/],
    [['--test-from', 'yesterday'], /--test-from: expected an ISO 8601 date/],
    [['--test-from', '2024-02-15T06:00:00Z'], /--test-from .* is not the start of a 1d window/],
    [['--policy', 'coverage:2'], /--policy: .*coverage:2/],
    [['--train-windows', '0'], /--train-windows must be a whole number/],
  ])('a bad flag (%j) exits 2 naming it', async (flags, message) => {
    const args = ['evaluate', '--logins', FIXTURE, '--test-from', '2024-02-15', ...flags];
    const { code, stderr, stdout } = await prewarm(args);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/PREWARM_ERR_BAD_INPUT/);
    expect(stderr).toMatch(message);
  });

  it('backtest recommends a setting and writes the SVG chart', async () => {
    const chart = join(dir, 'tradeoff.svg');
    const { code, stdout } = await prewarm([
      'backtest',
      '--logins',
      FIXTURE,
      '--test-from',
      '2024-02-15',
      '--sweep',
      'coverage',
      '--goal',
      'coverage>=0.8',
      '--chart',
      chart,
      '--json',
    ]);
    expect(code).toBe(0);
    const report = JSON.parse(stdout);
    expect(report.sweep).toBe('coverage');
    expect(report.goal).toBe('coverage>=0.8');
    expect(report.recommended.coverage).toBeGreaterThanOrEqual(0.8);
    expect(report.chart).toBe(chart);
    expect(readFileSync(chart, 'utf8')).toMatch(/^<svg /);
  });

  it('backtest refuses a goal it cannot read', async () => {
    const { code, stderr } = await prewarm(['backtest', '--logins', FIXTURE, '--test-from', '2024-02-15', '--sweep', 'threshold', '--goal', 'cover 80%']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/--goal "cover 80%"/);
  });
});
