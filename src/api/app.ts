import { createHash, timingSafeEqual } from 'node:crypto';
import swagger from '@fastify/swagger';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { isPrewarmError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { RecommendationService } from '../serving/service.ts';
import type { ApiMetrics } from './metrics.ts';
import { errorSchema, recommendationsParams, recommendationsQuery, recommendationsResponse } from './schemas.ts';

export interface AppOptions {
  /** Bearer tokens accepted from backend services. */
  apiTokens: readonly string[];
  /** Token for operator endpoints (/metrics); when unset those are open. */
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
}

function sendError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).send({ error: { code, message } });
}

// Compare digests so the comparison takes the same time whatever the token's length.
function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

function bearerGuard(tokens: readonly string[], realm: string) {
  const digests = tokens.map(digest);
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const header = request.headers.authorization;
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
    const presented = match?.[1] ? digest(match[1]) : undefined;
    if (!presented || !digests.some((known) => timingSafeEqual(known, presented))) {
      reply.header('www-authenticate', `Bearer realm="${realm}"`);
      return sendError(reply, 401, 'PREWARM_ERR_UNAUTHORIZED', 'missing or invalid bearer token');
    }
  };
}

/** The HTTP app, separate from its entry point so tests run it in-process (`app.inject`). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { service, metrics, options } = deps;
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    // One log line per request would cost more than the hit path itself; errors are logged.
    logController: new LogController({ disableRequestLogging: true }),
    // A 128-character id can take ~1.5 KB percent-encoded; longer ids get the schema's 400, not a 414.
    routerOptions: { maxParamLength: 2_048 },
    // Refuse unknown query parameters (a typo like `lmit` must not be silently ignored).
    ajv: { customOptions: { allErrors: false, removeAdditional: false } },
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
      return sendError(reply, 400, 'PREWARM_ERR_BAD_REQUEST', `${error.validationContext ?? 'request'}${error.message.replace(/^(params|querystring)/, '')}`);
    }
    if (isPrewarmError(error, 'PREWARM_ERR_SERVICE_UNAVAILABLE') || isPrewarmError(error, 'PREWARM_ERR_SHUTTING_DOWN')) {
      if (error.code === 'PREWARM_ERR_SERVICE_UNAVAILABLE') metrics.refusedForFullBuffer.inc();
      reply.header('retry-after', '1');
      return sendError(reply, 503, error.code, error.message);
    }
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) return sendError(reply, status, error.code ?? 'PREWARM_ERR_BAD_REQUEST', error.message);
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

  app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
    const failures: Record<string, string> = {};
    await Promise.all(
      Object.entries(deps.readiness).map(async ([name, check]) => {
        try {
          await check();
        } catch (error) {
          failures[name] = (error as Error).message;
        }
      }),
    );
    if (Object.keys(failures).length > 0) return reply.code(503).send({ status: 'unavailable', failures });
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
    v1.get<{ Params: { userId: string }; Querystring: { limit: number } }>(
      '/users/:userId/recommendations',
      {
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
      async (request) => {
        const result = await service.getRecommendations(request.params.userId, request.query.limit);
        return {
          ...result,
          computedAt: result.computedAt?.toISOString() ?? null,
          expiresAt: result.expiresAt?.toISOString() ?? null,
          stalenessMs: result.stalenessMs === null ? null : Math.round(result.stalenessMs),
        };
      },
    );
  }, { prefix: '/v1' });

  return app;
}
