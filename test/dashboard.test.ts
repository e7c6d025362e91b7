// The dashboard in a real browser: Debian's chromium driven by playwright-core (.ci/run installs
// chromium when missing). A known history is seeded (test/dashboard-history.ts); the page must
// show its figures, load without console errors, and refuse a wrong token. A screenshot is saved
// to reports/dashboard.png (git-ignored) for a person to look at.
import { mkdirSync } from 'node:fs';
import { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/api/app.ts';
import { createApiMetrics } from '../src/api/metrics.ts';
import { systemClock } from '../src/clock.ts';
import { createDashboardPlugin } from '../src/dashboard/plugin.ts';
import type { RecommendationService } from '../src/serving/service.ts';
import { seedHistory, type SeededHistory } from './dashboard-history.ts';
import { createTestDb, createTestRedis, silentLog, type TestDb, type TestRedis } from './helpers.ts';

const ADMIN_TOKEN = 'admin-token-for-the-dashboard-0123';
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

describe('dashboard', () => {
  let db: TestDb;
  let redis: TestRedis;
  let queue: Queue;
  let app: FastifyInstance;
  let url: string;
  let browser: Browser;
  let history: SeededHistory;

  beforeAll(async () => {
    db = await createTestDb();
    redis = await createTestRedis();
    history = await seedHistory(db.pool);
    queue = new Queue('precompute', { connection: redis.redis, prefix: redis.prefix });
    const service = {
      getRecommendations: () => Promise.reject(new Error('not used')),
      inFlight: () => 0,
      admitted: () => 0,
      close: () => Promise.resolve(),
    } satisfies RecommendationService;
    app = await buildApp({
      service,
      metrics: createApiMetrics({ defaultMetrics: false }),
      log: silentLog,
      options: { apiTokens: ['service-token-0123456789abcdef'], adminToken: ADMIN_TOKEN, defaultLimit: 10, maxLimit: 100 },
      readiness: {},
    });
    await app.register(createDashboardPlugin({ pool: db.pool, clock: systemClock, log: silentLog, adminToken: ADMIN_TOKEN, queues: [queue] }));
    url = await app.listen({ host: '127.0.0.1', port: 0 });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await queue?.close();
    await redis?.drop();
    await db?.drop();
  });

  it('refuses a wrong token and sets no cookie', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const first = await page.goto(`${url}/dashboard`);
    expect(first?.status()).toBe(401);
    await page.fill('#token', 'not-the-admin-token-at-all');
    const [response] = await Promise.all([page.waitForResponse(`${url}/dashboard/login`), page.click('button[type=submit]')]);
    expect(response.status()).toBe(401);
    await expect(page.textContent('[role=alert]')).resolves.toBe('Wrong token.');
    expect(await context.cookies()).toEqual([]);
    expect(await page.content()).not.toContain('saved');
    // The service tokens open nothing here either, and neither does a forged cookie.
    const forged = await app.inject({ url: '/dashboard', headers: { cookie: 'prewarm_admin=service-token-0123456789abcdef' } });
    expect(forged.statusCode).toBe(401);
    const queues = await app.inject({ url: '/admin/queues/api/queues' });
    expect(queues.statusCode).toBe(401);
    await context.close();
  });

  it('shows the figures of the known history after signing in, without console errors', async () => {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const problems: string[] = [];
    await page.goto(`${url}/dashboard/login`);
    await page.fill('#token', ADMIN_TOKEN);
    // Only the signed-in page is watched: the login page is answered 401 on purpose.
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') problems.push(`${message.type()}: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
    page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
    const [response] = await Promise.all([page.waitForResponse(`${url}/dashboard`), page.click('button[type=submit]')]);
    expect(response.status()).toBe(200);
    await page.waitForLoadState('load');
    expect(page.url()).toBe(`${url}/dashboard`);
    expect(page.url()).not.toContain(ADMIN_TOKEN);

    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ name: 'prewarm_admin', httpOnly: true, sameSite: 'Strict' });
    expect(cookie?.value).not.toContain(ADMIN_TOKEN);

    const stat = (id: string) => page.textContent(`[data-stat="${id}"] .value`);
    await expect(stat('compute-saved')).resolves.toBe('40%');
    await expect(stat('login-coverage')).resolves.toBe('60%');
    await expect(stat('median-age')).resolves.toBe('5.9 h');
    await expect(stat('waste')).resolves.toBe('25%');
    await expect(page.textContent('[data-stat="login-coverage"] .label')).resolves.toContain('of 15 logins');
    await expect(stat('coverage')).resolves.toBe('75%');
    await expect(page.textContent('[data-stat="waste"] .label')).resolves.toContain('20% of logins computed on demand');
    await expect(page.textContent('.lead')).resolves.toBe('Over these 14 days prewarm saved 40% of compute vs precomputing everyone, served 60% of logins precomputed, median age 5.9 h.');

    const windowRow = await page.textContent('table tbody tr');
    expect(windowRow).toContain('nightly');
    expect(windowRow).toContain('coverage:0.8');
    expect(windowRow).toContain(`${history.days[2]} 00:00 UTC`);
    expect(windowRow).toContain('4 of 5 precomputed, 1 failed');
    await expect(page.textContent('[data-latency="on_demand"]')).resolves.toContain('80 ms');
    await expect(page.textContent('body')).resolves.toContain(history.modelVersion);
    // Charts: one per daily figure (sets behind their users included), the reliability bars and latency; dates on the axes.
    expect(await page.locator('svg.chart').count()).toBe(7);
    expect(await page.locator('svg.chart[aria-label="behind"]').count()).toBe(1);
    expect(await page.locator('svg.chart[aria-label="daily waste"] circle').count()).toBe(3);
    expect(await page.locator('svg.chart[aria-label="reliability by decile"] rect').count()).toBe(20);
    // The x axis ends on today, written as a date (src/charts labels days `Mar 5`).
    const today = new Date().toLocaleDateString('en-GB', { month: 'short', day: 'numeric', timeZone: 'UTC' }).replace(/^(\d+) (\w+)$/, '$2 $1');
    expect(await page.locator('svg.chart[aria-label="daily waste"] text.tick').last().textContent()).toBe(today);
    expect((await page.locator('svg.chart[aria-label="daily waste"]').boundingBox())?.width).toBeGreaterThan(300);

    mkdirSync('reports', { recursive: true });
    await page.screenshot({ path: 'reports/dashboard.png', fullPage: true });
    expect(problems).toEqual([]);

    // The queue view opens with the same session.
    const board = await page.goto(`${url}/admin/queues/`);
    expect(board?.status()).toBe(200);
    const api = await page.evaluate(async () => (await fetch('/admin/queues/api/queues')).status);
    expect(api).toBe(200);
    await context.close();
  });
});
