// The API behind a real socket: what Node's HTTP parser refuses before Fastify sees a request,
// and requests arriving while the server shuts down.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_HEADER_BYTES } from '../src/api/app.ts';
import { createScriptedRecommender } from './support/scripted-recommender.ts';
import { API_TOKEN, createServingHarness, type ServingHarness } from './support/serving-harness.ts';

/** Writes `raw` on a fresh connection and resolves with everything the server sent back. */
function rawExchange(port: number, raw: string, afterFirstResponse?: () => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = '';
    let signalled = false;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
      if (!signalled && afterFirstResponse && received.includes('\r\n\r\n')) {
        signalled = true;
        afterFirstResponse();
      }
    });
    socket.on('error', (error) => (received ? resolve(received) : reject(error)));
    socket.on('close', () => resolve(received));
    socket.setTimeout(10_000, () => socket.destroy(new Error('timeout')));
    socket.write(raw);
  });
}

function parseResponses(raw: string): Array<{ status: number; headers: Record<string, string>; body: string }> {
  const responses = [];
  let rest = raw;
  while (rest.startsWith('HTTP/1.1')) {
    const headEnd = rest.indexOf('\r\n\r\n');
    const [statusLine, ...headerLines] = rest.slice(0, headEnd).split('\r\n');
    const headers = Object.fromEntries(headerLines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
    const length = Number(headers['content-length'] ?? 0);
    responses.push({ status: Number(statusLine?.split(' ')[1]), headers, body: rest.slice(headEnd + 4, headEnd + 4 + length) });
    rest = rest.slice(headEnd + 4 + length);
  }
  return responses;
}

describe('API on a socket', () => {
  let h: ServingHarness;
  let port: number;
  let state: ReturnType<typeof createScriptedRecommender>['state'];

  beforeAll(async () => {
    const scripted = createScriptedRecommender({ slow: ['a'] });
    state = scripted.state;
    h = await createServingHarness(scripted.recommender);
    await h.app.listen({ port: 0, host: '127.0.0.1' });
    port = (h.app.server.address() as { port: number }).port;
  });
  afterAll(async () => h.close());

  it.each([
    ['a header over the limit', `GET /v1/users/u/recommendations HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(MAX_HEADER_BYTES + 1)}\r\n\r\n`],
    ['a URL over the limit', `GET /v1/users/${'u'.repeat(MAX_HEADER_BYTES + 1)}/recommendations HTTP/1.1\r\nHost: x\r\n\r\n`],
  ])('answers %s with 431 in our shape', async (_name, request) => {
    const [response] = parseResponses(await rawExchange(port, request));
    expect(response?.status).toBe(431);
    expect(JSON.parse(response?.body ?? '')).toEqual({ error: { code: 'PREWARM_ERR_TOO_LARGE', message: `request line and headers exceed ${MAX_HEADER_BYTES} bytes` } });
  });

  it('answers a malformed request line with 400 in our shape', async () => {
    const [response] = parseResponses(await rawExchange(port, 'GET /v1 HTTP/9\r\n\r\n'));
    expect(response?.status).toBe(400);
    expect(JSON.parse(response?.body ?? '').error.code).toBe('PREWARM_ERR_BAD_REQUEST');
  });

  it('answers a 10 kB id with our 400, not a 414', async () => {
    const response = await fetch(`http://127.0.0.1:${port}/v1/users/${'x'.repeat(10_240)}/recommendations`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('PREWARM_ERR_BAD_REQUEST');
  });

  // Last: it closes the app. A request pipelined behind a slow one reaches the server once
  // close() has begun; it was answered by Fastify's built-in 503 (its own body, no Retry-After).
  it('while shutting down, answers 503 in our shape with Retry-After', async () => {
    state.delayMs = 300;
    const get = (user: string, connection = 'keep-alive') =>
      `GET /v1/users/${user}/recommendations HTTP/1.1\r\nHost: x\r\nConnection: ${connection}\r\nAuthorization: Bearer ${API_TOKEN}\r\n\r\n`;
    const exchange = rawExchange(port, get('slow', 'close'));
    // Start closing while the slow request is in flight, then pipeline a second one behind it.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const socket = connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    const secondResponse = new Promise<string>((resolve) => {
      let received = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
      socket.on('close', () => resolve(received));
      socket.on('error', () => resolve(received));
    });
    // The second connection's request is slow too, so the connection is busy when close() starts,
    // and the third request, pipelined on it, arrives during the shutdown.
    socket.write(get('slow'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const closing = h.app.close();
    await new Promise((resolve) => setTimeout(resolve, 20));
    socket.write(get('after-close'));
    const first = parseResponses(await exchange);
    const responses = parseResponses(await secondResponse);
    await closing;
    expect(first[0]?.status).toBe(200);
    expect(responses[0]?.status).toBe(200);
    const refused = responses[1];
    expect(refused?.status).toBe(503);
    expect(refused?.headers['retry-after']).toBe('1');
    expect(JSON.parse(refused?.body ?? '')).toEqual({ error: { code: 'PREWARM_ERR_SHUTTING_DOWN', message: 'the service is shutting down' } });
    await h.recorder.flush();
    const { rows } = await h.db.pool.query(`SELECT count(*)::int AS n FROM logins WHERE user_id = 'after-close'`);
    expect(rows[0].n).toBe(0);
  });
});
