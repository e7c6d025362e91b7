import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { VirtualClock } from '../src/clock.ts';
import { isPrewarmError } from '../src/errors.ts';
import { latestOccurrence, nextOccurrence, validateSchedule } from '../src/planner/cron.ts';
import { createWindowStore, resolveWindow } from '../src/planner/windows.ts';
import { createTestDb, TEST_DATABASE_URL, TEST_REDIS_URL, type TestDb } from './helpers.ts';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../src/cli/bin.mjs', import.meta.url));

function refusal(work: () => unknown): { code: string; message: string } {
  try {
    work();
  } catch (error) {
    if (isPrewarmError(error)) return { code: error.code, message: error.message };
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('window validation', () => {
  it.each([
    ['61 * * * *', /invalid cron expression "61 \* \* \* \*"/],
    ['every night', /invalid cron expression/],
    ['', /cron expression is empty/],
    ['0 2 1 * MON', /restricts both day-of-month and day-of-week/],
  ])('refuses the cron expression %j', (cron, message) => {
    const { code, message: text } = refusal(() => resolveWindow('nightly', { cron }));
    expect(code).toBe('PREWARM_ERR_BAD_WINDOW');
    expect(text).toMatch(message);
  });

  it('refuses an unknown time zone', () => {
    const { code, message } = refusal(() => resolveWindow('nightly', { cron: '0 2 * * *', timezone: 'Mars/Olympus_Mons' }));
    expect(code).toBe('PREWARM_ERR_BAD_WINDOW');
    expect(message).toContain('unknown time zone "Mars/Olympus_Mons"');
  });

  it.each([['0h'], ['-5m'], ['24'], ['soon'], [0], [-1]])('refuses the TTL %j', (ttl) => {
    const { code, message } = refusal(() => resolveWindow('nightly', { cron: '0 2 * * *', ttl }));
    expect(code).toBe('PREWARM_ERR_BAD_WINDOW');
    expect(message).toMatch(/^ttl/);
  });

  it('refuses an unknown or malformed policy with the syntax', () => {
    const unknown = refusal(() => resolveWindow('nightly', { cron: '0 2 * * *', policy: 'magic:3' }));
    expect(unknown.code).toBe('PREWARM_ERR_BAD_POLICY');
    expect(unknown.message).toContain('threshold:P[,coverage:F|,waste:F] | budget:N | coverage:F[,fixed] | waste:F[,fixed]');
    expect(refusal(() => resolveWindow('nightly', { cron: '0 2 * * *', policy: 'threshold:1.5' })).code).toBe('PREWARM_ERR_BAD_POLICY');
  });

  it('refuses bad names, chunk sizes, priorities and holdout rates, and a new window without cron', () => {
    expect(refusal(() => resolveWindow('night ly', { cron: '0 2 * * *' })).message).toMatch(/window name/);
    expect(refusal(() => resolveWindow('nightly', { cron: '0 2 * * *', chunkSize: 0 })).message).toMatch(/chunk size/);
    expect(refusal(() => resolveWindow('nightly', { cron: '0 2 * * *', priority: 101 })).message).toMatch(/priority/);
    expect(refusal(() => resolveWindow('nightly', { cron: '0 2 * * *', holdoutRate: 0.9 })).message).toMatch(/holdout rate/);
    expect(refusal(() => resolveWindow('nightly', {})).message).toMatch(/--cron is required/);
  });

  it('accepts standard expressions, 6-field ones with seconds, and names', () => {
    for (const cron of ['0 2 * * *', '*/15 * * * *', '30 0 2 * * *', '0 6 * * MON-FRI', '0 3 1 * *', '@daily']) {
      expect(() => validateSchedule(cron, 'UTC')).not.toThrow();
    }
  });

  it('defaults: UTC, TTL 24 h, horizon = TTL, coverage:0.8; horizon alone sets the TTL too', () => {
    const window = resolveWindow('nightly', { cron: '0 2 * * *' });
    expect(window).toMatchObject({ timezone: 'UTC', ttlMs: 86_400_000, horizonMs: 86_400_000, policy: { kind: 'coverage', target: 0.8 }, chunkSize: 500, enabled: true });
    expect(resolveWindow('hourly', { cron: '0 * * * *', horizon: '1h' })).toMatchObject({ ttlMs: 3_600_000, horizonMs: 3_600_000 });
    expect(resolveWindow('w', { cron: '0 * * * *', ttl: '90m' })).toMatchObject({ ttlMs: 5_400_000, horizonMs: 5_400_000 });
  });
});

describe('occurrences', () => {
  it('finds the latest occurrence at or before an instant, in the window time zone', () => {
    const at = new Date('2024-01-10T12:00:00Z');
    expect(latestOccurrence('0 2 * * *', 'UTC', at)?.toISOString()).toBe('2024-01-10T02:00:00.000Z');
    // 02:00 in Paris is 01:00 UTC in winter, 00:00 UTC in summer.
    expect(latestOccurrence('0 2 * * *', 'Europe/Paris', at)?.toISOString()).toBe('2024-01-10T01:00:00.000Z');
    expect(latestOccurrence('0 2 * * *', 'Europe/Paris', new Date('2024-07-10T12:00:00Z'))?.toISOString()).toBe('2024-07-10T00:00:00.000Z');
    // An occurrence exactly at the instant counts.
    expect(latestOccurrence('0 2 * * *', 'UTC', new Date('2024-01-10T02:00:00Z'))?.toISOString()).toBe('2024-01-10T02:00:00.000Z');
    expect(nextOccurrence('0 2 * * *', 'UTC', new Date('2024-01-10T02:00:00Z'))?.toISOString()).toBe('2024-01-11T02:00:00.000Z');
  });
});

describe('window store', () => {
  let db: TestDb | undefined;
  afterEach(async () => {
    await db?.drop();
    db = undefined;
  });

  it('creates, changes only the given settings, enables, disables and deletes', async () => {
    db = await createTestDb();
    const clock = new VirtualClock(Date.parse('2024-03-01T00:00:00Z'));
    const store = createWindowStore({ pool: db.pool, clock });
    const created = await store.set('nightly', { cron: '0 2 * * *', timezone: 'Europe/Paris', ttl: '24h', policy: 'threshold:0.2' });
    expect(created.created).toBe(true);
    expect(created.window).toMatchObject({ name: 'nightly', cron: '0 2 * * *', timezone: 'Europe/Paris', ttlMs: 86_400_000, policy: { kind: 'threshold', p: 0.2 } });

    clock.advance(60_000);
    const changed = await store.set('nightly', { policy: 'budget:100', chunkSize: 250 });
    expect(changed.created).toBe(false);
    expect(changed.window).toMatchObject({ cron: '0 2 * * *', timezone: 'Europe/Paris', policy: { kind: 'budget', n: 100 }, chunkSize: 250, holdoutRate: 0.01 });
    expect(changed.window.updatedAt.toISOString()).toBe('2024-03-01T00:01:00.000Z');

    expect((await store.setEnabled('nightly', false)).enabled).toBe(false);
    expect(await store.listEnabled()).toEqual([]);
    expect((await store.setEnabled('nightly', true)).enabled).toBe(true);
    expect((await store.listEnabled()).map((w) => w.name)).toEqual(['nightly']);

    await store.delete('nightly');
    expect(await store.list()).toEqual([]);
    await expect(store.require('nightly')).rejects.toMatchObject({ code: 'PREWARM_ERR_UNKNOWN_WINDOW' });
    await expect(store.setEnabled('nightly', true)).rejects.toMatchObject({ code: 'PREWARM_ERR_UNKNOWN_WINDOW' });
    await expect(store.delete('nightly')).rejects.toMatchObject({ code: 'PREWARM_ERR_UNKNOWN_WINDOW' });
  });

  it('a refused change leaves the stored window as it was', async () => {
    db = await createTestDb();
    const store = createWindowStore({ pool: db.pool, clock: new VirtualClock(0) });
    await store.set('nightly', { cron: '0 2 * * *' });
    await expect(store.set('nightly', { cron: '0 2 * * *', timezone: 'Nowhere/Land' })).rejects.toMatchObject({ code: 'PREWARM_ERR_BAD_WINDOW' });
    await expect(store.set('nightly', { ttl: '0s' })).rejects.toMatchObject({ code: 'PREWARM_ERR_BAD_WINDOW' });
    await expect(store.set('nightly', { policy: 'bogus' })).rejects.toMatchObject({ code: 'PREWARM_ERR_BAD_POLICY' });
    expect(await store.require('nightly')).toMatchObject({ timezone: 'UTC', ttlMs: 86_400_000, policy: { kind: 'coverage', target: 0.8 } });
  });

  it('prewarm windows set/list on the command line; a bad configuration exits non-zero with one line', async () => {
    db = await createTestDb();
    const env = { ...process.env, DATABASE_URL: TEST_DATABASE_URL, REDIS_URL: TEST_REDIS_URL, PREWARM_DB_SCHEMA: db.schema, PREWARM_LOG_LEVEL: 'silent' };
    const ok = await run(process.execPath, [BIN, 'windows', 'set', 'nightly', '--cron', '0 2 * * *', '--tz', 'Europe/Paris', '--ttl', '24h', '--policy', 'coverage:0.8', '--chunk-size', '200'], { env });
    expect(ok.stdout).toMatch(/^window created: nightly: "0 2 \* \* \*" Europe\/Paris, horizon 1d, ttl 1d, policy coverage:0.8, chunks of 200/);

    const bad = await run(process.execPath, [BIN, 'windows', 'set', 'nightly', '--cron', '61 * * * *'], { env }).catch((error: { code: number; stderr: string }) => error);
    expect('code' in bad && bad.code).not.toBe(0);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toContain('PREWARM_ERR_BAD_WINDOW: invalid cron expression "61 * * * *"');

    const listed = await run(process.execPath, [BIN, 'windows', 'list', '--json'], { env });
    expect(JSON.parse(listed.stdout)).toEqual([
      expect.objectContaining({ name: 'nightly', cron: '0 2 * * *', timezone: 'Europe/Paris', ttl: '1d', policy: 'coverage:0.8', chunkSize: 200, lastRun: null }),
    ]);
  }, 60_000);
});
