// The HTTP contract under bad input: every refusal is a 4xx in our `{ error: { code, message } }`
// shape, nothing refused is recorded, and nothing gets a 5xx. Each `it` named after a bug
// failed before its fix (issue 12).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/api/app.ts';
import { createApiMetrics } from '../src/api/metrics.ts';
import { idProblem } from '../src/ids.ts';
import { silentLog } from './helpers.ts';
import { createScriptedRecommender } from './support/scripted-recommender.ts';
import { API_TOKEN, createServingHarness, type ServingHarness } from './support/serving-harness.ts';

const auth = { authorization: `Bearer ${API_TOKEN}` };

function expectOurError(response: { statusCode: number; json(): unknown; body: string }, status: number, code?: string): void {
  expect(response.statusCode, response.body).toBe(status);
  const body = response.json() as { error: { code: unknown; message: unknown } };
  expect(Object.keys(body)).toEqual(['error']);
  expect(typeof body.error.code).toBe('string');
  expect(typeof body.error.message).toBe('string');
  expect(body.error.code).toMatch(/^PREWARM_ERR_/);
  if (code) expect(body.error.code).toBe(code);
}

describe('HTTP API under bad input', () => {
  let h: ServingHarness;

  beforeAll(async () => {
    const { recommender } = createScriptedRecommender({ known: ['a', 'b'] }, ['p1', 'p2']);
    h = await createServingHarness(recommender);
  });
  afterAll(async () => h.close());

  async function loginsRecorded(): Promise<string[]> {
    await h.recorder.flush();
    const { rows } = await h.db.pool.query<{ user_id: string }>('SELECT user_id FROM logins ORDER BY user_id');
    return rows.map((row) => row.user_id);
  }

  describe('limit must be a plain decimal integer', () => {
    it.each([
      'Infinity', '-Infinity', '1e1', '0x10', '%205', '5%20', '%2B5', '-5', '5.0', '1_0', '', '%D9%A5', 'true', '[5]', '9'.repeat(400),
    ])('refuses limit=%s with 400', async (limit) => {
      const response = await h.app.inject({ method: 'GET', url: `/v1/users/u/recommendations?limit=${limit}`, headers: auth });
      expectOurError(response, 400, 'PREWARM_ERR_BAD_REQUEST');
      expect(response.json().error.message).toContain('limit');
    });

    it('refuses a repeated limit, even with equal values', async () => {
      for (const query of ['limit=5&limit=6', 'limit=5&limit=5', 'limit[]=5', 'limit=5&lmit=5', 'limit=5&__proto__=1', 'constructor=1']) {
        expectOurError(await h.app.inject({ method: 'GET', url: `/v1/users/u/recommendations?${query}`, headers: auth }), 400, 'PREWARM_ERR_BAD_REQUEST');
      }
    });

    it('takes plain digits, leading zeros included', async () => {
      for (const [limit, items] of [['1', 1], ['02', 2], ['100', 2]] as const) {
        const response = await h.app.inject({ method: 'GET', url: `/v1/users/known/recommendations?limit=${limit}`, headers: auth });
        expect(response.statusCode).toBe(200);
        expect(response.json().items).toHaveLength(items);
      }
    });
  });

  describe('ids of every odd shape', () => {
    // Refused: answered 400 in our shape and never recorded.
    const refused: Array<[string, string]> = [
      ['129 ASCII characters', 'x'.repeat(129)],
      ['2,049 characters (past the router bound, was a 414 in Fastify’s shape)', 'x'.repeat(2_049)],
      ['10 kB', 'y'.repeat(10_240)],
      ['129 emoji', '😀'.repeat(129)],
      ['a NUL', 'a\u0000b'],
      ['a tab', 'a\tb'],
      ['a newline', 'a\nb'],
      ['DEL', 'a\u007fb'],
      ['C1 NEL (U+0085)', 'a\u0085b'],
      ['C1 U+009F', 'a\u009fb'],
      ['LINE SEPARATOR (U+2028)', 'a\u2028b'],
      ['PARAGRAPH SEPARATOR (U+2029)', 'a\u2029b'],
    ];
    it.each(refused)('refuses %s with 400', async (_name, id) => {
      const response = await h.app.inject({ method: 'GET', url: `/v1/users/${encodeURIComponent(id)}/recommendations`, headers: auth });
      expectOurError(response, 400, 'PREWARM_ERR_BAD_REQUEST');
      expect(response.json().error.message).toMatch(/^params\/userId (is longer than 128 characters|contains control characters)$/);
      expect(idProblem(id)).toBeDefined();
      expect(await loginsRecorded()).not.toContain(id);
    });

    it.each([
      ['%zz (bad percent-encoding; was Fastify’s 400 with a string `error`)', '/v1/users/%zz/recommendations'],
      ['a lone %', '/v1/users/a%/recommendations'],
      ['an invalid UTF-8 sequence', '/v1/users/%C3%28/recommendations'],
      ['an encoded surrogate half', '/v1/users/%ED%A0%80/recommendations'],
      ['an empty id', '/v1/users//recommendations'],
    ])('refuses %s with our 400', async (_name, url) => {
      expectOurError(await h.app.inject({ method: 'GET', url, headers: auth }), 400, 'PREWARM_ERR_BAD_REQUEST');
    });

    // Accepted: opaque ids, echoed exactly, recorded exactly, never interpreted.
    const accepted: Array<[string, string]> = [
      ['128 ASCII characters', 'x'.repeat(128)],
      ['128 emoji (256 UTF-16 units; counted as 128, like the importer)', '😀'.repeat(128)],
      ['unicode', 'Zoë-ßü-東京'],
      ['an encoded NUL sent double-encoded (the text %00)', '%00'],
      ['double-encoded text', '%2541'],
      ['SQL metacharacters', "x'); DROP TABLE logins;--"],
      ['SQL comment and quotes', '" OR 1=1 /* \\'],
      ['shell metacharacters', '$(rm -rf /) `id` ; | & > <'],
      ['path traversal', '../../etc/passwd'],
      ['path traversal, backslashes', '..\\..\\windows'],
      ['a bidi override (a format character, not a control)', 'abc\u202edef'],
    ];
    it.each(accepted)('serves %s, echoed and recorded exactly', async (_name, id) => {
      const response = await h.app.inject({ method: 'GET', url: `/v1/users/${encodeURIComponent(id)}/recommendations`, headers: auth });
      expect(response.statusCode, response.body).toBe(200);
      expect(response.json().userId).toBe(id);
      expect(idProblem(id)).toBeUndefined();
      expect(await loginsRecorded()).toContain(id);
    });

    it('a traversal written as path segments is not a route', async () => {
      const response = await h.app.inject({ method: 'GET', url: '/v1/users/../../metrics/recommendations', headers: auth });
      expect(response.statusCode).toBe(404);
      expectOurError(response, 404, 'PREWARM_ERR_NOT_FOUND');
    });
  });

  describe('methods', () => {
    it.each(['HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const)('refuses %s with 405 and records nothing', async (method) => {
      const before = h.recorder.pending();
      const loginsBefore = await loginsRecorded();
      const response = await h.app.inject({ method, url: '/v1/users/head-user/recommendations', headers: auth });
      expect(response.statusCode).toBe(405);
      expect(response.headers.allow).toBe('GET');
      if (method !== 'HEAD') expectOurError(response, 405, 'PREWARM_ERR_METHOD_NOT_ALLOWED');
      expect(h.recorder.pending()).toBe(before);
      expect(await loginsRecorded()).toEqual(loginsBefore);
      const { rows } = await h.db.pool.query(`SELECT count(*)::int AS n FROM serves WHERE user_id = 'head-user'`);
      expect(rows[0].n).toBe(0);
    });

    it('refuses HEAD without a token with 401, recording nothing', async () => {
      const response = await h.app.inject({ method: 'HEAD', url: '/v1/users/head-user/recommendations' });
      expect(response.statusCode).toBe(401);
      expect(await loginsRecorded()).not.toContain('head-user');
    });
  });

  describe('bodies and headers', () => {
    it('ignores a GET body: it is not read, and the request is answered', async () => {
      const response = await h.app.inject({
        method: 'GET',
        url: '/v1/users/u/recommendations',
        headers: { ...auth, 'content-type': 'application/json' },
        payload: JSON.stringify({ pad: 'x'.repeat(100_000) }),
      });
      expect(response.statusCode).toBe(200);
    });

    it('refuses a large body with 413 in our shape', async () => {
      const response = await h.app.inject({
        method: 'POST',
        url: '/v1/users/u/recommendations',
        headers: { ...auth, 'content-type': 'application/json' },
        payload: JSON.stringify({ pad: 'x'.repeat(100_000) }),
      });
      expectOurError(response, 413, 'PREWARM_ERR_TOO_LARGE');
    });

    it('refuses a body of an unknown type with a 4xx in our shape', async () => {
      const response = await h.app.inject({ method: 'POST', url: '/v1/users/u/recommendations', headers: { ...auth, 'content-type': 'text/x-nonsense' }, payload: 'hi' });
      expect(response.statusCode).toBeGreaterThanOrEqual(400);
      expect(response.statusCode).toBeLessThan(500);
      expectOurError(response, response.statusCode);
    });

    it.each([
      ['an empty bearer', 'Bearer '],
      ['a 10 kB token', `Bearer ${'t'.repeat(10_240)}`],
      ['two tokens', `Bearer ${API_TOKEN} ${API_TOKEN}`],
      ['a token with a control character', `Bearer ${API_TOKEN}\u0001`],
      ['the token as a prefix', `Bearer ${API_TOKEN}x`],
      ['a prefix of the token', `Bearer ${API_TOKEN.slice(0, -1)}`],
    ])('refuses %s with 401', async (_name, authorization) => {
      const response = await h.app.inject({ method: 'GET', url: '/v1/users/u/recommendations', headers: { authorization } });
      expectOurError(response, 401, 'PREWARM_ERR_UNAUTHORIZED');
    });
  });

  it('nothing refused above was recorded: every recorded id passes the id rule', async () => {
    for (const id of await loginsRecorded()) expect(idProblem(id), JSON.stringify(id)).toBeUndefined();
  });
});

describe('operator endpoints', () => {
  const ADMIN = 'admin-token-0123456789abcdef';

  async function appWith(readiness: Record<string, () => Promise<void>>, adminToken: string | undefined = ADMIN) {
    const { recommender } = createScriptedRecommender({});
    const service = { getRecommendations: async () => { throw new Error('not used'); }, inFlight: () => 0, close: async () => {} };
    return buildApp({
      service: service as never,
      metrics: createApiMetrics({ defaultMetrics: false }),
      log: silentLog,
      options: { apiTokens: [API_TOKEN], adminToken, defaultLimit: 10, maxLimit: 100 },
      readiness: { ...readiness, recommender: async () => void (await recommender.popular(new Date(), 1)) },
    });
  }

  it('/readyz names the failing check and nothing of its error (was the raw error text)', async () => {
    const secretText = 'connect ECONNREFUSED db.internal.example:5432 password authentication failed for user "svc_prewarm"';
    const app = await appWith({ postgres: async () => { throw new Error(secretText); }, redis: async () => {} });
    const response = await app.inject({ url: '/readyz' });
    expect(response.statusCode).toBe(503);
    expect(response.json()).toEqual({ status: 'unavailable', failures: ['postgres'] });
    for (const word of ['ECONNREFUSED', 'db.internal', 'svc_prewarm', 'password']) expect(response.body).not.toContain(word);
    await app.close();
  });

  it('/metrics wants the admin token when one is set; a service token does not open it', async () => {
    const app = await appWith({});
    expectOurError(await app.inject({ url: '/metrics' }), 401, 'PREWARM_ERR_UNAUTHORIZED');
    expectOurError(await app.inject({ url: '/metrics', headers: auth }), 401, 'PREWARM_ERR_UNAUTHORIZED');
    expect((await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${ADMIN}` } })).statusCode).toBe(200);
    // ... and the admin token is not a service token.
    expectOurError(await app.inject({ url: '/v1/users/u/recommendations', headers: { authorization: `Bearer ${ADMIN}` } }), 401);
    await app.close();
  });
});
