/**
 * The slirp4netns JSON API on a unix stream socket: add_hostfwd,
 * list_hostfwd, remove_hostfwd.
 *
 * How it works
 * - One request per connection. The client writes one JSON object (maybe
 *   with a trailing newline) and usually shuts down its write side; we
 *   answer as soon as the bytes so far form a complete object, or at EOF,
 *   with a single write, then close. Podman reads the reply with one read
 *   into 2048 bytes, so replies stay below API_REPLY_MAX.
 * - A request of API_REQUEST_MAX bytes or more is an error ("too large
 *   message"), as in slirp4netns, whose read buffer is that size.
 * - Every reply, errors included, is followed by a close once it is written,
 *   as slirp4netns shuts down and closes after its one write: a client that
 *   keeps writing gets EPIPE instead of an open connection forever.
 * - A connection that has not sent a whole request within
 *   API_REQUEST_TIMEOUT_MS of its accept (idle, or trickling bytes) is
 *   closed without a reply; at most API_MAX_CONNECTIONS are open at once and
 *   the kernel's accept hands further ones to Node, which closes them at
 *   once. So no client can hold an fd of ours for long, or many of them.
 * - Error descriptions are slirp4netns' own ("bad request: ..."), since
 *   clients show them and tests compare them.
 * - `handleApiRequest` is pure apart from the forwards it drives, so the
 *   request/reply shapes are unit-tested without sockets.
 */
import { createServer, type Server } from 'node:net';
import { closeSync, constants as fsConstants, openSync, unlinkSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { native } from '../native/addon.js';
import { isIPv4 } from 'node:net';
import type { ForwardEntry, ForwardSpec } from '../host/port-forwards.js';
import type { Logger } from '../log.js';

export const API_REQUEST_MAX = 4096;
export const API_REPLY_MAX = 2048;
/**
 * A local client writes its request at once (podman, rootlesskit, curl): two
 * seconds is ample and still short next to the clients' own timeouts.
 */
export const API_REQUEST_TIMEOUT_MS = 2_000;
/** Requests are tiny and answered within milliseconds: a handful of clients at once is plenty. */
export const API_MAX_CONNECTIONS = 16;

export interface ApiLimits {
  requestTimeoutMs?: number;
  maxConnections?: number;
}

/** What the API drives: PortForwards satisfies it. */
export interface ForwardTable {
  add(spec: ForwardSpec): Promise<ForwardEntry>;
  remove(id: number): boolean;
  list(): ForwardEntry[];
}

type Reply = Record<string, unknown>;

const badRequest = (what: string): Reply => ({ error: { desc: `bad request: ${what}` } });

function isPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
}

/** Answers one request (its raw bytes) with the reply object. */
export async function handleApiRequest(raw: Buffer, forwards: ForwardTable, defaultGuest: string, log?: Logger): Promise<Reply> {
  if (raw.length >= API_REQUEST_MAX) return badRequest('too large message');
  let req: unknown;
  try {
    req = JSON.parse(raw.toString('utf8'));
  } catch {
    return badRequest('cannot parse JSON');
  }
  if (typeof req !== 'object' || req === null || Array.isArray(req)) return badRequest('cannot parse JSON');
  const o = req as Record<string, unknown>;
  if (typeof o.execute !== 'string') return badRequest('no execute found');
  const args = typeof o.arguments === 'object' && o.arguments !== null ? (o.arguments as Record<string, unknown>) : {};
  switch (o.execute) {
    case 'add_hostfwd':
      return addHostfwd(args, forwards, defaultGuest, log);
    case 'list_hostfwd':
      return listHostfwd(forwards);
    case 'remove_hostfwd': {
      const id = args.id;
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 1 || !forwards.remove(id)) {
        return badRequest('remove_hostfwd: bad arguments.id');
      }
      return { return: {} };
    }
    default:
      return badRequest('unknown execute');
  }
}

async function addHostfwd(a: Record<string, unknown>, forwards: ForwardTable, defaultGuest: string, log?: Logger): Promise<Reply> {
  const bad = (field: string) => badRequest(`add_hostfwd: bad arguments.${field}`);
  if (a.proto !== 'tcp' && a.proto !== 'udp') return bad('proto');
  const hostAddr = a.host_addr === undefined || a.host_addr === '' ? '0.0.0.0' : a.host_addr;
  if (typeof hostAddr !== 'string' || !isIPv4(hostAddr)) return bad('host_addr');
  if (!isPort(a.host_port)) return bad('host_port');
  const guestAddr = a.guest_addr === undefined || a.guest_addr === '' ? defaultGuest : a.guest_addr;
  if (typeof guestAddr !== 'string' || !isIPv4(guestAddr)) return bad('guest_addr');
  if (!isPort(a.guest_port)) return bad('guest_port');
  try {
    const e = await forwards.add({ proto: a.proto, hostAddr, hostPort: a.host_port, guestAddr, guestPort: a.guest_port });
    return { return: { id: e.id } };
  } catch (err) {
    // The reply must be slirp4netns' own words; the cause goes to the log.
    log?.warn(`add_hostfwd ${a.proto} ${hostAddr}:${String(a.host_port)}: ${(err as Error).message}`);
    return badRequest('add_hostfwd: slirp_add_hostfwd failed');
  }
}

function listHostfwd(forwards: ForwardTable): Reply {
  const entries = forwards.list().map((e) => ({
    id: e.id,
    proto: e.proto,
    host_addr: e.hostAddr,
    host_port: e.hostPort,
    guest_addr: e.guestAddr,
    guest_port: e.guestPort,
  }));
  // slirp4netns answers with a bare "entries" although its man page wraps it in
  // "return": give both while that fits one read of the client.
  const both = { entries, return: { entries } };
  return JSON.stringify(both).length < API_REPLY_MAX ? both : { entries };
}

export interface ApiServer {
  close(): void;
}

/** O_PATH (Linux, the same value on x86-64 and arm64): a directory handle for *at() calls, no read permission needed. */
const O_PATH = 0o10000000;

/**
 * Removes whatever is at `path`, listens there, and answers requests until
 * close(), which also unlinks the path. The unlink goes through an fd of the
 * socket's directory opened right after bind: after --enable-sandbox the path
 * may not exist in our root any more (a socket under /tmp) or sit on a
 * read-only bind (/run), while the directory fd still reaches the original.
 */
export function startApiServer(path: string, forwards: ForwardTable, defaultGuest: string, log: Logger, limits: ApiLimits = {}): Promise<ApiServer> {
  const requestTimeoutMs = limits.requestTimeoutMs ?? API_REQUEST_TIMEOUT_MS;
  try {
    unlinkSync(path);
  } catch {
    // nothing there
  }
  const server: Server = createServer({ allowHalfOpen: true }, (conn) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let answered = false;
    const deadline = setTimeout(() => {
      if (answered) return;
      answered = true;
      log.debug(`api: no complete request within ${requestTimeoutMs} ms; closing`);
      conn.destroy();
    }, requestTimeoutMs);
    deadline.unref();
    conn.on('close', () => clearTimeout(deadline));
    const answer = () => {
      if (answered) return;
      answered = true;
      clearTimeout(deadline);
      const raw = Buffer.concat(chunks, size);
      handleApiRequest(raw, forwards, defaultGuest, log).then(
        (reply) => {
          // Reply, then close (not half-close): what the client still sends is not read.
          if (!conn.destroyed) conn.end(JSON.stringify(reply), () => conn.destroy());
        },
        (err: Error) => {
          log.warn(`api: ${err.message}`);
          conn.destroy();
        },
      );
    };
    conn.on('data', (d: Buffer) => {
      if (answered) return;
      chunks.push(d);
      size += d.length;
      if (size >= API_REQUEST_MAX) return answer();
      const text = Buffer.concat(chunks, size).toString('utf8').trim();
      // A JSON object is complete exactly when it parses; a prefix of one never does.
      if (text.startsWith('{') && text.endsWith('}')) {
        try {
          JSON.parse(text);
          answer();
        } catch {
          // wait for more
        }
      }
    });
    conn.on('end', answer);
    conn.on('error', (err) => log.debug(`api connection: ${err.message}`));
  });
  server.maxConnections = limits.maxConnections ?? API_MAX_CONNECTIONS;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      server.on('error', (err) => log.warn(`api socket: ${err.message}`));
      let dirFd = -1;
      try {
        dirFd = openSync(dirname(path), O_PATH | fsConstants.O_DIRECTORY);
      } catch (err) {
        log.debug(`api socket: cannot open its directory (${(err as Error).message}); unlinking by path at exit`);
      }
      let closed = false;
      resolve({
        close: () => {
          if (closed) return;
          closed = true;
          server.close();
          try {
            if (dirFd >= 0) native.unlinkAt(dirFd, basename(path));
            else unlinkSync(path);
          } catch {
            // already gone
          }
          if (dirFd >= 0) closeSync(dirFd);
        },
      });
    });
  });
}
