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
      redact: {
        paths: ['req.headers.authorization', 'headers.authorization', '*.password', '*.token', '*.tokens', 'config.apiTokens', 'config.adminToken'],
        censor: '[redacted]',
      },
    },
    options.destination ?? pino.destination(2),
  );
}
