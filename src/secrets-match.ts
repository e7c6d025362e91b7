import { hash, timingSafeEqual } from 'node:crypto';

// Every check of a presented token or session value against a known one: the API's bearer
// tokens, the workers' and scheduler's /metrics, the dashboard. Values are compared by their
// SHA-256 digests, so a comparison takes the same time whatever the presented value's length.

/** Checks presented values against one or more known secrets. */
export function createSecretMatcher(known: readonly string[]): (presented: string | undefined) => boolean {
  const digests = known.map(digest);
  return (presented) => {
    if (presented === undefined || presented === '') return false;
    const candidate = digest(presented);
    return digests.some((expected) => timingSafeEqual(expected, candidate));
  };
}

/** The token of an `Authorization: Bearer <token>` header, if that is what the header holds. */
export function bearerToken(authorization: string | undefined): string | undefined {
  return authorization === undefined ? undefined : /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1];
}

// One-shot hash(): half the cost of createHash().update().digest(), paid on every API request.
function digest(text: string): Buffer {
  return hash('sha256', text, 'buffer');
}
