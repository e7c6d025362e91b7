import type { Queue } from 'bullmq';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Clock } from '../clock.ts';
import type { Queryable } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { createAdminAuth } from './auth.ts';
import { createDashboardFigures } from './figures.ts';
import { renderDashboard, renderLogin } from './page.ts';
import { QUEUES_PATH, registerQueueBoard } from './queues.ts';

export interface DashboardDeps {
  pool: Queryable;
  clock: Clock;
  log: Logger;
  /** PREWARM_ADMIN_TOKEN. Unset: neither /dashboard nor /admin/queues is served (404). */
  adminToken: string | undefined;
  /** BullMQ queues shown at /admin/queues (none: no queue view). */
  queues?: readonly Queue[];
}

/** Days shown when `?days=` is not given, and the most that may be asked. */
export const DEFAULT_DAYS = 14;
export const MAX_DAYS = 90;

// The pages run no script and load nothing from elsewhere (the machine may be offline).
const PAGE_HEADERS = {
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

function sendPage(reply: FastifyReply, status: number, html: string): FastifyReply {
  return reply.code(status).headers(PAGE_HEADERS).type('text/html; charset=utf-8').send(html);
}

/**
 * The operators' dashboard (/dashboard) and queue view (/admin/queues), behind the admin token:
 * a login form sets an HttpOnly, SameSite=Strict session cookie; the token never travels in a URL.
 */
export function createDashboardPlugin(deps: DashboardDeps) {
  return async function dashboardPlugin(app: FastifyInstance): Promise<void> {
    if (!deps.adminToken) {
      deps.log.info('PREWARM_ADMIN_TOKEN is not set: /dashboard and /admin/queues are not served');
      return;
    }
    const auth = createAdminAuth(deps.adminToken);
    const figures = createDashboardFigures({ pool: deps.pool, clock: deps.clock });
    const secure = (request: FastifyRequest) => request.protocol === 'https';

    // The login form's body, for these routes only.
    app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });

    app.get('/dashboard', { schema: { hide: true } }, async (request, reply) => {
      if (!auth.isAuthenticated(request)) return sendPage(reply, 401, renderLogin({}));
      const raw = (request.query as Record<string, unknown>).days;
      const days = typeof raw === 'string' && /^[0-9]{1,3}$/.test(raw) ? Math.min(Math.max(Number(raw), 1), MAX_DAYS) : DEFAULT_DAYS;
      return sendPage(reply, 200, renderDashboard(await figures.overview({ days })));
    });

    app.get('/dashboard/login', { schema: { hide: true } }, async (_request, reply) => sendPage(reply, 200, renderLogin({})));

    app.post('/dashboard/login', { schema: { hide: true } }, async (request, reply) => {
      const token = (request.body as Record<string, unknown> | undefined)?.token;
      if (typeof token !== 'string' || !auth.isToken(token)) {
        request.log.warn({ ip: request.ip }, 'dashboard sign-in refused: wrong admin token');
        return sendPage(reply, 401, renderLogin({ error: 'Wrong token.' }));
      }
      return reply.code(303).header('set-cookie', auth.sessionCookie(secure(request))).header('location', '/dashboard').send();
    });

    app.post('/dashboard/logout', { schema: { hide: true } }, async (_request, reply) =>
      reply.code(303).header('set-cookie', auth.clearedCookie()).header('location', '/dashboard/login').send(),
    );

    if (deps.queues && deps.queues.length > 0) {
      const queues = deps.queues;
      await app.register(async (scope) => {
        scope.addHook('onRequest', async (request, reply) => {
          if (auth.isAuthenticated(request)) return;
          if (request.method === 'GET' && !request.url.startsWith(`${QUEUES_PATH}/api/`)) return reply.code(303).header('location', '/dashboard/login').send();
          return reply.code(401).send({ error: { code: 'PREWARM_ERR_UNAUTHORIZED', message: 'sign in at /dashboard/login' } });
        });
        await registerQueueBoard(scope, queues);
      });
    }
  };
}
