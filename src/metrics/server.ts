import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { listenFailure } from '../startup-checks.ts';
import type { Logger } from '../log.ts';
import { bearerToken, createSecretMatcher } from '../secrets-match.ts';

export interface MetricsServerOptions {
  registry: Registry;
  /** PREWARM_HOST. */
  host: string;
  /** PREWARM_METRICS_PORT; 0 picks a free port. */
  port: number;
  /** PREWARM_ADMIN_TOKEN: when set, `/metrics` wants it as a bearer token, as the API's does. */
  adminToken?: string | undefined;
  log: Logger;
}

export interface MetricsServer {
  /** e.g. http://127.0.0.1:9464 */
  url: string;
  /** Stops listening and ends open connections. Idempotent. */
  close(): Promise<void>;
}

/**
 * The `/metrics` endpoint of a process without an HTTP API (the precompute worker, the
 * scheduler): node:http, one route. A port that cannot be bound fails start-up with one line.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { registry, host, port, log } = options;
  const isAdmin = options.adminToken === undefined ? undefined : createSecretMatcher([options.adminToken]);
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' || path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'PREWARM_ERR_NOT_FOUND', message: 'only GET /metrics is served here' }));
      return;
    }
    if (isAdmin) {
      if (!isAdmin(bearerToken(request.headers.authorization))) {
        response
          .writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer realm="prewarm-admin"' })
          .end(JSON.stringify({ code: 'PREWARM_ERR_UNAUTHORIZED', message: 'missing or invalid bearer token' }));
        return;
      }
    }
    registry.metrics().then(
      (body) => response.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (error: unknown) => {
        log.error({ err: error }, 'collecting metrics failed');
        response.writeHead(500, { 'content-type': 'text/plain' }).end('collecting metrics failed\n');
      },
    );
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    throw listenFailure(error, { host, port, settings: 'PREWARM_METRICS_PORT, PREWARM_HOST' });
  }
  server.on('error', (error) => log.error({ err: error }, 'metrics server error'));
  const address = server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}`,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
