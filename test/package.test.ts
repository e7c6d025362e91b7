// The package as a user gets it: `npm pack` (prepack builds dist/), `npm install` of the tarball
// into an empty project, then the installed `prewarm` — compiled JavaScript on plain Node, no
// tsx — migrates a schema of its own and serves one real HTTP request.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, createTestRedis, TEST_DATABASE_URL, TEST_REDIS_URL, type TestDb, type TestRedis } from './helpers.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
// Never copied into the throw-away checkout: installed or generated, not part of the sources.
const NOT_SOURCES = new Set(['node_modules', 'dist', '.git', 'reports', 'coverage']);
const TOKEN = `package-test-${randomUUID()}`;
const MIGRATIONS = readdirSync(join(root, 'migrations')).sort();

describe('the npm package', () => {
  let work: string;
  let installed: string;
  let bin: string;
  let db: TestDb;
  let redis: TestRedis;
  let server: ChildProcess | undefined;

  const env = () => ({
    ...process.env,
    DATABASE_URL: TEST_DATABASE_URL,
    REDIS_URL: TEST_REDIS_URL,
    PREWARM_CACHE_REDIS_URL: TEST_REDIS_URL,
    PREWARM_DB_SCHEMA: db.schema,
    PREWARM_QUEUE_PREFIX: redis.prefix,
    PREWARM_CACHE_PREFIX: `${redis.prefix}:`,
    PREWARM_API_TOKENS: TOKEN,
    PREWARM_LOG_LEVEL: 'info',
    PORT: '0',
  });

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'prewarm-package-'));
    // Built and packed from a copy of the checkout, so that the test neither rewrites the
    // working tree's dist/ nor ships a file a stale dist/ still holds.
    const checkout = join(work, 'checkout');
    cpSync(root, checkout, { recursive: true, filter: (source) => !NOT_SOURCES.has(relative(root, source).split(sep)[0] ?? '') && !source.endsWith('.tgz') });
    symlinkSync(join(root, 'node_modules'), join(checkout, 'node_modules'), 'dir');
    await run('npm', ['pack', '--pack-destination', work], { cwd: checkout, maxBuffer: 16 << 20 });
    const tarballs = readdirSync(work).filter((name) => name.endsWith('.tgz'));
    expect(tarballs).toHaveLength(1);

    const project = join(work, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'prewarm-package-test', private: true }));
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(work, tarballs[0]!)], { cwd: project, maxBuffer: 16 << 20 });
    installed = join(project, 'node_modules', 'prewarm');
    bin = join(project, 'node_modules', '.bin', 'prewarm');

    db = await createTestDb({ migrate: false });
    redis = await createTestRedis();
  }, 240_000);

  afterAll(async () => {
    server?.kill('SIGKILL');
    await db?.drop();
    await redis?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('ships the compiled JavaScript, its type declarations and the migrations, not the sources', () => {
    for (const file of ['src/cli/bin.mjs', 'dist/src/cli/main.js', 'dist/src/server.d.ts', 'dist/workers/precompute.js', 'dist/workers/scheduler.js', 'dist/migrations/0001_core.sql']) {
      expect(existsSync(join(installed, file)), file).toBe(true);
    }
    const files = readdirSync(installed, { recursive: true })
      .map(String)
      .filter((file) => !file.startsWith('node_modules'));
    expect(files.filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'))).toEqual([]);
    expect(files.some((file) => file.startsWith('test'))).toBe(false);
    expect(readdirSync(join(installed, 'dist', 'migrations')).sort()).toEqual(MIGRATIONS);
    // The compiled command runs on plain Node: tsx is not even installed.
    expect(existsSync(join(installed, '..', 'tsx'))).toBe(false);
  });

  it('`prewarm migrate` applies every migration to its schema', async () => {
    const { stdout } = await run(bin, ['migrate'], { env: env() });
    expect(stdout).toContain('0001_core');
    const { rows } = await db.pool.query<{ name: string }>(`SELECT name FROM ${db.schema}.prewarm_migrations ORDER BY run_on, id`);
    expect(rows.map((row) => `${row.name}.sql`)).toEqual(MIGRATIONS);
  }, 60_000);

  it('`prewarm serve` answers GET /v1/users/:id/recommendations, then stops on SIGTERM with exit 0', async () => {
    const child = spawn(bin, ['serve'], { env: env(), stdio: ['ignore', 'ignore', 'pipe'] });
    server = child;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

    // The log (JSON lines on stderr) names the address the port 0 was given.
    const log: string[] = [];
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`prewarm serve did not listen within 20 s; its log:\n${log.join('\n')}`)), 20_000);
      child.once('exit', (code) => reject(new Error(`prewarm serve exited with ${code} before listening; its log:\n${log.join('\n')}`)));
      createInterface({ input: child.stderr }).on('line', (line) => {
        log.push(line);
        const entry = parseLogLine(line);
        if (entry?.msg === 'prewarm API listening' && typeof entry.url === 'string') {
          clearTimeout(timer);
          resolve(entry.url);
        }
      });
    });

    const response = await fetch(`${url}/v1/users/package-user/recommendations`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { userId: string; items: unknown[]; source: string };
    expect(body.userId).toBe('package-user');
    expect(Array.isArray(body.items)).toBe(true);

    child.kill('SIGTERM');
    expect(await exited).toEqual({ code: 0, signal: null });
    server = undefined;
    // The shutdown flushed the login and the serve to the package's own schema.
    const logins = await db.pool.query(`SELECT 1 FROM ${db.schema}.logins WHERE user_id = 'package-user'`);
    const serves = await db.pool.query(`SELECT source FROM ${db.schema}.serves WHERE user_id = 'package-user'`);
    expect(logins.rowCount).toBe(1);
    expect(serves.rows).toEqual([{ source: body.source }]);
  }, 60_000);
});

function parseLogLine(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}
