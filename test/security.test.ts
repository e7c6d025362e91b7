// Credentials never reach a log line or an error message; tokens are separated by role; the
// model-service adapter authenticates; no SQL is built from input.
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { configSecrets, createLogger, redactSecrets } from '../src/log.ts';
import { createHttpRecommender } from '../src/recommender/http.ts';
import { TEST_DATABASE_URL, TEST_REDIS_URL, createTestDb, silentLog, type TestDb } from './helpers.ts';
import { freePort } from './support/own-servers.ts';
import { spawnPrewarm, waitUntilAnswering } from './support/prewarm-process.ts';

function capturingLogger(secrets: readonly string[] = []) {
  const lines: string[] = [];
  const log = createLogger({ level: 'trace', destination: { write: (line: string) => void lines.push(line) }, secrets });
  return { log, lines };
}

// Passwords as a URL's userinfo may hold them: anything, percent-encoded where needed.
const password = fc.string({ minLength: 4, maxLength: 24, unit: 'grapheme-ascii' }).filter((text) => text.trim().length >= 4);

describe('log redaction', () => {
  it('scrubs a URL password at any depth, in messages, errors and stacks', () => {
    fc.assert(
      fc.property(password, fc.integer({ min: 0, max: 6 }), fc.constantFrom('postgres', 'postgresql', 'redis', 'rediss', 'https'), (secret, depth, scheme) => {
        const url = `${scheme}://svc:${encodeURIComponent(secret)}@db.internal:5432/prod`;
        const { log, lines } = capturingLogger();
        let nested: unknown = { url };
        for (let i = 0; i < depth; i++) nested = { [`level${i}`]: nested, list: [nested] };
        log.error({ nested, err: new Error(`connect to ${url} failed`) }, `cannot reach ${url}`);
        log.info(`plain message with ${url}`);
        const encoded = encodeURIComponent(secret);
        for (const line of lines) {
          expect(line).not.toContain(`:${encoded}@`);
          expect(line).toContain('svc:[redacted]@db.internal');
          JSON.parse(line); // still one valid JSON line
        }
      }),
      { numRuns: 200 },
    );
  });

  it('scrubs bearer tokens, secret-named fields at any depth and known secret values', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9._~+/-]{16,40}$/), fc.integer({ min: 0, max: 5 }), (token, depth) => {
        const { log, lines } = capturingLogger([token]);
        let nested: Record<string, unknown> = { headers: { authorization: `Bearer ${token}` }, apiTokens: [token], adminToken: token, PREWARM_API_TOKENS: token };
        for (let i = 0; i < depth; i++) nested = { inner: nested };
        log.warn({ nested }, 'request refused');
        log.warn(`the token ${token} was refused`); // a bare known value in free text
        log.error({ err: new Error(`upstream said: Authorization: Bearer ${token}`) }, 'call failed');
        for (const line of lines) expect(line).not.toContain(token);
      }),
      { numRuns: 200 },
    );
  });

  it('leaves ordinary text alone', () => {
    const text = '{"msg":"served u0042 from https://example.com/a:b in 3 ms","user":"u1","tokenCount":3}';
    expect(redactSecrets(text)).toBe(text.replace('"tokenCount":3', '"tokenCount":3'));
    expect(redactSecrets('postgres://postgres@127.0.0.1:5432/test')).toBe('postgres://postgres@127.0.0.1:5432/test');
  });

  it('collects the secrets of a configuration', () => {
    const config = loadConfig({
      DATABASE_URL: 'postgres://svc:p%40ss-word@127.0.0.1:5432/test',
      REDIS_URL: 'redis://:redis-secret@127.0.0.1:6379',
      PREWARM_API_TOKENS: 'service-token-0123456789',
      PREWARM_ADMIN_TOKEN: 'admin-token-0123456789ab',
      PREWARM_RECOMMENDER_TOKEN: 'model-token-xyz',
    });
    expect(configSecrets(config)).toEqual(expect.arrayContaining(['p%40ss-word', 'p@ss-word', 'redis-secret', 'service-token-0123456789', 'admin-token-0123456789ab', 'model-token-xyz']));
  });
});

describe('processes with a password in DATABASE_URL', () => {
  const SECRET = 'Sup3r-Secret-Pw-42';
  const API_TOKEN = 'security-test-token-0123456789';
  let db: TestDb;

  beforeAll(async () => {
    db = await createTestDb();
  });
  afterAll(() => db?.drop());

  function withPassword(url: string, secret = SECRET): string {
    const parsed = new URL(url);
    parsed.username = parsed.username || 'postgres';
    parsed.password = secret;
    return parsed.toString();
  }

  it.concurrent('serve, unable to reach Postgres, logs at trace and exits without printing it', async () => {
    const port = await freePort();
    const child = spawnPrewarm(['serve'], {
      DATABASE_URL: withPassword(`postgres://postgres@127.0.0.1:${port}/test`),
      REDIS_URL: TEST_REDIS_URL,
      PREWARM_API_TOKENS: API_TOKEN,
      PREWARM_LOG_LEVEL: 'trace',
      PORT: String(await freePort()),
    });
    const timer = setTimeout(() => child.child.kill('SIGKILL'), 20_000);
    expect(await child.exited).not.toBe(0);
    clearTimeout(timer);
    expect(child.stderr()).toMatch(/prewarm: /);
    expect(child.stderr()).not.toContain(SECRET);
    expect(child.stderr()).not.toContain(API_TOKEN);
  });

  it.concurrent('migrate on a database that does not exist: one line, no password', async () => {
    const child = spawnPrewarm(['migrate'], { DATABASE_URL: withPassword(TEST_DATABASE_URL.replace(/\/[^/]*$/, '/no_such_database_prewarm')), PREWARM_LOG_LEVEL: 'trace' });
    expect(await child.exited).not.toBe(0);
    const messages = child.stderr().trim().split('\n').filter((line) => line.startsWith('prewarm'));
    expect(messages).toHaveLength(1);
    expect(child.stderr()).not.toContain(SECRET);
  });

  it('serve, running, with refused and failing requests: no line holds a password or a token', async () => {
    const port = await freePort();
    const ADMIN = 'admin-token-for-security-test-0123';
    const child = spawnPrewarm(['serve'], {
      DATABASE_URL: withPassword(TEST_DATABASE_URL),
      REDIS_URL: TEST_REDIS_URL,
      PREWARM_DB_SCHEMA: db.schema,
      PREWARM_API_TOKENS: API_TOKEN,
      PREWARM_ADMIN_TOKEN: ADMIN,
      PREWARM_LOG_LEVEL: 'trace',
      PORT: String(port),
    });
    try {
      const base = `http://127.0.0.1:${port}`;
      await waitUntilAnswering(`${base}/healthz`, child);
      const auth = { authorization: `Bearer ${API_TOKEN}` };
      await fetch(`${base}/v1/users/u1/recommendations`, { headers: auth });
      await fetch(`${base}/v1/users/u1/recommendations`, { headers: { authorization: `Bearer ${SECRET}-wrong` } });
      await fetch(`${base}/v1/users/%zz/recommendations`, { headers: auth });
      await fetch(`${base}/metrics`, { headers: auth });
      await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } });
      await fetch(`${base}/readyz`);
    } finally {
      await child.stop('SIGTERM');
    }
    const stderr = child.stderr();
    expect(stderr.length).toBeGreaterThan(0);
    for (const secret of [SECRET, API_TOKEN, ADMIN]) expect(stderr).not.toContain(secret);
  });
});

describe('bad environment values', () => {
  it.concurrent.each([
    ['PORT', 'abc'],
    ['PREWARM_ON_DEMAND_TTL', '99999999999999999999d'],
    ['PREWARM_MAX_LIMIT', '1e1x'],
    ['PREWARM_RECOMMENDER_TOKEN', 'two words'],
  ])('%s=%j: one line naming it, exit 2', async (name, value) => {
    const child = spawnPrewarm(['migrate'], { [name]: value });
    expect(await child.exited).toBe(2);
    const lines = child.stderr().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^prewarm: PREWARM_ERR_CONFIG: invalid configuration: ${name}: `));
  });
});

describe('tokens by role', () => {
  it('refuses an admin token that is also a service token', () => {
    const token = 'shared-token-0123456789abcdef';
    expect(() => loadConfig({ PREWARM_API_TOKENS: `other-token-0123456789,${token}`, PREWARM_ADMIN_TOKEN: token })).toThrow(
      /PREWARM_ADMIN_TOKEN: must differ from every PREWARM_API_TOKENS token/,
    );
  });

  it('refuses a recommender token a header cannot carry, without echoing it', () => {
    for (const bad of ['has space-in-it', 'line\r\nbreak', 'tab\there']) {
      let message = '';
      try {
        loadConfig({ PREWARM_RECOMMENDER_TOKEN: bad });
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toMatch(/^invalid configuration: PREWARM_RECOMMENDER_TOKEN: must be printable ASCII without spaces$/);
    }
  });
});

describe('model-service adapter authentication', () => {
  let server: Server;
  let url: string;
  const seen: Array<string | undefined> = [];

  beforeAll(async () => {
    server = createServer((request: IncomingMessage, response) => {
      seen.push(request.headers.authorization);
      response.setHeader('content-type', 'application/json');
      response.end(request.url?.startsWith('/popular') ? '{"items":[{"itemId":"p","score":1}]}' : '{"modelVersion":"m1","results":{}}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('sends PREWARM_RECOMMENDER_TOKEN as a bearer token on every call, and nothing without one', async () => {
    const config = loadConfig({ PREWARM_RECOMMENDER: 'http', PREWARM_RECOMMENDER_URL: url, PREWARM_RECOMMENDER_TOKEN: 'model-service-token' });
    const withToken = createHttpRecommender({ url, timeoutMs: 2_000, token: config.recommenderToken, log: silentLog });
    await withToken.recommend(['u1'], new Date('2024-01-01T00:00:00Z'), 3); // /recommend, then /popular for the missing user
    expect(seen).toEqual(['Bearer model-service-token', 'Bearer model-service-token']);
    seen.length = 0;
    const without = createHttpRecommender({ url, timeoutMs: 2_000, log: silentLog });
    await without.recommend(['u1'], new Date('2024-01-01T00:00:00Z'), 3);
    expect(seen).toEqual([undefined, undefined]);
  });
});

describe('no SQL built from input', () => {
  // Every `${…}` inside a SQL template literal in src/ and workers/ must be a constant
  // (UPPER_CASE), a call to a quoting function, a choice between literals, or one of the
  // expressions below, each with the reason it carries no input. Anything else must be a $n
  // parameter.
  const SAFE_SHAPES = [
    /^[A-Z][A-Z0-9_]*$/, // a constant: column lists, fragments, table names
    /^(?:quoteIdent|quoteTimestamp|sqlLiteral)\(/, // escapes its argument as an identifier or a literal
    /^[^?`$]+ \? '[^']*' : '[^']*'$/, // a literal fragment chosen by a condition
  ];
  const ALLOWED: Record<string, string> = {
    from: 'src/activity/user-activity.ts: a constant table name or a literal fragment chosen in code',
    'source.table': 'src/activity/user-activity.ts: the importer\'s constant staging table, checked against SAFE_TABLE',
    knownSince: 'src/activity/user-activity.ts: a literal fragment chosen in code',
    firstVouched: 'src/activity/user-activity.ts: a literal fragment chosen in code',
    perUserFrom: 'src/activity/user-activity.ts: a literal fragment chosen in code',
    done: 'src/planner/sql.ts: a constant SQL fragment',
    last: 'src/planner/sql.ts: a constant SQL fragment',
    "finalStatus('precomputed', 'failed')": 'src/planner/sql.ts: built from literal column names',
    "finalStatus('b.precomputed + c.precomputed', 'b.failed + c.failed')": 'src/planner/sql.ts: built from literal column names',
    before: 'src/propensity/state-store.ts: COPY takes no parameters; an ISO string made from a Date',
    query: 'src/propensity/copy-rows.ts: COPY (query) takes no parameters; its callers build the query from literals and sqlLiteral',
    "shardFilter('user_id', shard)": 'src/propensity/copy-rows.ts: a literal column and two integers it checks',
    'activityBeforeText(at)': 'src/propensity/recency-scorer.ts: its argument is a quoted literal',
    'Math.max(1, Math.floor(ms))': 'src/maintenance/sql.ts: an integer',
    "dayStart('$1')": 'src/maintenance/sql.ts: a fixed cast of the $1 parameter',
    "dayStart('$2')": 'src/maintenance/sql.ts: a fixed cast of the $2 parameter',
  };
  const isSafe = (expression: string) => expression in ALLOWED || SAFE_SHAPES.some((shape) => shape.test(expression));
  // Upper case: the project writes SQL keywords in capitals, and messages like `create ${name}` are not SQL.
  const SQL_START = /^\s*(?:SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|WITH|ALTER|COPY|TRUNCATE|SET|LOCK|GRANT|ANALYZE|VACUUM|DO|BEGIN|REFRESH)\b/;

  it('interpolates only allow-listed, input-free expressions into SQL text', () => {
    const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', 'src', 'workers'], { encoding: 'utf8' })
      .split('\n')
      .filter((file) => /\.(?:ts|mts)$/.test(file));
    const offending: string[] = [];
    for (const file of files) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        continue; // listed but deleted in the working tree
      }
      for (const literal of text.matchAll(/`((?:[^`\\]|\\.)*)`/gs)) {
        const body = literal[1] ?? '';
        if (!SQL_START.test(body)) continue;
        for (const interpolation of body.matchAll(/\$\{([^}]*)\}/g)) {
          const expression = (interpolation[1] ?? '').trim();
          if (!isSafe(expression)) offending.push(`${file}: \${${expression}}`);
        }
      }
      // A query assembled by concatenation: `.query('SELECT …' + x)`.
      for (const match of text.matchAll(/\.query\(\s*(['"])(?:(?!\1).)*\1\s*\+/g)) offending.push(`${file}: concatenation ${match[0]}`);
    }
    expect(offending, 'use a $n parameter, or allow-list the expression with the reason it carries no input').toEqual([]);
  });
});
