import pino, { type Logger } from 'pino';
import type { Config } from './config.ts';

export type { Logger };

const REDACTED = '[redacted]';

// A URL's password: `scheme://user:PASSWORD@host`. The user name stays, to say which account.
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^\s"@/:]*:)([^\s"/]+)@/gi;
// A bearer credential written anywhere (an Authorization header echoed in an error, a URL in a message).
const AUTH_CREDENTIALS = /\b(bearer)(\s+)[^\s"'\\,;]+/gi;
// A JSON field whose name says it holds a secret, at any depth: its value, string or array.
const SECRET_FIELD = /("[A-Za-z0-9_]*(?:password|passwd|secret|token|tokens|authorization|cookie)":)("(?:[^"\\]|\\.)*"|\[(?:"(?:[^"\\]|\\.)*"|[^\]"])*\])/gi;

/**
 * Removes credentials from any text (a log line, an error message printed by the CLI): the
 * password of every URL, every `Bearer` credential, the value of every JSON field named
 * like a secret (`password`, `apiTokens`, `authorization`, …), and every occurrence of the given
 * known secret values (the configured tokens and connection-string passwords).
 */
export function redactSecrets(text: string, secrets: readonly string[] = []): string {
  let result = text;
  for (const secret of secrets) {
    if (result.includes(secret)) result = result.split(secret).join(REDACTED);
    // As it appears inside a JSON string (quotes and backslashes escaped).
    const escaped = JSON.stringify(secret).slice(1, -1);
    if (escaped !== secret && result.includes(escaped)) result = result.split(escaped).join(REDACTED);
  }
  return result
    .replace(URL_PASSWORD, `$1${REDACTED}@`)
    .replace(AUTH_CREDENTIALS, `$1$2${REDACTED}`)
    .replace(SECRET_FIELD, `$1"${REDACTED}"`);
}

/** The secret values of a configuration: tokens, and passwords of its URLs (raw and decoded). */
export function configSecrets(
  config: Pick<Readonly<Config>, 'apiTokens' | 'adminToken' | 'databaseUrl' | 'redisUrl' | 'cacheRedisUrl' | 'recommenderUrl'> & { recommenderToken?: string | undefined },
): string[] {
  const secrets = new Set<string>([...config.apiTokens, config.adminToken ?? '', config.recommenderToken ?? '']);
  for (const url of [config.databaseUrl, config.redisUrl, config.cacheRedisUrl, config.recommenderUrl]) {
    if (url === undefined) continue;
    try {
      const { password } = new URL(url);
      secrets.add(password);
      secrets.add(decodeURIComponent(password));
    } catch {
      // Not a URL (config validation refuses those); nothing to add.
    }
  }
  // Very short values would redact ordinary words; URL passwords are caught by pattern anyway.
  return [...secrets].filter((secret) => secret.length >= 4).sort((a, b) => b.length - a.length);
}

/**
 * A destination that scrubs each finished line with redactSecrets before writing it: whatever
 * depth a credential sits at (an error's message or stack, a nested object, the message text),
 * it never reaches the log.
 */
function scrubbing(target: pino.DestinationStream, secrets: readonly string[]): pino.DestinationStream {
  const stream = target as pino.DestinationStream & { flush?: (cb?: () => void) => void; flushSync?: () => void };
  return {
    write: (line: string) => stream.write(redactSecrets(line, secrets)),
    ...(stream.flush ? { flush: (cb?: () => void) => stream.flush?.(cb) } : {}),
    ...(stream.flushSync ? { flushSync: () => stream.flushSync?.() } : {}),
  } as pino.DestinationStream;
}

export interface LoggerOptions {
  level: string;
  name?: string;
  destination?: pino.DestinationStream;
  /** Known secret values to remove from every line (configSecrets(config)), besides the patterns. */
  secrets?: readonly string[];
}

/**
 * pino with credential redaction: the Authorization header and fields named like secrets are
 * censored as objects (pino's `redact`, one level deep), and every finished line is scrubbed
 * (redactSecrets: URL passwords, bearer credentials, secret fields at any depth, known values).
 */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      name: options.name ?? 'prewarm',
      serializers: { err: serializeError },
      redact: {
        paths: ['req.headers.authorization', 'headers.authorization', '*.password', '*.token', '*.tokens', 'config.apiTokens', 'config.adminToken'],
        censor: REDACTED,
      },
    },
    scrubbing(options.destination ?? pino.destination(2), options.secrets ?? []),
  );
}

/**
 * pino's error serializer, less what does not belong in a log line: pg-pool attaches the whole
 * client (≈4 KB with its connection parameters) to the errors it emits.
 */
function serializeError(error: Error): ReturnType<typeof pino.stdSerializers.err> {
  const serialized = pino.stdSerializers.err(error);
  if (serialized && typeof serialized === 'object' && 'client' in serialized) delete (serialized as { client?: unknown }).client;
  return serialized;
}

/**
 * Logs a repeating error once per `intervalMs` (default 10 s) with the number of occurrences
 * since the last line, instead of once per occurrence: an outage of a dependency must not turn
 * into megabytes of identical stack traces and cost the process its throughput.
 */
export function throttledErrorLog(log: Logger, message: string, intervalMs = 10_000): (error: unknown) => void {
  let lastAt = -Infinity;
  let suppressed = 0;
  return (error) => {
    const now = Date.now();
    if (now - lastAt < intervalMs) {
      suppressed++;
      return;
    }
    log.error({ err: error, ...(suppressed > 0 ? { suppressed } : {}) }, message);
    lastAt = now;
    suppressed = 0;
  };
}
