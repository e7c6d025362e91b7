// The recommendations route writes its 200 body itself (src/api/answer-json.ts): the same bytes
// as Fastify's serializer of the documented response schema, for any answer.
import fc from 'fast-check';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answerJson } from '../src/api/answer-json.ts';
import { recommendationsResponse } from '../src/api/schemas.ts';
import type { ServeResult } from '../src/serving/service.ts';
import { storedScore } from '../src/sets/set.ts';

const text = fc.string({ unit: 'binary', maxLength: 24 });
// Scores as stored (six significant digits, written digit by digit), integers, and any double.
const score = fc.oneof(
  fc.double({ noNaN: true }).map(storedScore),
  fc.double({ min: -1e7, max: 1e7, noNaN: true }).map(storedScore),
  fc.double({ noNaN: true }),
  fc.integer({ min: -1e6, max: 1e6 }),
  fc.constantFrom(0, -0, 1e-6, -1e-6, 9.99999e-7, 1e6, 999999.5, 1e15 - 1, 1e15, 0.1, 1e-7),
);
// Instants of these centuries, and any a Date holds (years before 0 and after 9999 are written with a sign and six digits).
const instant = fc.option(
  fc.oneof(fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('2200-01-01T00:00:00Z'), noInvalidDate: true }), fc.date({ noInvalidDate: true })),
  { nil: null },
);
const answer: fc.Arbitrary<ServeResult> = fc.record(
  {
    userId: text,
    items: fc.array(fc.record({ itemId: text, score }), { maxLength: 12 }),
    source: fc.constantFrom('precomputed', 'reused', 'on_demand', 'fallback'),
    computedAt: instant,
    expiresAt: instant,
    stalenessMs: fc.option(fc.double({ min: 0, max: 1e12, noNaN: true }), { nil: null }),
    behind: fc.boolean(),
    missedInteractions: fc.option(fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER)), { nil: null }),
    modelVersion: text,
    reason: fc.constantFrom('unknown_user', 'latency_budget', 'overloaded', 'compute_failed'),
  },
  { requiredKeys: ['userId', 'items', 'source', 'computedAt', 'expiresAt', 'stalenessMs', 'behind', 'missedInteractions', 'modelVersion'] },
);

describe('answerJson', () => {
  // What the route sent before: the result with its instants as ISO strings and the staleness
  // rounded, through the schema's serializer.
  const app = Fastify();
  let current: ServeResult;
  app.get('/', { schema: { response: { 200: recommendationsResponse } } }, async () => ({
    ...current,
    computedAt: current.computedAt?.toISOString() ?? null,
    expiresAt: current.expiresAt?.toISOString() ?? null,
    stalenessMs: current.stalenessMs === null ? null : Math.round(current.stalenessMs),
  }));
  beforeAll(() => app.ready());
  afterAll(() => app.close());

  async function bySchema(result: ServeResult): Promise<string> {
    current = result;
    const response = await app.inject({ method: 'GET', url: '/' });
    expect(response.statusCode).toBe(200);
    return response.body;
  }

  it('writes the bytes the schema serializer writes', async () => {
    await fc.assert(
      fc.asyncProperty(answer, async (result) => {
        const bytes = answerJson(result);
        const expected = await bySchema(result);
        expect(bytes.equals(Buffer.from(expected, 'utf8'))).toBe(true);
        const written = bytes.toString('utf8');
        expect(written).toBe(expected);
        expect(JSON.parse(written)).toEqual(JSON.parse(await bySchema(result)));
      }),
      { seed: 20261204, numRuns: 400 },
    );
  });

  it('writes each stored score, across magnitudes, as ${score} writes it', () => {
    const answerWith = (value: number): ServeResult => ({ userId: 'u', items: [{ itemId: 'i', score: value }], source: 'precomputed', computedAt: null, expiresAt: null, stalenessMs: null, behind: false, missedInteractions: null, modelVersion: 'm' });
    let seed = 7;
    const random = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
    for (let n = 0; n < 20_000; n++) {
      const value = storedScore((random() - 0.5) * 10 ** Math.floor(random() * 16 - 8));
      const written = JSON.parse(answerJson(answerWith(value)).toString('utf8')).items[0].score;
      expect(answerJson(answerWith(value)).toString('utf8')).toContain(`"score":${value}}`);
      expect(Object.is(written, value) || (written === 0 && value === 0)).toBe(true);
    }
  });

  it('never runs past its buffer: strings that escape to six bytes a unit, extreme instants and numbers', async () => {
    const worst: ServeResult = {
      userId: '\u0001'.repeat(128),
      items: Array.from({ length: 100 }, (_, i) => ({
        itemId: i % 2 === 0 ? '\ud800'.repeat(128) : '"\\'.repeat(64),
        score: [-Math.PI * 1e-300, -Number.MAX_VALUE, Number.MIN_VALUE, -123456789012345680000][i % 4]!,
      })),
      source: 'precomputed',
      computedAt: new Date(-8.64e15),
      expiresAt: new Date(8.64e15),
      stalenessMs: 1e21,
      behind: true,
      missedInteractions: Number.MAX_SAFE_INTEGER,
      modelVersion: '\u001f'.repeat(128),
      reason: 'compute_failed',
    };
    const bytes = answerJson(worst);
    expect(bytes.equals(Buffer.from(await bySchema(worst), 'utf8'))).toBe(true);
    expect(JSON.parse(bytes.toString('utf8')).items).toHaveLength(100);
  });

  it('writes a typical precomputed answer', async () => {
    const result: ServeResult = {
      userId: 'u"1\\',
      items: [
        { itemId: 'i1', score: 0.5 },
        { itemId: 'ü\n', score: 1e-7 },
      ],
      source: 'precomputed',
      computedAt: new Date('2024-03-01T10:00:00Z'),
      expiresAt: new Date('2024-03-02T10:00:00Z'),
      stalenessMs: 3_600_000.4,
      behind: false,
      missedInteractions: 0,
      modelVersion: 'item-cf-v1',
    };
    expect(answerJson(result).toString('utf8')).toBe(await bySchema(result));
    expect(JSON.parse(answerJson(result).toString('utf8'))).toEqual({
      userId: 'u"1\\',
      items: [
        { itemId: 'i1', score: 0.5 },
        { itemId: 'ü\n', score: 1e-7 },
      ],
      source: 'precomputed',
      computedAt: '2024-03-01T10:00:00.000Z',
      expiresAt: '2024-03-02T10:00:00.000Z',
      stalenessMs: 3_600_000,
      behind: false,
      missedInteractions: 0,
      modelVersion: 'item-cf-v1',
    });
  });
});
