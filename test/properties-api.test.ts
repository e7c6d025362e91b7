// Property tests of the HTTP contract: for any id and any limit text, the API answers 200 exactly
// when the rules of src/ids.ts and the limit rule accept them, a 4xx in our shape otherwise, and
// never a 5xx; what it records passes the id rule.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idProblem } from '../src/ids.ts';
import { createScriptedRecommender } from './support/scripted-recommender.ts';
import { API_TOKEN, createServingHarness, type ServingHarness } from './support/serving-harness.ts';

/** No unpaired surrogate half (String#isWellFormed is ES2024, above this project's lib). */
const isWellFormed = (text: string): boolean => !/\p{Surrogate}/u.test(text);

const auth = { authorization: `Bearer ${API_TOKEN}` };

describe('HTTP API, properties', () => {
  let h: ServingHarness;

  beforeAll(async () => {
    const { recommender } = createScriptedRecommender({}, ['p1', 'p2', 'p3']);
    h = await createServingHarness(recommender);
  });
  afterAll(async () => h.close());

  const id = fc
    .oneof(
      fc.string({ unit: 'binary', maxLength: 140 }),
      fc.string({ unit: 'grapheme', maxLength: 140 }),
      fc.string({ unit: fc.constantFrom('😀', 'a', '\u0085', '\u2028', '%', '/', '.', '\u0000', ' ', "'", 'é'), minLength: 1, maxLength: 140 }),
    )
    .filter((text) => isWellFormed(text) && text !== '.' && text !== '..'); // dot segments are resolved by every URL parser

  it('any id: 200 echoing it exactly when idProblem accepts it, else our 400', async () => {
    await fc.assert(
      fc.asyncProperty(id, async (userId) => {
        const response = await h.app.inject({ method: 'GET', url: `/v1/users/${encodeURIComponent(userId)}/recommendations?limit=1`, headers: auth });
        if (idProblem(userId) === undefined) {
          expect(response.statusCode, response.body).toBe(200);
          expect(response.json().userId).toBe(userId);
        } else {
          expect(response.statusCode, response.body).toBe(400);
          expect(response.json().error.code).toBe('PREWARM_ERR_BAD_REQUEST');
        }
      }),
      { numRuns: 300 },
    );
    await h.recorder.flush();
    const { rows } = await h.db.pool.query<{ user_id: string }>('SELECT user_id FROM logins');
    for (const row of rows) expect(idProblem(row.user_id)).toBeUndefined();
  });

  it('any limit text: 200 exactly for 1…100 written in digits, else our 400', async () => {
    const limit = fc.oneof(
      fc.string({ maxLength: 6 }),
      fc.integer({ min: -5, max: 200 }).map(String),
      fc.double().map(String),
      fc.constantFrom('Infinity', '-Infinity', 'NaN', '1e1', '0x10', ' 5', '5 ', '+5', '05', '007', '١٠', '５'),
    );
    await fc.assert(
      fc.asyncProperty(limit, async (text) => {
        const response = await h.app.inject({ method: 'GET', url: `/v1/users/u1/recommendations?limit=${encodeURIComponent(text)}`, headers: auth });
        const plain = /^[0-9]+$/.test(text) && Number(text) >= 1 && Number(text) <= 100;
        expect(response.statusCode, `${JSON.stringify(text)}: ${response.body}`).toBe(plain ? 200 : 400);
        if (plain) expect(response.json().items.length).toBe(Math.min(3, Number(text)));
        else expect(response.json().error.code).toBe('PREWARM_ERR_BAD_REQUEST');
      }),
      { numRuns: 300 },
    );
  });

  it('any query string and path: never a 5xx, always JSON in our shape when refused', async () => {
    const segment = fc.string({ unit: fc.constantFrom('a', '%', 'z', '2', 'F', '/', '?', '&', '=', '#', '.', 'é', ' ', '+', '[', ']'), maxLength: 12 });
    await fc.assert(
      fc.asyncProperty(segment, segment, fc.constantFrom('GET', 'HEAD', 'POST', 'DELETE'), async (path, query, method) => {
        const url = `/v1/users/${path.replaceAll(' ', '%20').replaceAll('#', '%23')}/recommendations?${query.replaceAll(' ', '%20').replaceAll('#', '%23')}`;
        const response = await h.app.inject({ method, url, headers: auth });
        expect(response.statusCode, `${method} ${url}: ${response.body}`).toBeLessThan(500);
        if (response.statusCode >= 400 && method !== 'HEAD') {
          const body = response.json();
          expect(Object.keys(body)).toEqual(['error']);
          expect(body.error.code).toMatch(/^PREWARM_ERR_/);
        }
      }),
      { numRuns: 300 },
    );
  });
});
