import swagger from '@fastify/swagger';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type HookHandlerDoneFunction,
} from 'fastify';
import type { Socket } from 'node:net';
import { PrewarmError, isPrewarmError } from '../errors.ts';
import { idProblem } from '../ids.ts';
import { bearerToken, createSecretMatcher } from '../secrets-match.ts';
import { throttledErrorLog, type Logger } from '../log.ts';
import type { RecommendationService } from '../serving/service.ts';
import type { ApiMetrics } from './metrics.ts';
import { registerInteractionsRoute, type InteractionsRouteDeps } from '../interactions/route.ts';
import { answerJson } from './answer-json.ts';
import { lazyChildLogger } from './request-logger.ts';
import { errorSchema, recommendationsParams, recommendationsQuery, recommendationsResponse } from './schemas.ts';

export interface AppOptions {
  /** Bearer tokens accepted from backend services. */
  apiTokens: readonly string[];
  /**
   * Token for operator endpoints (/metrics); when unset those are open (README "Security").
   * Service tokens never open them.
   */
  adminToken: string | undefined;
  defaultLimit: number;
  maxLimit: number;
}

export interface AppDeps {
  service: RecommendationService;
  metrics: ApiMetrics;
  log: Logger;
  options: AppOptions;
  /** Readiness checks by name (Postgres, Redis, event buffer); each throws when not ready. */
  readiness: Record<string, () => Promise<void>>;
  /** `POST /v1/interactions` (README "HTTP API"); the route is absent without it. */
  interactions?: InteractionsRouteDeps;
}

function sendError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).send({ error: { code, message } });
}

const JSON_UTF8 = 'application/json; charset=utf-8';

/** Largest request head (request line and headers) Node's parser reads; beyond it, 431. */
export const MAX_HEADER_BYTES = 16 * 1_024;
/** No route takes a body: a few KB is generous for a stray one, and a large one is refused with 413. */
export const BODY_LIMIT_BYTES = 4 * 1_024;
/** Methods refused with 405 on the recommendations route (HEAD included: see below). */
const REFUSED_METHODS = ['HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** Our error code for a 4xx Fastify raised itself (body too large, bad content type, …). */
function clientErrorCode(status: number): string {
  if (status === 405) return 'PREWARM_ERR_METHOD_NOT_ALLOWED';
  if (status === 413 || status === 414 || status === 431) return 'PREWARM_ERR_TOO_LARGE';
  if (status === 404) return 'PREWARM_ERR_NOT_FOUND';
  if (status === 401) return 'PREWARM_ERR_UNAUTHORIZED';
  return 'PREWARM_ERR_BAD_REQUEST';
}

/**
 * Errors Node's HTTP parser meets before Fastify sees a request (head over MAX_HEADER_BYTES,
 * malformed request line, timeout): answered in our error shape, then the socket is closed.
 */
function clientErrorHandler(this: FastifyInstance, error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, reason, message] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', `request line and headers exceed ${MAX_HEADER_BYTES} bytes`]
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'request timed out']
        : [400, 'Bad Request', 'malformed HTTP request'];
  const body = JSON.stringify({ error: { code: clientErrorCode(status), message } });
  this.log.debug({ err: error }, 'client error');
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${reason}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy(error);
}

// Hooks on the login path take Fastify's callback form: an async hook costs a promise and a
// microtask per request each, measurable on a path that does one Redis read.
function bearerGuard(tokens: readonly string[], realm: string) {
  const matches = createSecretMatcher(tokens);
  return (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
    if (!matches(bearerToken(request.headers.authorization))) {
      reply.header('www-authenticate', `Bearer realm="${realm}"`);
      sendError(reply, 401, 'PREWARM_ERR_UNAUTHORIZED', 'missing or invalid bearer token');
      return;
    }
    done();
  };
}

/** The HTTP app, separate from its entry point so tests run it in-process (`app.inject`). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { service, metrics, options } = deps;
  let closing = false;
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    // One log line per request would cost more than the hit path itself; errors are logged.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyChildLogger,
    // A 128-character id can take ~1.5 KB percent-encoded; a longer path segment is refused
    // with our 400 by frameworkErrors below (Fastify's own answer is a 414 in its shape).
    routerOptions: { maxParamLength: 2_048 },
    // Refuse unknown query parameters (a typo like `lmit` must not be silently ignored).
    ajv: { customOptions: { allErrors: false, removeAdditional: false } },
    bodyLimit: BODY_LIMIT_BYTES,
    http: { maxHeaderSize: MAX_HEADER_BYTES },
    clientErrorHandler,
    // While closing, requests still arriving on open connections get our 503 with Retry-After
    // (the onRequest hook below), not Fastify's built-in 503.
    return503OnClosing: false,
    // A path that is not valid percent-encoding (`%zz`), or a segment longer than maxParamLength.
    frameworkErrors: (error, _request, reply) => {
      if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
        return sendError(reply, 400, 'PREWARM_ERR_BAD_REQUEST', `params/userId is longer than 128 characters`);
      }
      return sendError(reply, 400, 'PREWARM_ERR_BAD_REQUEST', 'the URL is not valid percent-encoded UTF-8');
    },
  });

  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', (_request, reply, done) => {
    if (!closing) return done();
    reply.header('connection', 'close');
    done(new PrewarmError('PREWARM_ERR_SHUTTING_DOWN', 'the service is shutting down'));
  });

  await app.register(swagger, {
    openapi: {
      info: { title: 'prewarm', version: '1', description: 'Recommendations at login: precomputed when predicted, computed on demand otherwise.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });
  app.addSchema(errorSchema);

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.validation) {
      // Say what is wrong with the id in the words of src/ids.ts, not as a regular expression.
      const userId = (request.params as { userId?: unknown } | undefined)?.userId;
      const problem = error.validationContext === 'params' && typeof userId === 'string' ? idProblem(userId) : undefined;
      if (problem) return sendError(reply, 400, 'PREWARM_ERR_BAD_REQUEST', `params/userId ${problem}`);
      return sendError(reply, 400, 'PREWARM_ERR_BAD_REQUEST', `${error.validationContext ?? 'request'}${error.message.replace(/^(params|querystring)/, '')}`);
    }
    if (isPrewarmError(error, 'PREWARM_ERR_SERVICE_UNAVAILABLE') || isPrewarmError(error, 'PREWARM_ERR_SHUTTING_DOWN')) {
      if (error.code === 'PREWARM_ERR_SERVICE_UNAVAILABLE') metrics.refusedForFullBuffer.inc();
      reply.header('retry-after', '1');
      return sendError(reply, 503, error.code, error.message);
    }
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) return sendError(reply, status, clientErrorCode(status), error.message);
    request.log.error({ err: error, url: request.url }, 'request failed');
    return sendError(reply, 500, 'PREWARM_ERR_INTERNAL', 'internal error');
  });

  app.setNotFoundHandler((request, reply) => {
    // The router does not match an empty path segment, so `/v1/users//recommendations` lands here.
    if (/^\/v1\/users\/\/recommendations(?:\?|$)/.test(request.url)) {
      return sendError(reply, 400, 'PREWARM_ERR_BAD_REQUEST', 'params/userId must NOT have fewer than 1 characters');
    }
    return sendError(reply, 404, 'PREWARM_ERR_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`);
  });

  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));

  // Unauthenticated, so it names the failing checks and nothing else: an error's text can hold
  // host names, user names and authentication failures. The details go to the log.
  const logReadinessFailure = Object.fromEntries(
    Object.keys(deps.readiness).map((name) => [name, throttledErrorLog(deps.log, `readiness check ${name} failed`, 60_000)]),
  );
  app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
    const failures: string[] = [];
    await Promise.all(
      Object.entries(deps.readiness).map(async ([name, check]) => {
        try {
          await check();
        } catch (error) {
          failures.push(name);
          logReadinessFailure[name]?.(error);
        }
      }),
    );
    if (failures.length > 0) return reply.code(503).send({ status: 'unavailable', failures: failures.sort() });
    return { status: 'ready' };
  });

  const adminGuard = options.adminToken ? bearerGuard([options.adminToken], 'prewarm-admin') : undefined;
  app.get('/metrics', { schema: { hide: true }, ...(adminGuard ? { onRequest: adminGuard } : {}) }, async (_request, reply) => {
    metrics.onDemandInFlight.set(service.inFlight());
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(async (v1) => {
    v1.addHook('onRequest', bearerGuard(options.apiTokens, 'prewarm'));
    // HEAD is refused rather than answered: a HEAD that ran the handler would record a login and
    // a serve for an answer nobody reads. The other methods are refused in the same words.
    v1.route({
      method: REFUSED_METHODS,
      url: '/users/:userId/recommendations',
      schema: { hide: true },
      handler: async (request, reply) => {
        reply.header('allow', 'GET');
        return sendError(reply, 405, 'PREWARM_ERR_METHOD_NOT_ALLOWED', `${request.method} is not allowed here; use GET`);
      },
    });
    v1.get<{ Params: { userId: string }; Querystring: { limit: number } }>(
      '/users/:userId/recommendations',
      {
        exposeHeadRoute: false,
        // `limit` must be a plain decimal integer in range, checked here on the raw text: Ajv's
        // coercion takes ` 5`, `1e1` and `0x10` as numbers, and `Infinity` (or 400 nines) passes
        // its `maximum`.
        preValidation: (request, _reply, done) => {
          const raw = (request.query as Record<string, unknown>).limit;
          if (raw === undefined) return done();
          const limit = typeof raw === 'string' && /^[0-9]{1,9}$/.test(raw) ? Number(raw) : Number.NaN;
          if (!(limit >= 1 && limit <= options.maxLimit)) {
            return done(Object.assign(new Error(`querystring/limit must be an integer from 1 to ${options.maxLimit} written in decimal digits`), { statusCode: 400 }));
          }
          done();
        },
        schema: {
          summary: "A user's recommendations at login",
          description:
            'Fresh precomputed set if one exists, else a set computed on demand within the latency budget, else popular items (source `fallback`, with a reason). Every call is recorded as a login and a serve.',
          security: [{ bearer: [] }],
          params: recommendationsParams,
          querystring: recommendationsQuery(options.defaultLimit, options.maxLimit),
          response: { 200: recommendationsResponse, 400: { $ref: 'Error#' }, 401: { $ref: 'Error#' }, 503: { $ref: 'Error#' } },
        },
      },
      async (request, reply) => {
        // The latency budget runs from the request's arrival (Fastify's start of it), so time
        // queued before this handler counts against it.
        const receivedAt = performance.now() - reply.elapsedTime;
        const result = await service.getRecommendations(request.params.userId, request.query.limit, { receivedAt });
        // Already JSON bytes: Fastify sends a Buffer as it is.
        reply.header('content-type', JSON_UTF8);
        return answerJson(result);
      },
    );
    if (deps.interactions) registerInteractionsRoute(v1, deps.interactions);
  }, { prefix: '/v1' });

  return app;
}
