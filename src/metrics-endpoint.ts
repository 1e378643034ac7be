/**
 * --metrics: the address (parsed with the other options, without loading
 * node:http, which `usernet run` would otherwise pay for at every start) and
 * the front ends' call, which loads the server (metrics-server.ts) only when
 * one was asked for.
 */
import { isIP } from 'node:net';
import { ConfigError } from './errors.js';
import type { Logger } from './log.js';

export type MetricsListen = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export function parseMetricsListen(text: string, allowRemote: boolean): MetricsListen {
  const bad = (why: string) => new ConfigError(`--metrics ${text}: ${why} (expected unix:PATH or tcp:HOST:PORT, e.g. tcp:127.0.0.1:9464)`);
  if (text.startsWith('unix:')) {
    const path = text.slice(5);
    if (path === '') throw bad('no path');
    return { kind: 'unix', path };
  }
  if (!text.startsWith('tcp:')) throw bad('unknown kind');
  const m = /^tcp:(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (m === null) throw bad('not HOST:PORT (IPv6 in brackets)');
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  if (port > 65535) throw bad('port out of range');
  if (host !== 'localhost' && isIP(host) === 0) throw bad(`"${host}" is not an IP address`);
  if (!allowRemote && !isLoopback(host)) {
    throw new ConfigError(
      `--metrics ${text}: not a loopback address; the endpoint has no authentication, so other hosts may read it only with --metrics-allow-remote`,
    );
  }
  return { kind: 'tcp', host, port };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Where a running metrics server listens: `unix:PATH` or `tcp:HOST:PORT` (the port the kernel gave for 0). */
export interface MetricsServer {
  readonly address: string;
  close(): Promise<void>;
}

export interface StatsSource {
  stats(opts?: { macTable?: boolean }): object;
}

/** The front ends' call: null when --metrics was not given. */
export function startMetrics(o: { observe?: { metrics: MetricsListen | null } }, source: StatsSource, log: Logger, guests?: () => number): Promise<MetricsServer | null> {
  const listen = o.observe?.metrics ?? null;
  if (listen === null) return Promise.resolve(null);
  return import('./metrics-server.js').then((m) => m.startMetricsServer(listen, source, log, guests));
}
