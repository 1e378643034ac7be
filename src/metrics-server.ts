/**
 * --metrics unix:PATH|tcp:HOST:PORT: a small HTTP/1.1 server that answers
 *   GET /metrics   the counters in Prometheus text format (daemon/metrics.ts,
 *                  the same text as the daemon's API serves)
 *   GET /stats     the same counters as JSON, as the stats line has them
 *                  (?macTable=1 adds the MAC table's entries)
 * and nothing else (404; 405 for other methods). Read-only, no
 * authentication: metrics-endpoint.ts refuses a TCP address that is not a
 * loopback one unless --metrics-allow-remote says otherwise. A unix socket
 * takes its permissions from the umask; an existing socket file there is
 * replaced (a previous run's), any other file is refused; it is removed at
 * close. Connections are bounded in number and time: a scraper is one
 * client asking every few seconds.
 */
import { lstatSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError } from './errors.js';
import type { Logger } from './log.js';
import { prometheusText } from './daemon/metrics.js';
import type { MetricsListen, MetricsServer, StatsSource } from './metrics-endpoint.js';

const MAX_CONNECTIONS = 16;
const REQUEST_TIMEOUT_MS = 10_000;
const IDLE_TIMEOUT_MS = 30_000;

/** Starts serving; rejects when it cannot listen. `guests`: the daemon's count (usernet_guests). */
export async function startMetricsServer(listen: MetricsListen, source: StatsSource, log: Logger, guests?: () => number): Promise<MetricsServer> {
  const server: Server = createServer({ requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS }, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://usernet');
    const known = url.pathname === '/metrics' || url.pathname === '/stats';
    if (!known) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics or GET /stats\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('only GET\n');
      return;
    }
    const [type, body] =
      url.pathname === '/metrics'
        ? ['text/plain; version=0.0.4', prometheusText(source.stats(), guests?.())]
        : ['application/json', `${JSON.stringify(source.stats({ macTable: wantsMacTable(url) }))}\n`];
    res.writeHead(200, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.keepAliveTimeout = IDLE_TIMEOUT_MS;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  if (listen.kind === 'unix') removeStaleSocket(listen.path);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = () => {
      server.off('error', reject);
      resolve();
    };
    if (listen.kind === 'unix') server.listen(listen.path, done);
    else server.listen(listen.port, listen.host, done);
  });
  let address: string;
  // The socket file is removed at close only while it is still ours (another run may have replaced it).
  let inode = -1;
  if (listen.kind === 'unix') {
    address = `unix:${listen.path}`;
    inode = lstatSync(listen.path).ino;
  }
  else {
    const a = server.address() as AddressInfo;
    address = `tcp:${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }
  log.info(`metrics: GET /metrics and /stats on ${address}`);
  let closed: Promise<void> | null = null;
  return {
    address,
    close: () => {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }).then(() => {
        if (listen.kind === 'unix' && inodeOf(listen.path) === inode) rmSync(listen.path, { force: true });
      });
      return closed;
    },
  };
}

/** ?macTable=1 (or true, yes, or the bare key). */
export function wantsMacTable(url: URL): boolean {
  const v = url.searchParams.get('macTable');
  return v !== null && ['', '1', 'true', 'yes'].includes(v);
}

function inodeOf(path: string): number {
  try {
    return lstatSync(path).ino;
  } catch {
    return -2;
  }
}

function removeStaleSocket(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new ConfigError(`--metrics unix:${path}: the file exists and is not a socket`);
  rmSync(path, { force: true });
}
