// A long-running process that cannot do its job must say why in one line and exit non-zero,
// not linger holding connections (`prewarm serve` on a port in use used to keep running).
import net from 'node:net';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { TEST_DATABASE_URL, TEST_REDIS_URL, createTestDb, type TestDb } from './helpers.ts';
import { freePort } from './support/own-servers.ts';
import { spawnPrewarm } from './support/prewarm-process.ts';

const TOKEN = 'startup-test-token-0123456789';

interface Outcome {
  code: number | string;
  /** The lines of stderr that are the CLI's own messages (not log lines). */
  messages: string[];
  message: string | undefined;
}

async function start(command: string, env: Record<string, string>): Promise<Outcome> {
  const child = spawnPrewarm([command], { PREWARM_API_TOKENS: TOKEN, PREWARM_LOG_LEVEL: 'error', ...env });
  // A process that lingers instead of exiting is killed, which shows as a signal, not an exit code.
  const timer = setTimeout(() => child.child.kill('SIGKILL'), 30_000);
  const code = await child.exited;
  clearTimeout(timer);
  const lines = child.stderr().trim().split('\n');
  const messages = lines.filter((line) => line.startsWith('prewarm'));
  return { code, messages, message: messages[0] };
}

// Each case is a process of its own that mostly waits: run them side by side.
describe.concurrent('start-up failures: one line, non-zero exit', () => {
  let db: TestDb;
  let base: Record<string, string>;

  beforeAll(async () => {
    db = await createTestDb();
    base = { DATABASE_URL: TEST_DATABASE_URL, REDIS_URL: TEST_REDIS_URL, PREWARM_DB_SCHEMA: db.schema };
  });
  afterAll(() => db?.drop());

  it('serve: port in use', async ({ expect }) => {
    const blocker = net.createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    try {
      const outcome = await start('serve', { ...base, PORT: String(port) });
      expect(typeof outcome.code === 'number' && outcome.code !== 0, `exit ${outcome.code}`).toBe(true);
      expect(outcome.messages).toHaveLength(1);
      expect(outcome.message).toMatch(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} .*the port is in use`));
    } finally {
      blocker.close();
    }
  });

  describe.each(['serve', 'worker', 'scheduler'])('%s', (command) => {
    it('Postgres unreachable', async ({ expect }) => {
      const port = await freePort();
      const outcome = await start(command, { ...base, DATABASE_URL: `postgres://prewarm:s3cret-pw@127.0.0.1:${port}/test`, PORT: String(await freePort()) });
      expect(typeof outcome.code === 'number' && outcome.code !== 0, `exit ${outcome.code}`).toBe(true);
      expect(outcome.messages).toHaveLength(1);
      expect(outcome.message).toMatch(/PREWARM_ERR_SERVICE_UNAVAILABLE: cannot use Postgres at .*ECONNREFUSED/);
      // The connection string's password never reaches the output.
      expect(outcome.message).not.toContain('s3cret-pw');
    });

    it('Redis unreachable', async ({ expect }) => {
      const port = await freePort();
      const outcome = await start(command, { ...base, REDIS_URL: `redis://127.0.0.1:${port}`, PORT: String(await freePort()) });
      expect(typeof outcome.code === 'number' && outcome.code !== 0, `exit ${outcome.code}`).toBe(true);
      expect(outcome.messages).toHaveLength(1);
      expect(outcome.message).toMatch(/PREWARM_ERR_SERVICE_UNAVAILABLE: cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+.*ECONNREFUSED/);
    });

    it('migrations missing', async ({ expect }) => {
      const outcome = await start(command, { ...base, PREWARM_DB_SCHEMA: 'never_migrated_schema', PORT: String(await freePort()) });
      expect(typeof outcome.code === 'number' && outcome.code !== 0, `exit ${outcome.code}`).toBe(true);
      expect(outcome.messages).toHaveLength(1);
      expect(outcome.message).toMatch(/PREWARM_ERR_MIGRATION: .*schema never_migrated_schema.* run `prewarm migrate` first/);
    });

    it('a bad config value', async ({ expect }) => {
      const outcome = await start(command, { ...base, PREWARM_WORKER_CONCURRENCY: 'many', PORT: String(await freePort()) });
      expect(outcome.code).toBe(2);
      expect(outcome.messages).toHaveLength(1);
      expect(outcome.message).toMatch(/PREWARM_ERR_CONFIG: invalid configuration: PREWARM_WORKER_CONCURRENCY/);
    });
  });
}, 120_000);
