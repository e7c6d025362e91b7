import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createScriptedRecommender } from './support/scripted-recommender.ts';
import { API_TOKEN, createServingHarness, type ServingHarness } from './support/serving-harness.ts';

describe('HTTP API', () => {
  let h: ServingHarness;
  const auth = { authorization: `Bearer ${API_TOKEN}` };

  beforeAll(async () => {
    const { recommender } = createScriptedRecommender({ 'user 1': ['a', 'b', 'c'], 'ü/ß,1': ['z'] }, ['p1', 'p2']);
    h = await createServingHarness(recommender);
  });
  afterAll(async () => h.close());

  it('returns the documented shape', async () => {
    const response = await h.app.inject({ method: 'GET', url: '/v1/users/user%201/recommendations?limit=2', headers: auth });
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(body).toEqual({
      userId: 'user 1',
      items: [
        { itemId: 'a', score: 1 },
        { itemId: 'b', score: 0.99 },
      ],
      source: 'on_demand',
      computedAt: '2024-03-01T12:00:00.000Z',
      expiresAt: '2024-03-01T13:00:00.000Z',
      stalenessMs: 0,
      behind: false,
      missedInteractions: 0,
      modelVersion: 'scripted-v1',
    });
  });

  it('uses the default limit and accepts any printable id', async () => {
    const response = await h.app.inject({ method: 'GET', url: `/v1/users/${encodeURIComponent('ü/ß,1')}/recommendations`, headers: auth });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ userId: 'ü/ß,1', items: [{ itemId: 'z' }] });
  });

  it('says why it served popular items', async () => {
    const response = await h.app.inject({ method: 'GET', url: '/v1/users/newcomer/recommendations?limit=5', headers: auth });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ source: 'fallback', reason: 'unknown_user', computedAt: null, expiresAt: null, stalenessMs: null, behind: false, missedInteractions: null });
  });

  it.each([
    ['no header', {}],
    ['a wrong token', { authorization: 'Bearer not-the-right-token-at-all' }],
    ['another scheme', { authorization: `Basic ${API_TOKEN}` }],
  ])('refuses %s with 401', async (_name, headers) => {
    const response = await h.app.inject({ method: 'GET', url: '/v1/users/user%201/recommendations', headers });
    expect(response.statusCode).toBe(401);
    expect(response.headers['www-authenticate']).toContain('Bearer');
    expect(response.json()).toEqual({ error: { code: 'PREWARM_ERR_UNAUTHORIZED', message: 'missing or invalid bearer token' } });
  });

  it.each([
    ['an empty user id', '/v1/users//recommendations'],
    ['a user id over 128 characters', `/v1/users/${'x'.repeat(129)}/recommendations`],
    ['a control character', '/v1/users/a%01b/recommendations'],
    ['a NUL', '/v1/users/a%00b/recommendations'],
    ['limit 0', '/v1/users/u/recommendations?limit=0'],
    ['limit 101', '/v1/users/u/recommendations?limit=101'],
    ['limit 1.5', '/v1/users/u/recommendations?limit=1.5'],
    ['limit abc', '/v1/users/u/recommendations?limit=abc'],
    ['an unknown parameter', '/v1/users/u/recommendations?lmit=3'],
  ])('answers %s with 400 and a JSON error', async (_name, url) => {
    const response = await h.app.inject({ method: 'GET', url, headers: auth });
    expect(response.statusCode).toBe(400);
    const body = response.json();
    expect(body.error.code).toBe('PREWARM_ERR_BAD_REQUEST');
    expect(body.error.message).toMatch(/userId|limit|additional/);
  });

  it('accepts a user id of exactly 128 characters', async () => {
    const response = await h.app.inject({ method: 'GET', url: `/v1/users/${'x'.repeat(128)}/recommendations`, headers: auth });
    expect(response.statusCode).toBe(200);
  });

  it('answers unknown routes with a JSON 404', async () => {
    const response = await h.app.inject({ method: 'GET', url: '/v2/nothing' });
    expect(response.statusCode).toBe(404);
    expect(response.json().error.code).toBe('PREWARM_ERR_NOT_FOUND');
  });

  it('has liveness, readiness and metrics', async () => {
    expect((await h.app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await h.app.inject({ url: '/readyz' })).json()).toEqual({ status: 'ready' });
    const metrics = await h.app.inject({ url: '/metrics' });
    expect(metrics.body).toContain('prewarm_serves_total{source="on_demand",reason=""}');
    expect(metrics.body).toContain('prewarm_pending_events');
  });

  it('publishes an OpenAPI document generated from the route schemas', async () => {
    const document = (await h.app.inject({ url: '/openapi.json' })).json();
    expect(document.openapi).toMatch(/^3\./);
    const operation = document.paths['/v1/users/{userId}/recommendations'].get;
    expect(operation.parameters.map((p: { name: string }) => p.name).sort()).toEqual(['limit', 'userId']);
    expect(operation.responses['200'].content['application/json'].schema.properties.source.enum).toEqual(['precomputed', 'reused', 'on_demand', 'fallback']);
    const answer = operation.responses['200'].content['application/json'].schema;
    expect(answer.required).toEqual(expect.arrayContaining(['behind', 'missedInteractions']));
    expect(answer.properties.behind.type).toBe('boolean');
    expect(answer.properties.missedInteractions).toMatchObject({ type: 'integer', nullable: true });
    expect(document.paths['/healthz']).toBeUndefined();
  });
});
