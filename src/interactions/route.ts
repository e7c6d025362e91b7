import type { FastifyInstance } from 'fastify';
import type { Clock } from '../clock.ts';
import { PrewarmError } from '../errors.ts';
import { idProblem, MAX_ID_LENGTH, parseTimestamp, weightProblem } from '../ids.ts';
import type { InteractionInput, InteractionRecorder } from './recorder.ts';

/** Interactions per request at most. */
export const MAX_INTERACTIONS_PER_REQUEST = 1_000;
/** Room for 1,000 interactions of the longest ids, with escapes: the app's 4 KB limit is for routes without a body. */
export const INTERACTIONS_BODY_LIMIT_BYTES = 2 * 1_024 * 1_024;
/**
 * How far ahead of the server's clock an `at` may be (the sender's clock may run a little fast);
 * beyond it the interaction would stay invisible to every computation until its time comes.
 */
export const MAX_CLOCK_AHEAD_MS = 5 * 60_000;

export interface InteractionsRouteDeps {
  recorder: InteractionRecorder;
  clock: Clock;
  /** Told how many interactions each accepted request brought (a metric). */
  onAccepted?: (count: number) => void;
}

const idDescription = `Opaque id: 1–${MAX_ID_LENGTH} Unicode code points, no control characters (C0, C1, U+2028, U+2029)`;

// Structure is checked by the schema; the id, time and weight rules shared with CSV import
// (src/ids.ts) are checked in the handler, so a refusal names the element in those rules' words.
export const interactionsBody = {
  type: 'object',
  required: ['interactions'],
  additionalProperties: false,
  properties: {
    interactions: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_INTERACTIONS_PER_REQUEST,
      items: {
        type: 'object',
        required: ['userId', 'itemId'],
        additionalProperties: false,
        properties: {
          userId: { type: 'string', description: idDescription },
          itemId: { type: 'string', description: idDescription },
          at: { type: 'string', format: 'date-time', description: 'When it happened: ISO 8601 with a zone, years 0001–9999, at most 5 minutes ahead of the server. Default: the time of the request' },
          weight: { type: 'number', description: 'Strength of the interaction, a positive number (a 4-byte real). Default 1' },
        },
      },
    },
  },
} as const;

export const interactionsResponse = {
  type: 'object',
  required: ['accepted'],
  properties: { accepted: { type: 'integer', description: 'Interactions recorded (buffered; written to Postgres within the flush interval)' } },
} as const;

interface RawInteraction {
  userId: string;
  itemId: string;
  at?: string;
  weight?: number;
}

function badRequest(message: string): Error {
  return Object.assign(new Error(message), { statusCode: 400 });
}

/** The interaction at `index`, or a 400 naming it: one bad element refuses the whole request. */
function toInteraction(raw: RawInteraction, index: number, now: Date): InteractionInput {
  const where = `body/interactions/${index}`;
  const userProblem = idProblem(raw.userId);
  if (userProblem) throw badRequest(`${where}/userId ${userProblem}`);
  const itemProblem = idProblem(raw.itemId);
  if (itemProblem) throw badRequest(`${where}/itemId ${itemProblem}`);
  let at = now;
  if (raw.at !== undefined) {
    const parsed = parseTimestamp(raw.at);
    if (!parsed) throw badRequest(`${where}/at is not an ISO 8601 time with a zone in the years 0001–9999 (e.g. 2024-03-01T12:00:00Z)`);
    if (parsed.getTime() > now.getTime() + MAX_CLOCK_AHEAD_MS) throw badRequest(`${where}/at is more than 5 minutes ahead of the server's clock (${now.toISOString()})`);
    at = parsed;
  }
  const weight = raw.weight ?? 1;
  const weightIssue = weightProblem(weight);
  if (weightIssue) throw badRequest(`${where}/weight ${weightIssue}`);
  return { userId: raw.userId, itemId: raw.itemId, at, weight };
}

/** `POST /interactions` (registered under /v1 with the service tokens' guard). */
export function registerInteractionsRoute(app: FastifyInstance, deps: InteractionsRouteDeps): void {
  app.post<{ Body: { interactions: RawInteraction[] } }>(
    '/interactions',
    {
      bodyLimit: INTERACTIONS_BODY_LIMIT_BYTES,
      schema: {
        summary: 'Record what users did (views, clicks, purchases)',
        description:
          'Up to 1,000 interactions per request, all recorded or none: a bad element is answered 400 naming its index. ' +
          'Acknowledged interactions are buffered and written to Postgres in batches (within the flush interval, and at shutdown); ' +
          'a 503 with Retry-After means the buffer is full and nothing of the request was taken. ' +
          'Computations for a user see every interaction acknowledged before they start.',
        security: [{ bearer: [] }],
        body: interactionsBody,
        response: { 202: interactionsResponse, 400: { $ref: 'Error#' }, 401: { $ref: 'Error#' }, 413: { $ref: 'Error#' }, 503: { $ref: 'Error#' } },
      },
    },
    async (request, reply) => {
      const now = deps.clock.now();
      const rows = request.body.interactions.map((raw, index) => toInteraction(raw, index, now));
      if (!deps.recorder.offer(rows)) {
        throw new PrewarmError('PREWARM_ERR_SERVICE_UNAVAILABLE', 'the interactions buffer is full (Postgres is behind); nothing was recorded, retry later');
      }
      deps.onAccepted?.(rows.length);
      return reply.code(202).send({ accepted: rows.length });
    },
  );
}
