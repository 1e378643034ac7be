/**
 * The daemon's control API: HTTP/1.1 with JSON bodies on a unix socket.
 *
 *   GET    /v1/health            {"ok":true,"guests":N,"uptimeSeconds":S}
 *   GET    /v1/guests            {"guests":[GuestInfo...]}
 *   POST   /v1/guests            AttachRequest -> 201 GuestInfo ({pid} | {netns[, userns]} | {tap}: see guests.ts)
 *   GET    /v1/guests/ID         GuestInfo
 *   DELETE /v1/guests/ID         {"detached":"ID"}
 *   GET    /v1/forwards          {"forwards":[ForwardEntry...]}
 *   POST   /v1/forwards          {proto, hostAddr, hostPort, guest (an id) | guestAddr, guestPort} -> 201 ForwardEntry
 *                                 (a forward to a guest by id is removed when that guest is detached)
 *   DELETE /v1/forwards/ID       {"removed":ID}
 *   GET    /v1/ports             {"ports":[SocketPortInfo...]} (socket ports, also those from the command line)
 *   POST   /v1/ports             {kind:"qemu-stream"|"dgram", listen} | {kind:"vxlan", remote, vni?, local?} -> 201 SocketPortInfo
 *   DELETE /v1/ports/ID          {"removed":ID} (its VMs or remotes leave the bridge, its socket closes)
 *   GET    /stats                the runtime's counters (as SIGUSR1 prints them) and the guests;
 *                                 ?macTable=1 adds the MAC table's entries
 *   GET    /metrics              the same counters in Prometheus text format
 *
 * Errors: {"error":{"code":"ERR_...","message":"..."}} with 400 (bad
 * request), 404, 405, 409 (conflict), 413 (body over MAX_BODY_BYTES), 415
 * (not JSON), 500 (the system refused: the message says what), 503
 * (shutting down). The socket is created with mode 0600 (only its owner may
 * attach namespaces); connections are bounded in number and time.
 */
import { rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { ConfigError, NativeError, UsernetError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ForwardSpec } from '../host/port-forwards.js';
import type { Runtime } from '../runtime.js';
import type { SocketPorts } from '../socket-ports.js';
import { parseSocketPortRequest } from '../socket-port-options.js';
import type { AttachRequest, Guests } from './guests.js';
import { prometheusText } from './metrics.js';
import { listenUnix } from './unix-listen.js';
import { wantsMacTable } from '../metrics-server.js';

/** Requests are small JSON objects; anything larger is refused before it is read in full. */
export const MAX_BODY_BYTES = 64 * 1024;
const MAX_CONNECTIONS = 64;
/** A client has this long to send its whole request. */
const REQUEST_TIMEOUT_MS = 10_000;
const IDLE_TIMEOUT_MS = 30_000;

export interface ApiServer {
  readonly path: string;
  close(): Promise<void>;
}

class HttpError extends UsernetError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(code, message);
  }
}

export async function startApi(path: string, mode: number, runtime: Runtime, guests: Guests, sockets: SocketPorts, log: Logger): Promise<ApiServer> {
  const startedAt = Date.now();
  let closing = false;
  const server: Server = createServer({ requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS }, (req, res) => {
    void handle(req, res).catch((err: unknown) => {
      const status = errorStatus(err);
      // An oversized body is not read to its end: answer, then close the connection.
      if (status === 413) {
        res.setHeader('connection', 'close');
        res.once('finish', () => req.socket.destroy());
      }
      reply(res, status, errorBody(err, log));
    });
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.keepAliveTimeout = IDLE_TIMEOUT_MS;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (closing) throw new HttpError(503, 'ERR_SHUTTING_DOWN', 'the daemon is shutting down');
    const url = new URL(req.url ?? '/', 'http://usernet');
    const parts = url.pathname.split('/').filter((p) => p !== '');
    const method = req.method ?? 'GET';
    const route = `${method} /${parts.map((p, i) => (i === 2 ? ':id' : p)).join('/')}`;
    const id = parts[2] === undefined ? '' : decodeURIComponent(parts[2]);
    switch (route) {
      case 'GET /v1/health':
        return reply(res, 200, { ok: true, guests: guests.size, uptimeSeconds: Math.round((Date.now() - startedAt) / 1000) });
      case 'GET /v1/guests':
        return reply(res, 200, { guests: guests.list() });
      case 'POST /v1/guests': {
        const body = (await readJson(req)) as AttachRequest;
        return reply(res, 201, guests.attach(body));
      }
      case 'GET /v1/guests/:id': {
        const g = guests.get(id);
        if (g === null) throw new HttpError(404, 'ERR_NO_GUEST', `no guest "${id}" is attached`);
        return reply(res, 200, g);
      }
      case 'DELETE /v1/guests/:id':
        if (!guests.detach(id)) throw new HttpError(404, 'ERR_NO_GUEST', `no guest "${id}" is attached`);
        return reply(res, 200, { detached: id });
      case 'GET /v1/forwards':
        return reply(res, 200, { forwards: runtime.forwards.list() });
      case 'POST /v1/forwards': {
        const body = await readJson(req);
        const spec = forwardSpec(body, guests);
        const entry = await runtime.forwards.add(spec);
        const owner = (body as { guest?: unknown }).guest;
        // A forward to a guest by id goes away with the guest (CNI DEL, a container's exit).
        if (typeof owner === 'string') guests.ownForward(owner, entry.id);
        return reply(res, 201, entry);
      }
      case 'DELETE /v1/forwards/:id': {
        const n = Number(id);
        if (!Number.isInteger(n) || !runtime.forwards.remove(n)) throw new HttpError(404, 'ERR_NO_FORWARD', `no forward ${id}`);
        return reply(res, 200, { removed: n });
      }
      case 'GET /v1/ports':
        return reply(res, 200, { ports: sockets.info() });
      case 'POST /v1/ports':
        return reply(res, 201, await sockets.add(parseSocketPortRequest((await readJson(req)) as Record<string, unknown>)));
      case 'DELETE /v1/ports/:id': {
        const n = Number(id);
        if (!/^\d+$/.test(id) || !(await sockets.remove(n))) throw new HttpError(404, 'ERR_NO_PORT', `no port ${id}`);
        return reply(res, 200, { removed: n });
      }
      case 'GET /stats':
        return reply(res, 200, { ...runtime.stats({ macTable: wantsMacTable(url) }), guests: guests.list() });
      case 'GET /metrics': {
        const text = prometheusText(runtime.stats(), guests.size);
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'content-length': Buffer.byteLength(text) });
        res.end(text);
        return;
      }
      default: {
        const known = ['/v1/health', '/v1/guests', '/v1/guests/:id', '/v1/forwards', '/v1/forwards/:id', '/v1/ports', '/v1/ports/:id', '/stats', '/metrics'];
        const path = route.slice(route.indexOf(' ') + 1);
        if (known.includes(path)) throw new HttpError(405, 'ERR_METHOD', `${method} is not allowed on ${url.pathname}`);
        throw new HttpError(404, 'ERR_NOT_FOUND', `no such endpoint: ${method} ${url.pathname} (see usernet daemon --help)`);
      }
    }
  }

  await listenUnix(server, path, mode, 0o700);
  return {
    path,
    close: async () => {
      closing = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(path, { force: true });
    },
  };
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const type = req.headers['content-type'];
  if (type !== undefined && !/^application\/json\b/i.test(type)) throw new HttpError(415, 'ERR_CONTENT_TYPE', 'the body must be application/json');
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw tooLarge();
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, 'ERR_BAD_JSON', `the body is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HttpError(400, 'ERR_BAD_JSON', 'the body must be a JSON object');
  return value;
}

function tooLarge(): HttpError {
  return new HttpError(413, 'ERR_TOO_LARGE', `the body is larger than ${MAX_BODY_BYTES} bytes`);
}

function forwardSpec(body: unknown, guests: Guests): ForwardSpec {
  const b = body as Record<string, unknown>;
  const proto = b.proto ?? 'tcp';
  if (proto !== 'tcp' && proto !== 'udp') throw new ConfigError('proto must be "tcp" or "udp"', 'proto');
  const port = (v: unknown, field: string) => {
    if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 65535) throw new ConfigError(`${field} must be a port number 1..65535`, field);
    return v as number;
  };
  let guestAddr = b.guestAddr;
  if (b.guest !== undefined) {
    if (typeof b.guest !== 'string') throw new ConfigError('guest must be a guest id', 'guest');
    const g = guests.get(b.guest);
    if (g === null) throw new HttpError(404, 'ERR_NO_GUEST', `no guest "${b.guest}" is attached`);
    guestAddr = b.family === 6 ? g.ipv6 : g.ipv4;
    if (guestAddr === null) throw new ConfigError(`guest "${b.guest}" has no IPv6 address (IPv6 is off)`, 'family');
  }
  if (typeof guestAddr !== 'string') throw new ConfigError('give guest (an attached guest id) or guestAddr', 'guestAddr');
  const hostAddr = b.hostAddr ?? '0.0.0.0';
  if (typeof hostAddr !== 'string') throw new ConfigError('hostAddr must be an address', 'hostAddr');
  return { proto, hostAddr, hostPort: port(b.hostPort, 'hostPort'), guestAddr, guestPort: port(b.guestPort, 'guestPort') };
}

function errorStatus(err: unknown): number {
  if (err instanceof HttpError) return err.status;
  if (err instanceof ConfigError) return 400;
  if (err instanceof UsernetError && ['ERR_GUEST_EXISTS', 'ERR_NAME_TAKEN', 'ERR_ADDRESS_TAKEN', 'ERR_POOL_EXHAUSTED', 'ERR_GUEST_LIMIT', 'ERR_TAP_EXISTS', 'ERR_PORT_EXISTS'].includes(err.code)) return 409;
  if (err instanceof NativeError && (err.code === 'ENOENT' || err.code === 'ESRCH')) return 404;
  if (err instanceof UsernetError && err.code === 'EADDRINUSE') return 409;
  return 500;
}

function errorBody(err: unknown, log: Logger): unknown {
  const e = err as Error & { code?: string; hint?: string };
  if (!(err instanceof UsernetError)) log.error(`api: ${e.stack ?? String(err)}`);
  const message = e.hint ? `${e.message} (${e.hint})` : (e.message ?? String(err));
  return { error: { code: typeof e.code === 'string' ? e.code : 'ERR_INTERNAL', message } };
}
