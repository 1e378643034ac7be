/**
 * The diagnostics flags shared by `usernet --tap`, `run` and `daemon`
 * (--log-format, --log-file, --stats-mac-table, --metrics,
 * --metrics-allow-remote, --pcap-format), parsed apart from options.ts so
 * that the runtime's options gain one spread, not a block of checks.
 */
import type { ParseArgsConfig } from 'node:util';
import { ConfigError } from './errors.js';
import type { CaptureFormat } from './pcap-writer.js';
import { parseMetricsListen, type MetricsListen } from './metrics-endpoint.js';
import { isLogFormat, openLogger, type LogFormat, type LogLevel, type Logger } from './log.js';

export const observabilityFlags = {
  'log-format': { type: 'string' },
  'log-file': { type: 'string' },
  'stats-mac-table': { type: 'boolean' },
  metrics: { type: 'string' },
  'metrics-allow-remote': { type: 'boolean' },
  'pcap-format': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export interface ObservabilityValues {
  'log-format'?: string;
  'log-file'?: string;
  'stats-mac-table'?: boolean;
  metrics?: string;
  'metrics-allow-remote'?: boolean;
  'pcap-format'?: string;
}

export interface ObservabilityOptions {
  logFormat: LogFormat;
  /** Append log lines here instead of stderr. */
  logFile: string | null;
  /** Stats lines (SIGUSR1, --stats-interval) include the MAC table's entries. */
  statsMacTable: boolean;
  /** Serve GET /metrics (and GET /stats) here (metrics-server.ts). */
  metrics: MetricsListen | null;
  /** --pcap's file format. */
  pcapFormat: CaptureFormat;
}

export function observabilityOptions(v: ObservabilityValues): ObservabilityOptions {
  const logFormat = v['log-format'] ?? 'text';
  if (!isLogFormat(logFormat)) throw new ConfigError(`--log-format ${logFormat}: use text or json`);
  const logFile = v['log-file'] ?? null;
  if (logFile === '') throw new ConfigError('--log-file: give a file name');
  const pcapFormat = v['pcap-format'] ?? 'pcapng';
  if (!isCaptureFormat(pcapFormat)) throw new ConfigError(`--pcap-format ${pcapFormat}: use pcapng (one interface per bridge port) or pcap`);
  if (v['metrics-allow-remote'] && v.metrics === undefined) throw new ConfigError('--metrics-allow-remote needs --metrics tcp:ADDRESS:PORT');
  return {
    logFormat,
    logFile,
    statsMacTable: v['stats-mac-table'] === true,
    metrics: v.metrics === undefined ? null : parseMetricsListen(v.metrics, v['metrics-allow-remote'] === true),
    pcapFormat,
  };
}

export function isCaptureFormat(s: string): s is CaptureFormat {
  return s === 'pcapng' || s === 'pcap';
}

/** The front end's logger, for its last words (reportFatal). */
let frontEnd: Logger | null = null;

/** The logger a front end runs with: --log-level, --log-format, --log-file, timestamps on. */
export function frontEndLogger(level: LogLevel, o: ObservabilityOptions | undefined): Logger {
  frontEnd = openLogger(level, o?.logFormat ?? 'text', o?.logFile ?? null);
  return frontEnd;
}

/**
 * A fatal error as the front end's last words: on stderr as a plain line
 * (whoever started usernet sees why it stopped), and through the logger
 * when that writes a file; a json logger on stderr writes it instead of the
 * plain line, so that stderr stays one object per line.
 */
export function reportFatal(text: string, log: Logger | null = frontEnd): void {
  const jsonOnStderr = log !== null && log.format === 'json' && log.destination === 'stderr';
  if (log !== null && (jsonOnStderr || log.destination !== 'stderr')) log.error(text);
  if (!jsonOnStderr) process.stderr.write(`usernet: ${text}\n`);
}
