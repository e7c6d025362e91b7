// `prewarm report` as an operator runs it (child processes) over the known history of
// test/dashboard-history.ts, in its three formats; the HTML is opened in Debian's chromium
// (playwright-core, as test/dashboard.test.ts) from a file, with no server: it must show the
// figures, log no console error and request nothing. A screenshot goes to reports/report.png.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedHistory, STALENESS_MS, type SeededHistory } from './dashboard-history.ts';
import { TEST_DATABASE_URL, createTestDb, type TestDb } from './helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const DAY_MS = 86_400_000;

describe('prewarm report', () => {
  let db: TestDb;
  let history: SeededHistory;
  const dir = mkdtempSync(join(tmpdir(), 'prewarm-report-'));

  function prewarm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const env = { ...process.env, DATABASE_URL: TEST_DATABASE_URL, PREWARM_DB_SCHEMA: db.schema, PREWARM_LOG_LEVEL: 'silent' };
    return new Promise((resolve) => {
      execFile('node', ['src/cli/bin.mjs', 'report', ...args], { env, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
        resolve({ code: error ? Number((error as NodeJS.ErrnoException & { code?: number }).code ?? 1) : 0, stdout, stderr });
      });
    });
  }
  const dayAfter = (day: string) => new Date(Date.parse(`${day}T00:00:00Z`) + DAY_MS).toISOString().slice(0, 10);

  beforeAll(async () => {
    db = await createTestDb();
    history = await seedHistory(db.pool);
  });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await db?.drop();
  });

  it('prints the table with the exact figures of the known history', async () => {
    const { code, stdout, stderr } = await prewarm([]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toBe(
      [
        'logins                 15 (fallback 3, on_demand 3, precomputed 9)',
        'precomputes            12',
        'wasted                 3 (waste rate 25.0%)',
        'coverage               75.0% of 12 known active user-windows',
        'login coverage         60.0%',
        `staleness p50 / p95    ${STALENESS_MS} ms / ${STALENESS_MS} ms`,
        'on-demand computations 3',
        'compute batch / demand 1200 ms / 600 ms',
        'latency fallback       p50 1 ms, p99 1 ms',
        'latency on_demand      p50 80 ms, p99 80 ms',
        'latency precomputed    p50 3 ms, p99 3 ms',
        '',
      ].join('\n'),
    );
    // --format table is the default; one day of the period has a third of everything.
    const day = await prewarm(['--format', 'table', '--from', history.days[1] as string, '--to', history.days[2] as string, '--window', 'nightly']);
    expect(day.code).toBe(0);
    expect(day.stdout).toContain('logins                 5 (');
    expect(day.stdout).toContain('wasted                 1 (waste rate 25.0%)');
    expect(day.stdout).toContain('coverage               75.0% of 4 known active user-windows');
  });

  it('prints the same figures as JSON with --format json and with --json, the fields unchanged', async () => {
    const expected = {
      precomputes: 12,
      wasted: 3,
      waste: 0.25,
      coverage: 0.75,
      loginCoverage: 0.6,
      logins: 15,
      knownActiveUserWindows: 12,
      stalenessP50Ms: STALENESS_MS,
      stalenessP95Ms: STALENESS_MS,
      onDemand: 3,
      batchComputeMs: 1200,
      onDemandComputeMs: 600,
      latencyP50Ms: { fallback: 1, on_demand: 80, precomputed: 3 },
      latencyP99Ms: { fallback: 1, on_demand: 80, precomputed: 3 },
      servesBySource: { fallback: 3, on_demand: 3, precomputed: 9 },
      // Content staleness (issue 15), added beside the fields above: this history's serves carry
      // no missed-interaction counts (written before they were recorded), and none of its
      // on-demand sets was computed while its user had a fresh set.
      behindServes: 0,
      behindShare: null,
      missedP50: null,
      missedP95: null,
      refreshes: 0,
      refreshComputeMs: 0,
    };
    const format = await prewarm(['--format', 'json']);
    expect(format.code).toBe(0);
    const report = JSON.parse(format.stdout);
    expect(Object.keys(report).sort()).toEqual(Object.keys(expected).sort());
    expect(report).toEqual(expected);
    const alias = await prewarm(['--json', '--window', 'nightly']);
    expect(alias.code).toBe(0);
    expect(JSON.parse(alias.stdout)).toEqual(expected);
  });

  it('writes one self-contained HTML file that chromium shows with the figures, no console error and no request', async () => {
    const out = join(dir, 'nested', 'report.html');
    const first = history.days[0] as string;
    const last = history.days[2] as string;
    const { code, stdout, stderr } = await prewarm(['--format', 'html', '--from', first, '--to', dayAfter(last), '--out', out]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toBe(`report written to ${out}\n`);
    const html = readFileSync(out, 'utf8');
    // Self-contained: no script, no external resource of any kind.
    expect(html).not.toMatch(/<script|<link [^>]*href="(?!data:)|src=|url\(|@import/i);
    expect(html).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);

    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
      const page = await context.newPage();
      const problems: string[] = [];
      const url = pathToFileURL(out).href;
      page.on('console', (message) => {
        if (message.type() === 'error' || message.type() === 'warning') problems.push(`${message.type()}: ${message.text()}`);
      });
      page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
      page.on('request', (request) => {
        if (request.url() !== url && !request.url().startsWith('data:')) problems.push(`request: ${request.url()}`);
      });
      await page.goto(url);
      await page.waitForLoadState('load');

      const stat = (id: string) => page.textContent(`[data-stat="${id}"] .value`);
      await expect(stat('compute-saved')).resolves.toBe('40%');
      await expect(stat('login-coverage')).resolves.toBe('60%');
      await expect(stat('coverage')).resolves.toBe('75%');
      await expect(stat('median-age')).resolves.toBe('5.9 h');
      await expect(stat('waste')).resolves.toBe('25%');
      await expect(page.textContent('[data-stat="login-coverage"] .label')).resolves.toContain('of 15 logins');
      await expect(page.textContent('[data-stat="waste"] .label')).resolves.toContain('20% of logins computed on demand');
      await expect(page.textContent('.lead')).resolves.toBe('Over these 3 days prewarm saved 40% of compute vs precomputing everyone, served 60% of logins precomputed, median age 5.9 h.');
      for (const day of history.days) {
        const cells = await page.locator(`tr[data-day="${day}"] td`).allTextContents();
        // Missed interactions p50/p95: not counted in this history.
        expect(cells).toEqual([day, '5', '25.0%', '75.0%', '60.0%', '5.9 h', '5.9 h', '—', '—', '20.0%']);
      }
      await expect(page.textContent('[data-latency="on_demand"]')).resolves.toContain('80 ms');
      await expect(page.textContent('body')).resolves.toContain(history.modelVersion);
      // The dashboard's charts: waste, coverage, staleness, sets behind their users, on-demand
      // share, reliability, latency.
      expect(await page.locator('svg.chart').count()).toBe(7);
      for (const title of ['daily waste', 'daily coverage', 'staleness', 'behind', 'on-demand share', 'reliability by decile', 'latency p99 by source']) {
        expect(await page.locator(`svg.chart[aria-label="${title}"]`).count()).toBe(1);
      }
      expect(await page.locator('svg.chart[aria-label="daily waste"] circle').count()).toBe(3);
      expect(await page.locator('svg.chart[aria-label="daily coverage"] circle').count()).toBe(6);
      expect(await page.locator('svg.chart[aria-label="reliability by decile"] rect').count()).toBe(20);
      // Dates on the x axis.
      await expect(page.textContent('svg.chart[aria-label="daily waste"]')).resolves.toMatch(/[A-Z][a-z]{2} \d{1,2}/);
      // Drawn, not only present: the charts have a size on the page.
      const box = await page.locator('svg.chart[aria-label="daily waste"]').boundingBox();
      expect(box?.width).toBeGreaterThan(300);

      mkdirSync('reports', { recursive: true });
      await page.screenshot({ path: 'reports/report.png', fullPage: true });
      expect(problems).toEqual([]);
      await context.close();
    } finally {
      await browser.close();
    }
  }, 120_000);

  it('prints the HTML to stdout; by default from the first day with data to today; of one window without compute saved', async () => {
    const all = await prewarm(['--format', 'html']);
    expect(all.code).toBe(0);
    expect(all.stdout.startsWith('<!doctype html>')).toBe(true);
    // The first seeded day is 4 days ago: 5 days up to today.
    expect(all.stdout).toContain('Over these 5 days prewarm saved <b>40%</b>');
    expect((all.stdout.match(/<tr data-day=/g) ?? []).length).toBe(5);
    const window = await prewarm(['--format', 'html', '--window', 'nightly', '--from', history.days[1] as string]);
    expect(window.code).toBe(0);
    expect(window.stdout).toContain('Over these 4 days prewarm served <b>60%</b> of logins precomputed');
    expect(window.stdout).toMatch(/data-stat="compute-saved"><div class="value">—</);
    expect(window.stdout).toContain('window nightly');
  });

  it.each([
    [['--format', 'pdf'], 2, /PREWARM_ERR_BAD_INPUT: --format: expected one of table, json, html, got "pdf"/],
    [['--json', '--format', 'html'], 2, /--json is --format json; it cannot go with --format html/],
    [['--from', '2024-13-01'], 2, /PREWARM_ERR_BAD_INPUT: --from: expected an ISO 8601 date/],
    [['--to', 'yesterday', '--format', 'html'], 2, /PREWARM_ERR_BAD_INPUT: --to: expected an ISO 8601 date/],
    [['--from', '2024-03-02', '--to', '2024-03-01'], 2, /--from 2024-03-02 is not before --to 2024-03-01/],
    [['--format', 'html', '--from', '2024-03-01T06:00:00Z'], 2, /--from 2024-03-01T06:00:00Z: --format html reports whole UTC days/],
    [['--format', 'html', '--from', '2999-01-01'], 2, /--from 2999-01-01 is after today, where the period ends without --to/],
    [['--window', 'weekly'], 1, /PREWARM_ERR_UNKNOWN_WINDOW: --window: no window named "weekly"/],
    [['--format', 'html', '--window', 'weekly'], 1, /no window named "weekly"/],
  ])('refuses %j: a clear error, a nonzero exit, nothing written', async (flags, exitCode, message) => {
    const out = join(dir, `refused-${flags.join('_').replace(/[^\w-]/g, '')}.html`);
    const { code, stdout, stderr } = await prewarm([...flags, '--out', out]);
    expect(code).toBe(exitCode);
    expect(stderr).toMatch(message);
    expect(stdout).toBe('');
    expect(existsSync(out)).toBe(false);
  });
});
