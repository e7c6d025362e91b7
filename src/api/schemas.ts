import { userIdJsonSchema } from '../ids.ts';

export const errorSchema = {
  $id: 'Error',
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string' } },
    },
  },
} as const;

export const recommendationsParams = {
  type: 'object',
  required: ['userId'],
  properties: {
    // The rule of CSV import but for how length is counted (src/ids.ts).
    userId: userIdJsonSchema,
  },
} as const;

export function recommendationsQuery(defaultLimit: number, maxLimit: number) {
  return {
    type: 'object',
    properties: {
      limit: { type: 'integer', minimum: 1, maximum: maxLimit, default: defaultLimit, description: 'Number of items' },
    },
    additionalProperties: false,
  } as const;
}

export const recommendationsResponse = {
  type: 'object',
  required: ['userId', 'items', 'source', 'computedAt', 'expiresAt', 'stalenessMs', 'behind', 'missedInteractions', 'modelVersion'],
  properties: {
    userId: { type: 'string' },
    items: {
      type: 'array',
      items: {
        type: 'object',
        required: ['itemId', 'score'],
        properties: { itemId: { type: 'string' }, score: { type: 'number' } },
      },
    },
    source: { type: 'string', enum: ['precomputed', 'reused', 'on_demand', 'fallback'] },
    computedAt: { type: ['string', 'null'], format: 'date-time', description: 'When the served set was computed; null for fallback' },
    expiresAt: { type: ['string', 'null'], format: 'date-time', description: 'End of the set’s freshness; null for fallback' },
    stalenessMs: { type: ['integer', 'null'], description: 'Age of the served set at the login; null for fallback' },
    behind: {
      type: 'boolean',
      description: 'True when the served set missed interactions of the user (missedInteractions > 0): it was computed before them and could not be computed again within the latency budget (or PREWARM_REFRESH_BEHIND=never)',
    },
    missedInteractions: {
      type: ['integer', 'null'],
      description: "The user's interactions at or after the served set's computedAt and before the login; 0 for an up-to-date set, null for fallback or when they could not be counted",
    },
    modelVersion: { type: 'string' },
    reason: {
      type: 'string',
      enum: ['unknown_user', 'latency_budget', 'overloaded', 'compute_failed'],
      description: 'Why a fallback answer was given',
    },
  },
} as const;
