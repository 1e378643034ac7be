/**
 * `usernet docker`: attaches Docker containers to a usernet daemon by label,
 * for where a network driver cannot work (gVisor with Docker >= 28, whose
 * drivers wait for netlink link updates that gVisor does not send) or is not
 * wanted. A client of two APIs: Docker's Engine API on its unix socket, and
 * the daemon's (cli.ts `call`).
 *
 *   docker run --network none --dns N+3 --label usernet.network=NAME \
 *     [--label usernet.publish=8080:80,127.0.0.1:5353:53/udp] \
 *     [--label usernet.name=web] [--label usernet.ip=10.0.2.150] IMAGE ...
 *
 * How it works
 * - It subscribes to the event stream (GET /events, container start and
 *   die, filtered by the label usernet.network=NAME) first, then lists the
 *   running containers with that label and attaches those that are not, and
 *   detaches this network's guests whose container is gone: nothing that
 *   happens in between is missed.
 * - start: inspect the container (its PID, name, labels), attach its network
 *   namespace by PID (lease id: the container id; DNS name: usernet.name,
 *   else the container's name when it is a valid host name), then publish
 *   usernet.publish ([HOST_ADDR:]HOST_PORT:CTR_PORT[/tcp|udp], comma or
 *   space separated) as forwards owned by the guest.
 * - die: detach (the daemon also detaches by itself when the PID exits).
 * - The container's command runs before its interface exists (Docker has no
 *   hook between creating the namespace and starting the process that an
 *   API client could use): a command that needs the network at once waits
 *   for eth0 to have its address.
 * - Events are handled one at a time, in order. When the stream ends
 *   (dockerd restarted) it reconnects and reconciles again. SIGTERM/SIGINT
 *   stop following; attached containers stay attached.
 */
import { request, type IncomingMessage } from 'node:http';
import { isValidHostName } from '../../stack/dns-local-names.js';
import { ConfigError, UsernetError } from '../errors.js';
import type { Logger } from '../log.js';
import { call, parseDaemonPublish } from './cli.js';
import type { GuestInfo } from './guests.js';

export const LABEL_NETWORK = 'usernet.network';
export const LABEL_PUBLISH = 'usernet.publish';
export const LABEL_NAME = 'usernet.name';
export const LABEL_IP = 'usernet.ip';
export const LABEL_IFNAME = 'usernet.ifname';
/** Pause before following the events again after the stream ended or could not start. */
const RECONNECT_MS = 1000;
const DOCKER_TIMEOUT_MS = 30_000;

export interface DockerFollowCommand {
  apiSocket: string | undefined;
  /** unix:///path (the only kind supported). */
  dockerHost: string;
  /** The value of the usernet.network label to follow. */
  network: string;
}

interface Inspect {
  Id: string;
  Name: string;
  State: { Running: boolean; Pid: number };
  Config: { Labels: Record<string, string> | null };
  HostConfig: { NetworkMode: string };
}

interface DockerEvent {
  Type?: string;
  Action?: string;
  Actor?: { ID?: string };
}

export function dockerSocketPath(host: string): string {
  if (!host.startsWith('unix://') || host.length <= 'unix://'.length) throw new ConfigError(`--docker-host ${host}: only unix:///PATH is supported`);
  return host.slice('unix://'.length);
}

/** One Engine API request; resolves to the parsed JSON answer (null for an empty one). */
function docker(socketPath: string, method: string, path: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, timeout: DOCKER_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if ((res.statusCode ?? 500) >= 400) {
          let message = text.trim();
          try {
            message = (JSON.parse(text) as { message?: string }).message ?? message;
          } catch {
            // not JSON
          }
          reject(new UsernetError('ERR_DOCKER', `docker ${method} ${path}: HTTP ${res.statusCode}: ${message}`));
          return;
        }
        if (!/json/i.test(String(res.headers['content-type'] ?? ''))) {
          resolve(text);
          return;
        }
        try {
          resolve(JSON.parse(text));
        } catch {
          reject(new UsernetError('ERR_DOCKER', `docker ${method} ${path}: not JSON`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new UsernetError('ERR_DOCKER', `${socketPath}: no answer within ${DOCKER_TIMEOUT_MS / 1000} s`)));
    req.on('error', (err: NodeJS.ErrnoException) => reject(err instanceof UsernetError ? err : new UsernetError('ERR_DOCKER', `${socketPath}: ${err.message}`)));
    req.end();
  });
}

export async function runDockerFollower(cmd: DockerFollowCommand, log: Logger): Promise<number> {
  const socketPath = dockerSocketPath(cmd.dockerHost);
  const label = `${LABEL_NETWORK}=${cmd.network}`;
  const owner = `docker:${cmd.network}`;
  // Fail early and clearly when either side is missing.
  await call(cmd.apiSocket, 'GET', '/v1/health');
  await docker(socketPath, 'GET', '/_ping');

  let queue: Promise<void> = Promise.resolve();
  const enqueue = (what: string, fn: () => Promise<void>) => {
    queue = queue.then(fn).catch((err: unknown) => log.error(`docker: ${what}: ${(err as Error).message}`));
  };

  async function attach(id: string): Promise<void> {
    const c = (await docker(socketPath, 'GET', `/containers/${encodeURIComponent(id)}/json`)) as Inspect;
    if (!c.State.Running || c.State.Pid <= 0) return;
    const labels = c.Config.Labels ?? {};
    if (labels[LABEL_NETWORK] !== cmd.network) return;
    if (c.HostConfig.NetworkMode !== 'none') log.warn(`docker: container ${c.Name} has network mode ${c.HostConfig.NetworkMode}; give it --network none`);
    const own = c.Name.replace(/^\//, '');
    const name = labels[LABEL_NAME] ?? (isValidHostName(own) ? own : undefined);
    const req = {
      id: c.Id,
      pid: c.State.Pid,
      owner,
      ...(name === undefined ? {} : { name }),
      ...(labels[LABEL_IP] === undefined ? {} : { ipv4: labels[LABEL_IP] }),
      ...(labels[LABEL_IFNAME] === undefined ? {} : { ifname: labels[LABEL_IFNAME] }),
    };
    let g: GuestInfo;
    try {
      g = (await call(cmd.apiSocket, 'POST', '/v1/guests', req)) as GuestInfo;
    } catch (err) {
      if (err instanceof UsernetError && err.code === 'ERR_GUEST_EXISTS') return;
      throw err;
    }
    log.info(`docker: ${own} (${c.Id.slice(0, 12)}) attached: ${g.ipv4}${g.name === null ? '' : `, name ${g.name}`}`);
    for (const spec of (labels[LABEL_PUBLISH] ?? '').split(/[\s,]+/).filter((s) => s !== '')) {
      try {
        const f = parseDaemonPublish(spec, true);
        const entry = (await call(cmd.apiSocket, 'POST', '/v1/forwards', { ...f, guest: c.Id, family: f.hostAddr.includes(':') ? 6 : 4 })) as { id: number };
        log.info(`docker: ${own}: published ${spec} (forward ${entry.id})`);
      } catch (err) {
        log.error(`docker: ${own}: cannot publish ${spec}: ${(err as Error).message}`);
      }
    }
  }

  async function detach(id: string): Promise<void> {
    try {
      await call(cmd.apiSocket, 'DELETE', `/v1/guests/${encodeURIComponent(id)}`);
      log.info(`docker: ${id.slice(0, 12)} detached`);
    } catch (err) {
      if (!(err instanceof UsernetError && err.code === 'ERR_NO_GUEST')) throw err;
    }
  }

  async function reconcile(): Promise<void> {
    const filters = encodeURIComponent(JSON.stringify({ label: [label] }));
    const running = (await docker(socketPath, 'GET', `/containers/json?filters=${filters}`)) as { Id: string }[];
    const ids = new Set(running.map((c) => c.Id));
    const { guests } = (await call(cmd.apiSocket, 'GET', '/v1/guests')) as { guests: GuestInfo[] };
    for (const g of guests) if (g.owner === owner && !ids.has(g.id)) await detach(g.id);
    const attached = new Set(guests.map((g) => g.id));
    for (const id of ids) if (!attached.has(id)) await attach(id);
  }

  let stopping = false;
  let current: IncomingMessage | null = null;
  let wake: (() => void) | null = null;

  /** Follows the stream until it ends; resolves either way. */
  function follow(): Promise<void> {
    const filters = encodeURIComponent(JSON.stringify({ type: ['container'], event: ['start', 'die'], label: [label] }));
    return new Promise<void>((resolve) => {
      const req = request({ socketPath, method: 'GET', path: `/events?filters=${filters}` }, (res) => {
        if ((res.statusCode ?? 500) >= 400) {
          log.error(`docker: GET /events: HTTP ${res.statusCode}`);
          res.resume();
          res.on('end', resolve);
          return;
        }
        current = res;
        log.info(`docker: following containers labelled ${label} on ${cmd.dockerHost}`);
        enqueue('reconcile', reconcile);
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          buf += d;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (line === '') continue;
            let ev: DockerEvent;
            try {
              ev = JSON.parse(line) as DockerEvent;
            } catch {
              log.warn(`docker: an event that is not JSON: ${line.slice(0, 200)}`);
              continue;
            }
            const id = ev.Actor?.ID;
            if (ev.Type !== 'container' || typeof id !== 'string') continue;
            if (ev.Action === 'start') enqueue(`attach ${id.slice(0, 12)}`, () => attach(id));
            else if (ev.Action === 'die') enqueue(`detach ${id.slice(0, 12)}`, () => detach(id));
          }
        });
        res.on('close', () => {
          current = null;
          resolve();
        });
      });
      req.on('error', (err) => {
        if (!stopping) log.error(`docker: ${cmd.dockerHost}: ${err.message}`);
        resolve();
      });
      req.end();
    });
  }

  const stop = (sig: NodeJS.Signals) => {
    log.info(`${sig}: no longer following Docker`);
    stopping = true;
    (current as IncomingMessage | null)?.destroy();
    wake?.();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  while (!stopping) {
    await follow();
    if (stopping) break;
    log.warn(`docker: the event stream ended; following again in ${RECONNECT_MS} ms`);
    await new Promise<void>((r) => {
      wake = r;
      setTimeout(r, RECONNECT_MS);
    });
  }
  await queue;
  return 0;
}
