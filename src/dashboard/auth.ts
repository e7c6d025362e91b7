import { createHmac } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { bearerToken, createSecretMatcher } from '../secrets-match.ts';

/** Name of the cookie the login form sets. */
export const SESSION_COOKIE = 'prewarm_admin';
/** A session lasts 12 hours; then the token is asked again. */
export const SESSION_MAX_AGE_S = 12 * 3_600;

/**
 * Checks an operator's credentials: the session cookie the login form set, or the admin token as
 * a bearer token (curl). The cookie holds an HMAC of the token, not the token itself, so a
 * leaked cookie does not reveal it, and changing PREWARM_ADMIN_TOKEN ends every session.
 */
export function createAdminAuth(adminToken: string) {
  const session = createHmac('sha256', adminToken).update('prewarm-dashboard-session-v1').digest('base64url');
  const isSession = createSecretMatcher([session]);
  const isToken: (presented: string) => boolean = createSecretMatcher([adminToken]);

  function cookieValue(request: FastifyRequest): string | undefined {
    for (const part of (request.headers.cookie ?? '').split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim();
    }
    return undefined;
  }

  return {
    isToken,
    isAuthenticated(request: FastifyRequest): boolean {
      if (isSession(cookieValue(request))) return true;
      const bearer = bearerToken(request.headers.authorization);
      return bearer !== undefined && isToken(bearer);
    },
    /** Set-Cookie value of a new session: HttpOnly, SameSite=Strict, Secure over HTTPS. */
    sessionCookie(secure: boolean): string {
      return `${SESSION_COOKIE}=${session}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${SESSION_MAX_AGE_S}${secure ? '; Secure' : ''}`;
    },
    clearedCookie(): string {
      return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`;
    },
  };
}

export type AdminAuth = ReturnType<typeof createAdminAuth>;
