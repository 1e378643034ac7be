/**
 * Leveled logging, one line per event. Kept to a few lines on purpose:
 * usernet logs rarely and never on the per-frame path, and a logging library
 * would cost start-up time for `usernet run`.
 *
 * Two line formats (--log-format):
 * - text: `usernet: LEVEL: MSG`, after an ISO 8601 UTC time when timestamps
 *   are on (the CLI front ends turn them on; a logger made for a test or
 *   an in-process use has none unless asked);
 * - json: one object per line, {"time":ISO,"level":L,"msg":M, ...fields},
 *   for log collectors (`jq -c 'select(.level=="warn")'`).
 * record() writes what was asked for (the counters) whatever the level: in
 * text as `usernet: NAME {json}`, in json as {"time","level":"info","msg":NAME, ...data}.
 *
 * Lines go to stderr, or appended to --log-file (opened once, written
 * synchronously: a line is on disk before the next statement, and nothing
 * is lost when the process exits right after logging).
 */
import { openSync, writeSync } from 'node:fs';
import { UsernetError } from './errors.js';

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Extra key/values for one line: keys of the JSON object, or ` key=value` after the text. */
export type LogFields = Record<string, unknown>;

export interface Logger {
  level: LogLevel;
  readonly format: LogFormat;
  /** Where lines go: 'stderr' or the --log-file path. */
  readonly destination: string;
  error(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  enabled(level: LogLevel): boolean;
  /** Data that was asked for (the counters), whatever the level. */
  record(name: string, data: object): void;
}

export interface LoggerOptions {
  format?: LogFormat;
  /** Prefix text lines with the time (json lines always carry it). */
  timestamps?: boolean;
  /** The wall clock (tests fix it). */
  clock?: () => Date;
  /** Shown as destination; set by openLogFile. */
  destination?: string;
}

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

export function isLogFormat(s: string): s is LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(s);
}

export function createLogger(level: LogLevel = 'info', write: (line: string) => void = defaultWrite, opts: LoggerOptions = {}): Logger {
  const rank = (l: LogLevel) => LOG_LEVELS.indexOf(l);
  const format = opts.format ?? 'text';
  const clock = opts.clock ?? (() => new Date());
  const stamp = format === 'json' || opts.timestamps === true;
  const logger: Logger = {
    level,
    format,
    destination: opts.destination ?? 'stderr',
    enabled: (l) => rank(l) <= rank(logger.level),
    error: (m, f) => emit('error', m, f),
    warn: (m, f) => emit('warn', m, f),
    info: (m, f) => emit('info', m, f),
    debug: (m, f) => emit('debug', m, f),
    record: (name, data) => {
      const time = clock().toISOString();
      if (format === 'json') write(`${JSON.stringify({ time, level: 'info', msg: name, ...data })}\n`);
      else write(`${stamp ? `${time} ` : ''}usernet: ${name} ${JSON.stringify(data)}\n`);
    },
  };
  function emit(l: LogLevel, m: string, fields: LogFields | undefined): void {
    if (!logger.enabled(l)) return;
    if (format === 'json') {
      write(`${JSON.stringify({ time: clock().toISOString(), level: l, msg: m, ...fields })}\n`);
      return;
    }
    const tail = fields === undefined ? '' : textFields(fields);
    write(`${stamp ? `${clock().toISOString()} ` : ''}usernet: ${l}: ${m}${tail}\n`);
  }
  return logger;
}

/** ` key=value` pairs; strings with spaces or quotes, and objects, as JSON. */
function textFields(fields: LogFields): string {
  let s = '';
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const plain = typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && /^[^\s"=]+$/.test(v));
    s += ` ${k}=${plain ? String(v) : JSON.stringify(v)}`;
  }
  return s;
}

/**
 * The logger of a front end (usernet --tap, run, daemon, slirp4netns):
 * timestamps on, stderr or `file` (appended, created 0644).
 */
export function openLogger(level: LogLevel, format: LogFormat, file: string | null, what = '--log-file'): Logger {
  if (file === null) return createLogger(level, defaultWrite, { format, timestamps: true });
  let fd: number;
  try {
    fd = openSync(file, 'a', 0o644);
  } catch (err) {
    throw new UsernetError('ERR_LOG_FILE', `${what} ${file}: ${(err as Error).message}`, { cause: err });
  }
  const write = (line: string) => {
    try {
      writeSync(fd, line);
    } catch {
      // A full disk must not stop the network: the line is lost.
    }
  };
  return createLogger(level, write, { format, timestamps: true, destination: file });
}

function defaultWrite(line: string): void {
  process.stderr.write(line);
}
