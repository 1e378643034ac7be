/**
 * The daemon's command line: `usernet daemon` runs it; `attach`, `detach`,
 * `ls`, `publish`, `unpublish`, `port` and `stats` are clients of its API socket.
 */
import { request } from 'node:http';
import { isIP } from 'node:net';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, UsernetError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { common, runtimeOptions, usageError, type CommonValues } from '../options.js';
import { frontEndLogger } from '../observability-options.js';
import { DEFAULT_PLUGIN_SOCKET } from './docker-plugin.js';
import type { GuestInfo } from './guests.js';
import type { SocketPortInfo } from '../socket-ports.js';

export const daemonHelp = `usernet daemon: one bridge, gateway and NAT for many namespaces, controlled through an API

Usage:
  usernet daemon [OPTIONS]                           run it (until SIGTERM/SIGINT)
  usernet attach (--pid PID | --netns PATH [--userns PATH]) [--id ID] [--name NAME]
                 [--ifname NAME] [--ip ADDR] [--mac MAC] [--json]
                                                     give a namespace an interface on the network
  usernet attach --tap NAME [--id ID] ...            or create a tap in the daemon's namespace
                                                     (MAC and MTU set, down) to move elsewhere
  usernet detach ID                                  remove it (the lease is kept for ID)
  usernet ls [--json]                                list attached namespaces
  usernet publish [--guest ID] [HOST_ADDR:]HOST_PORT:[GUEST_ADDR:]GUEST_PORT[/tcp|udp]
                                                     forward a host port (IPv6 in brackets)
  usernet unpublish FORWARD_ID                       remove a forward
  usernet port add qemu-stream unix:PATH|tcp:HOST:PORT
  usernet port add dgram unix:PATH
  usernet port add vxlan REMOTE[:PORT][,vni=N][,local=ADDR:PORT]
                                                     open a socket port for VMs or a VXLAN endpoint
                                                     (as --listen-qemu, --listen-dgram, --vxlan); prints its id
  usernet port ls [--json]                           list socket ports (those given at start-up too)
  usernet port rm PORT_ID                            close one: its VMs or remotes leave the network
  usernet stats [--mac-table]                        counters as JSON (--mac-table: with
                                                     the MAC table's entries)

Every client takes --api-socket PATH (default: $USERNET_API_SOCKET, else
/run/usernet/usernet.sock as root, $XDG_RUNTIME_DIR/usernet/usernet.sock or
/tmp/usernet-UID/usernet.sock otherwise).

Daemon options: those of \`usernet --help\` (--cidr, --mtu, --dns, --ipv6-prefix,
--disable-ipv6, --no-offload, -p, --log-level, ...), and
  --api-socket PATH      where the API listens (see above)
  --socket-mode MODE     its permissions, octal (default 0600: only its owner may attach)
  --ready-fd FD          write "1" to FD and close it once the API is up
  --pid-file PATH        write the daemon's PID there (removed at exit)

Guests get N+100 and up (a lease per id, kept across detach and attach),
MAC 52:54 + the IPv4 address, the gateway N+2 (host loopback), DNS N+3, which
also answers the names of attached guests. API: HTTP/1.1 + JSON on the
socket; see README.md, "Containers".
`;

export const DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock';

export const dockerHelp = `usernet and Docker: containers on a usernet daemon's network

Usage:
  usernet docker-plugin [DAEMON OPTIONS] [--plugin-socket PATH]
      a usernet daemon (API socket and all, see usernet daemon --help) that is
      also Docker's network and IPAM driver "usernet" on PATH (default
      ${DEFAULT_PLUGIN_SOCKET}; the file name is the driver's name):
        docker network create -d usernet --ipam-driver usernet NET
        docker run --network NET --dns N+3 [-p HOST_PORT:CTR_PORT] IMAGE ...
  usernet docker [--network NAME] [--docker-host unix:///PATH] [--api-socket PATH]
      follow Docker's events and attach every container labelled
      usernet.network=NAME (default NAME: usernet) to the daemon when it
      starts, detach it when it dies; for Docker versions and sandboxes where
      network drivers cannot work (gVisor with Docker 28 and later):
        docker run --network none --dns N+3 --label usernet.network=NAME \\
          [--label usernet.publish=[HOST_ADDR:]HOST_PORT:CTR_PORT[/udp],...] \\
          [--label usernet.name=DNS_NAME] [--label usernet.ip=ADDR] \\
          [--sysctl net.ipv6.conf.all.disable_ipv6=0] IMAGE ...
      The container's command starts before its interface exists: wait for
      eth0's address when the network is needed at once.

--docker-host defaults to $DOCKER_HOST, else ${DEFAULT_DOCKER_HOST}.
See README.md, "Docker".
`;

export function defaultApiSocket(): string {
  if (process.env.USERNET_API_SOCKET) return process.env.USERNET_API_SOCKET;
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) return '/run/usernet/usernet.sock';
  const base = process.env.XDG_RUNTIME_DIR ? `${process.env.XDG_RUNTIME_DIR}/usernet` : `/tmp/usernet-${uid}`;
  return `${base}/usernet.sock`;
}

type Values = Record<string, string | boolean | string[] | undefined>;

function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>, positionals = 0): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: positionals > 0, strict: true });
    if (r.positionals.length > positionals) throw new ConfigError(`unexpected argument ${r.positionals[positionals]} (see --help)`);
    return { values: r.values as Values, positionals: r.positionals };
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw usageError(err);
  }
}

/** A string option's value. */
function str(values: Values, key: string): string | undefined {
  const v = values[key];
  return typeof v === 'string' ? v : undefined;
}

/** Runs a daemon command; resolves to the exit status. */
export async function runDaemonCommand(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  const apiOpt = { 'api-socket': { type: 'string' } } as const;
  switch (verb) {
    case 'daemon':
    case 'docker-plugin': {
      const plugin = verb === 'docker-plugin';
      const { values } = parse(rest, {
        ...common,
        ...apiOpt,
        'socket-mode': { type: 'string' },
        'ready-fd': { type: 'string' },
        'pid-file': { type: 'string' },
        ...(plugin ? { 'plugin-socket': { type: 'string' } } : {}),
      });
      if (values.help) return plugin ? dockerHelpText() : help();
      const modeText = str(values, 'socket-mode') ?? '0600';
      const mode = Number.parseInt(modeText, 8);
      if (!/^[0-7]{3,4}$/.test(modeText) || mode > 0o777) throw new ConfigError(`--socket-mode ${modeText}: an octal mode such as 0600 or 0660`);
      const readyText = str(values, 'ready-fd');
      const readyFd = readyText === undefined ? -1 : Number(readyText);
      if (readyText !== undefined && (!/^\d+$/.test(readyText) || readyFd > 0x7fff_ffff)) throw new ConfigError(`--ready-fd ${readyText}: a file descriptor number`);
      const options = runtimeOptions(values as CommonValues, 'info');
      const log: Logger = frontEndLogger(options.logLevel, options.observe);
      const { runDaemon } = await import('./daemon.js');
      return await runDaemon(
        {
          options,
          apiSocket: str(values, 'api-socket') ?? defaultApiSocket(),
          socketMode: mode,
          readyFd,
          pidFile: str(values, 'pid-file') ?? null,
          dockerPluginSocket: plugin ? (str(values, 'plugin-socket') ?? DEFAULT_PLUGIN_SOCKET) : null,
        },
        log,
      );
    }
    case 'docker': {
      const { values } = parse(rest, { ...apiOpt, network: { type: 'string' }, 'docker-host': { type: 'string' }, 'log-level': { type: 'string' } });
      if (values.help) return dockerHelpText();
      const network = str(values, 'network') ?? 'usernet';
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(network)) throw new ConfigError(`--network ${network}: letters, digits and _.-`);
      const level = str(values, 'log-level') ?? 'info';
      if (!['error', 'warn', 'info', 'debug'].includes(level)) throw new ConfigError(`--log-level ${level}: error, warn, info or debug`);
      const { runDockerFollower } = await import('./docker-events.js');
      return await runDockerFollower(
        { apiSocket: str(values, 'api-socket'), dockerHost: str(values, 'docker-host') ?? (process.env.DOCKER_HOST || DEFAULT_DOCKER_HOST), network },
        createLogger(level as 'info'),
      );
    }
    case 'attach': {
      const { values } = parse(rest, {
        ...apiOpt,
        pid: { type: 'string' },
        netns: { type: 'string' },
        userns: { type: 'string' },
        tap: { type: 'string' },
        id: { type: 'string' },
        name: { type: 'string' },
        ifname: { type: 'string' },
        ip: { type: 'string' },
        mac: { type: 'string' },
        json: { type: 'boolean' },
      });
      if (values.help) return help();
      if (['pid', 'netns', 'tap'].filter((k) => str(values, k) !== undefined).length !== 1) throw new ConfigError('attach needs one of --pid PID, --netns PATH and --tap NAME');
      const pid = str(values, 'pid') === undefined ? undefined : Number(str(values, 'pid'));
      if (pid !== undefined && (!Number.isInteger(pid) || pid < 1)) throw new ConfigError(`--pid ${str(values, 'pid')}: a process id`);
      const body = {
        ...(pid === undefined ? {} : { pid }),
        ...(str(values, 'netns') === undefined ? {} : { netns: str(values, 'netns') }),
        ...(str(values, 'userns') === undefined ? {} : { userns: str(values, 'userns') }),
        ...(str(values, 'tap') === undefined ? {} : { tap: str(values, 'tap') }),
        ...(str(values, 'id') === undefined ? {} : { id: str(values, 'id') }),
        ...(str(values, 'name') === undefined ? {} : { name: str(values, 'name') }),
        ...(str(values, 'ifname') === undefined ? {} : { ifname: str(values, 'ifname') }),
        ...(str(values, 'ip') === undefined ? {} : { ipv4: str(values, 'ip') }),
        ...(str(values, 'mac') === undefined ? {} : { mac: str(values, 'mac') }),
      };
      const g = (await call(str(values, 'api-socket'), 'POST', '/v1/guests', body)) as GuestInfo;
      process.stdout.write(values.json ? `${JSON.stringify(g)}\n` : `${guestLine(g)}\n`);
      return 0;
    }
    case 'detach': {
      const { values, positionals } = parse(rest, apiOpt, 1);
      if (values.help) return help();
      if (positionals.length !== 1) throw new ConfigError('detach needs the guest id: usernet detach ID');
      await call(str(values, 'api-socket'), 'DELETE', `/v1/guests/${encodeURIComponent(positionals[0])}`);
      return 0;
    }
    case 'ls': {
      const { values } = parse(rest, { ...apiOpt, json: { type: 'boolean' } });
      if (values.help) return help();
      const { guests } = (await call(str(values, 'api-socket'), 'GET', '/v1/guests')) as { guests: GuestInfo[] };
      if (values.json) process.stdout.write(`${JSON.stringify(guests)}\n`);
      else for (const g of guests) process.stdout.write(`${guestLine(g)}\n`);
      return 0;
    }
    case 'publish': {
      const { values, positionals } = parse(rest, { ...apiOpt, guest: { type: 'string' } }, 1);
      if (values.help) return help();
      if (positionals.length !== 1) throw new ConfigError('publish needs a forward: [HOST_ADDR:]HOST_PORT:[GUEST_ADDR:]GUEST_PORT[/tcp|udp]');
      const spec = parseDaemonPublish(positionals[0], str(values, 'guest') !== undefined);
      const body = { ...spec, ...(str(values, 'guest') === undefined ? {} : { guest: str(values, 'guest'), family: spec.hostAddr.includes(':') ? 6 : 4 }) };
      const f = (await call(str(values, 'api-socket'), 'POST', '/v1/forwards', body)) as { id: number };
      process.stdout.write(`${f.id}\n`);
      return 0;
    }
    case 'unpublish': {
      const { values, positionals } = parse(rest, apiOpt, 1);
      if (values.help) return help();
      if (positionals.length !== 1 || !/^\d+$/.test(positionals[0])) throw new ConfigError('unpublish needs the forward id that publish printed');
      await call(str(values, 'api-socket'), 'DELETE', `/v1/forwards/${positionals[0]}`);
      return 0;
    }
    case 'port': {
      const { values, positionals } = parse(rest, { ...apiOpt, json: { type: 'boolean' } }, 3);
      if (values.help) return help();
      const [sub, ...args] = positionals;
      const socket = str(values, 'api-socket');
      if (sub === 'add' && args.length === 2) {
        const p = (await call(socket, 'POST', '/v1/ports', portRequest(args[0], args[1]))) as SocketPortInfo;
        process.stdout.write(values.json ? `${JSON.stringify(p)}\n` : `${p.id}\n`);
        return 0;
      }
      if (sub === 'ls' && args.length === 0) {
        const { ports } = (await call(socket, 'GET', '/v1/ports')) as { ports: SocketPortInfo[] };
        if (values.json) process.stdout.write(`${JSON.stringify(ports)}\n`);
        else for (const p of ports) process.stdout.write(`${[p.id, p.kind, p.spec, p.ports.join(',') || '-'].join('\t')}\n`);
        return 0;
      }
      if (sub === 'rm' && args.length === 1 && /^\d+$/.test(args[0])) {
        await call(socket, 'DELETE', `/v1/ports/${args[0]}`);
        return 0;
      }
      throw new ConfigError('port needs add KIND SPEC, ls, or rm PORT_ID (see usernet daemon --help)');
    }
    case 'stats': {
      const { values } = parse(rest, { ...apiOpt, 'mac-table': { type: 'boolean' } });
      if (values.help) return help();
      const path = values['mac-table'] === true ? '/stats?macTable=1' : '/stats';
      process.stdout.write(`${JSON.stringify(await call(str(values, 'api-socket'), 'GET', path))}\n`);
      return 0;
    }
    default:
      throw new ConfigError(`unknown command ${verb}`);
  }
}

function dockerHelpText(): number {
  process.stdout.write(dockerHelp);
  return 0;
}

function help(): number {
  process.stdout.write(daemonHelp);
  return 0;
}

function guestLine(g: GuestInfo): string {
  return [g.id, g.ifname, `${g.ipv4}/${g.prefixLength}`, g.ipv6 ?? '-', g.mac, g.name ?? '-', g.target].join('\t');
}

/** `port add KIND SPEC` as a POST /v1/ports body; the daemon checks the values. */
export function portRequest(kind: string, spec: string): Record<string, unknown> {
  if (kind === 'qemu-stream' || kind === 'dgram') return { kind, listen: spec };
  if (kind !== 'vxlan') throw new ConfigError(`port add ${kind}: the kind is qemu-stream, dgram or vxlan`);
  const [remote, ...opts] = spec.split(',');
  const body: Record<string, unknown> = { kind, remote };
  for (const o of opts) {
    const m = /^(vni|local)=(.*)$/.exec(o);
    if (m === null) throw new ConfigError(`port add vxlan ${spec}: unknown option "${o}" (expected REMOTE[:PORT][,vni=N][,local=ADDR:PORT])`);
    body[m[1]] = m[1] === 'vni' && /^\d+$/.test(m[2]) ? Number(m[2]) : m[2];
  }
  return body;
}

/**
 * `[HOST_ADDR:]HOST_PORT:[GUEST_ADDR:]GUEST_PORT[/tcp|udp]`; IPv6 addresses in
 * brackets. With a guest id the guest address must be left out.
 */
export function parseDaemonPublish(text: string, byGuest: boolean): { proto: 'tcp' | 'udp'; hostAddr: string; hostPort: number; guestAddr?: string; guestPort: number } {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(\d+):(?:(\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(\d+)(?:\/(tcp|udp))?$/.exec(text);
  const bad = () => new ConfigError(`${text}: expected [HOST_ADDR:]HOST_PORT:${byGuest ? '' : 'GUEST_ADDR:'}GUEST_PORT[/tcp|udp], e.g. ${byGuest ? '127.0.0.1:8080:80' : '127.0.0.1:8080:10.0.2.100:80'}`);
  if (m === null) throw bad();
  const unbracket = (a: string) => (a.startsWith('[') ? a.slice(1, -1) : a);
  const hostAddr = m[1] === undefined ? '0.0.0.0' : unbracket(m[1]);
  const guestAddr = m[3] === undefined ? undefined : unbracket(m[3]);
  if (isIP(hostAddr) === 0 || (guestAddr !== undefined && isIP(guestAddr) === 0)) throw bad();
  if (byGuest === (guestAddr !== undefined)) throw bad();
  const hostPort = Number(m[2]);
  const guestPort = Number(m[4]);
  if (hostPort < 1 || hostPort > 65535 || guestPort < 1 || guestPort > 65535) throw bad();
  return { proto: (m[5] as 'tcp' | 'udp' | undefined) ?? 'tcp', hostAddr, hostPort, ...(guestAddr === undefined ? {} : { guestAddr }), guestPort };
}

/** One API call; resolves to the parsed JSON answer, or throws a UsernetError with the daemon's message. */
export function call(socket: string | undefined, method: string, path: string, body?: unknown): Promise<unknown> {
  const socketPath = socket ?? defaultApiSocket();
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method,
        path,
        headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let value: unknown;
          try {
            value = JSON.parse(text);
          } catch {
            reject(new UsernetError('ERR_API', `${socketPath}: not a usernet daemon answer (HTTP ${res.statusCode})`));
            return;
          }
          const err = (value as { error?: { code: string; message: string } }).error;
          if ((res.statusCode ?? 500) >= 400 && err !== undefined) reject(new UsernetError(err.code, err.message));
          else resolve(value);
        });
      },
    );
    req.on('timeout', () => req.destroy(new UsernetError('ERR_API', `${socketPath}: no answer within 30 s`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof UsernetError) reject(err);
      else if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
        reject(new UsernetError('ERR_NO_DAEMON', `no usernet daemon at ${socketPath}: start one with \`usernet daemon\`, or give --api-socket PATH`));
      } else if (err.code === 'EACCES') {
        reject(new UsernetError('ERR_API', `${socketPath}: permission denied (the socket belongs to the daemon's user; see --socket-mode)`));
      } else reject(new UsernetError('ERR_API', `${socketPath}: ${err.message}`));
    });
    req.end(payload);
  });
}
