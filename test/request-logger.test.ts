// Fastify's per-request logger, made on first use (src/api/request-logger.ts): a request that logs
// gets the same lines as with Fastify's own child (request id bound, levels respected); one that
// does not log costs no child.
import Fastify, { type FastifyBaseLogger } from 'fastify';
import pino from 'pino';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { lazyChildLogger } from '../src/api/request-logger.ts';

describe('lazyChildLogger', () => {
  it('binds the request id when a request logs, and makes no child when it does not', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(JSON.parse(String(chunk)));
        done();
      },
    });
    const logger = pino({ level: 'info' }, sink);
    // The parent Fastify is given counts the children made of it; they are pino's own.
    let children = 0;
    const parent = Object.create(logger) as typeof logger;
    parent.child = ((...args: Parameters<typeof logger.child>) => {
      children++;
      return logger.child(...args);
    }) as typeof logger.child;
    const app = Fastify({ loggerInstance: parent as FastifyBaseLogger, disableRequestLogging: true, childLoggerFactory: lazyChildLogger });
    app.get('/quiet', async () => 'ok');
    app.get('/loud', async (request) => {
      request.log.debug('not written at info');
      request.log.warn({ detail: 7 }, 'written');
      expect(request.log.level).toBe('info');
      request.log.child({ part: 'inner' }).error('nested');
      return 'ok';
    });
    await app.ready();
    // Fastify makes children of its own while it starts (its instance logger).
    const atStart = children;
    try {
      expect((await app.inject('/quiet')).statusCode).toBe(200);
      expect(children).toBe(atStart);
      expect((await app.inject('/loud')).statusCode).toBe(200);
      await new Promise((resolve) => setImmediate(resolve));
      expect(lines.map(({ msg, reqId, detail, part, level }) => ({ msg, reqId, detail, part, level }))).toEqual([
        { msg: 'written', reqId: 'req-2', detail: 7, part: undefined, level: 40 },
        { msg: 'nested', reqId: 'req-2', detail: undefined, part: 'inner', level: 50 },
      ]);
    } finally {
      await app.close();
    }
  });
});
