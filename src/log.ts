import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * pino with credential redaction: the Authorization header and anything that looks like a
 * token or password never reach a log line.
 */
export function createLogger(options: { level: string; name?: string; destination?: pino.DestinationStream }): Logger {
  return pino(
    {
      level: options.level,
      name: options.name ?? 'prewarm',
      serializers: { err: serializeError },
      redact: {
        paths: ['req.headers.authorization', 'headers.authorization', '*.password', '*.token', '*.tokens', 'config.apiTokens', 'config.adminToken'],
        censor: '[redacted]',
      },
    },
    options.destination ?? pino.destination(2),
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
