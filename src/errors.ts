/**
 * Every error prewarm raises on purpose carries a stable code, so that scripts, the HTTP layer
 * and tests can branch on it without matching message text.
 */
export type PrewarmErrorCode =
  | 'PREWARM_ERR_CONFIG'
  | 'PREWARM_ERR_BAD_DURATION'
  | 'PREWARM_ERR_BAD_INPUT'
  | 'PREWARM_ERR_BAD_POLICY'
  | 'PREWARM_ERR_BAD_WINDOW'
  | 'PREWARM_ERR_UNKNOWN_WINDOW'
  | 'PREWARM_ERR_NO_MODEL'
  | 'PREWARM_ERR_RECOMMENDER'
  | 'PREWARM_ERR_IMPORT'
  | 'PREWARM_ERR_MIGRATION'
  | 'PREWARM_ERR_SERVICE_UNAVAILABLE'
  | 'PREWARM_ERR_SHUTTING_DOWN';

export class PrewarmError extends Error {
  readonly code: PrewarmErrorCode;

  constructor(code: PrewarmErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PrewarmError';
    this.code = code;
  }
}

export function isPrewarmError(error: unknown, code?: PrewarmErrorCode): error is PrewarmError {
  return error instanceof PrewarmError && (code === undefined || error.code === code);
}

/** Normalises whatever was thrown into an Error, keeping the original as `cause`. */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(typeof thrown === 'string' ? thrown : JSON.stringify(thrown), { cause: thrown });
}
