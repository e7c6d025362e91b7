import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHttpRecommender } from '../src/recommender/http.ts';
import { silentLog } from './helpers.ts';

interface Seen {
  method: string;
  url: string;
  body: unknown;
}

type Handler = (request: Seen, response: ServerResponse) => void;

/** A real model service on an ephemeral port whose answers each test scripts. */
describe('http recommender', () => {
  let server: Server;
  let base: string;
  let handler: Handler;
  let seen: Seen[];

  beforeEach(async () => {
    seen = [];
    server = createServer((request: IncomingMessage, response: ServerResponse) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const entry = { method: request.method ?? '', url: request.url ?? '', body: text === '' ? undefined : JSON.parse(text) };
        seen.push(entry);
        handler(entry, response);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const json = (response: ServerResponse, status: number, body: unknown): void => {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  };
  const AT = new Date('2024-02-02T00:00:00Z');

  it('sends { userIds, at, k }, returns the results, and fills in users the service left out', async () => {
    handler = (request, response) => {
      if (request.method === 'POST' && request.url === '/recommend') {
        json(response, 200, {
          modelVersion: 'team-model-7',
          results: {
            alice: { items: [{ itemId: 'x', score: 0.9 }, { itemId: 'y', score: 0.5 }, { itemId: 'z', score: 0.1 }] },
            bob: { items: [{ itemId: 'p', score: 1 }], personalised: false },
          },
        });
      } else if (request.method === 'GET' && request.url.startsWith('/popular?')) {
        json(response, 200, { items: [{ itemId: 'p', score: 10 }, { itemId: 'q', score: 5 }] });
      } else {
        json(response, 404, { error: 'no route' });
      }
    };
    const recommender = createHttpRecommender({ url: `${base}/`, timeoutMs: 1_000, log: silentLog });
    expect(recommender.modelVersion()).toBe('http-unknown');
    const result = await recommender.recommend(['alice', 'bob', 'carol', 'alice'], AT, 2);
    expect(seen[0]).toEqual({ method: 'POST', url: '/recommend', body: { userIds: ['alice', 'bob', 'carol'], at: '2024-02-02T00:00:00.000Z', k: 2 } });
    expect(result).toEqual(
      new Map([
        ['alice', { items: [{ itemId: 'x', score: 0.9 }, { itemId: 'y', score: 0.5 }], personalised: true }],
        ['bob', { items: [{ itemId: 'p', score: 1 }], personalised: false }],
        ['carol', { items: [{ itemId: 'p', score: 10 }, { itemId: 'q', score: 5 }], personalised: false }],
      ]),
    );
    expect(seen[1]).toMatchObject({ method: 'GET', url: '/popular?k=2&at=2024-02-02T00%3A00%3A00.000Z' });
    expect(recommender.modelVersion()).toBe('team-model-7');
    // popular() is cached: same or fewer items, same or later instant within the TTL.
    expect(await recommender.popular(new Date(AT.getTime() + 1_000), 1)).toEqual([{ itemId: 'p', score: 10 }]);
    expect(seen).toHaveLength(2);
    // An earlier instant may not reuse a list computed later.
    await recommender.popular(new Date(AT.getTime() - 1_000), 1);
    expect(seen).toHaveLength(3);
    await recommender.close();
  });

  it('rejects a malformed response with PREWARM_ERR_RECOMMENDER', async () => {
    const recommender = createHttpRecommender({ url: base, timeoutMs: 1_000, log: silentLog });
    handler = (_request, response) => json(response, 200, { results: { alice: { items: [{ itemId: 'x', score: 'high' }] } } });
    await expect(recommender.recommend(['alice'], AT, 5)).rejects.toMatchObject({
      code: 'PREWARM_ERR_RECOMMENDER',
      message: expect.stringContaining('malformed response'),
      cause: expect.anything(),
    });
    handler = (_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{"modelVersion": "v1", "results": ');
    };
    await expect(recommender.recommend(['alice'], AT, 5)).rejects.toMatchObject({ code: 'PREWARM_ERR_RECOMMENDER', message: expect.stringContaining('not JSON') });
    await expect(recommender.popular(AT, 5)).rejects.toMatchObject({ code: 'PREWARM_ERR_RECOMMENDER' });
  });

  it('rejects a non-2xx answer with PREWARM_ERR_RECOMMENDER', async () => {
    const recommender = createHttpRecommender({ url: base, timeoutMs: 1_000, log: silentLog });
    handler = (_request, response) => json(response, 503, { error: 'overloaded' });
    await expect(recommender.recommend(['alice'], AT, 5)).rejects.toMatchObject({
      code: 'PREWARM_ERR_RECOMMENDER',
      message: expect.stringContaining('answered 503'),
    });
  });

  it('gives up after timeoutMs with PREWARM_ERR_RECOMMENDER', async () => {
    const recommender = createHttpRecommender({ url: base, timeoutMs: 100, log: silentLog });
    handler = (_request, response) => {
      setTimeout(() => json(response, 200, { modelVersion: 'late', results: {} }), 2_000).unref();
    };
    const started = Date.now();
    await expect(recommender.recommend(['alice'], AT, 5)).rejects.toMatchObject({
      code: 'PREWARM_ERR_RECOMMENDER',
      message: expect.stringContaining('timed out after 100 ms'),
      cause: expect.objectContaining({ name: 'TimeoutError' }),
    });
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it('reports an unreachable service with PREWARM_ERR_RECOMMENDER', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const recommender = createHttpRecommender({ url: `http://127.0.0.1:${port}`, timeoutMs: 1_000, log: silentLog });
    await expect(recommender.recommend(['alice'], AT, 5)).rejects.toMatchObject({ code: 'PREWARM_ERR_RECOMMENDER', cause: expect.anything() });
  });
});
