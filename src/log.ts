/**
 * Leveled logging to stderr, one line per event. Kept to a few lines on
 * purpose: usernet logs rarely and never on the per-frame path, and a logging
 * library would cost start-up time for `usernet run`.
 */

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Logger {
  level: LogLevel;
  error(msg: string): void;
  warn(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
  enabled(level: LogLevel): boolean;
}

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

export function createLogger(level: LogLevel = 'info', write: (line: string) => void = defaultWrite): Logger {
  const rank = (l: LogLevel) => LOG_LEVELS.indexOf(l);
  const logger: Logger = {
    level,
    enabled: (l) => rank(l) <= rank(logger.level),
    error: (m) => emit('error', m),
    warn: (m) => emit('warn', m),
    info: (m) => emit('info', m),
    debug: (m) => emit('debug', m),
  };
  function emit(l: LogLevel, m: string): void {
    if (logger.enabled(l)) write(`usernet: ${l}: ${m}\n`);
  }
  return logger;
}

function defaultWrite(line: string): void {
  process.stderr.write(line);
}
