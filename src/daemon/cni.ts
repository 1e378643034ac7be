/**
 * The CNI plugin (`bin/usernet-cni`, network config `"type": "usernet-cni"`):
 * a client of the usernet daemon's API that speaks the CNI protocol (spec
 * 1.0.0 and 1.1.0; 0.4.0 results too). The runtime runs it with CNI_COMMAND
 * and friends in the environment and the network configuration on stdin.
 *
 *   ADD      attach CNI_NETNS as CNI_IFNAME (lease id CNI_CONTAINERID.CNI_IFNAME,
 *            DNS name K8S_POD_NAME from CNI_ARGS, which podman sets to the
 *            container's name, and runtimeConfig.aliases); publish
 *            runtimeConfig.portMappings; print the result.
 *   DEL      detach (its forwards go with it); success when it is not
 *            attached, the namespace is gone or no daemon runs.
 *   CHECK    the guest is attached with the address the previous result gave.
 *   STATUS   the daemon answers (or the config lets the plugin start it).
 *   GC       detach this network's guests that are not in cni.dev/valid-attachments.
 *   VERSION  the versions above.
 *
 * Network configuration keys of our own: "apiSocket" (default as for the
 * CLI), "startDaemon" (start `usernet daemon` on first use when none
 * answers) and "daemonArgs" (its options, e.g. ["--cidr","10.0.3.0/24"]).
 * Errors go to stdout in the CNI error format with the spec's codes.
 */
import { spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsernetError } from '../errors.js';
import { call, defaultApiSocket } from './cli.js';
import { makeDirs } from './unix-listen.js';
import type { GuestInfo } from './guests.js';

export const CNI_VERSIONS = ['0.4.0', '1.0.0', '1.1.0'];
/** How long a daemon started by the plugin may take to be ready. */
const DAEMON_START_MS = 20_000;

/** CNI spec error codes. */
const CNI_ERR = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnv: 4,
  io: 5,
  decode: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  notAvailable: 50,
  internal: 999,
} as const;

/** A failure reported to the container runtime as a CNI error: `cniCode` is the spec's number (CNI_ERR). */
class CniError extends UsernetError {
  constructor(
    readonly cniCode: number,
    message: string,
    readonly details = '',
  ) {
    super('ERR_CNI', message);
  }
}

interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  apiSocket?: string;
  startDaemon?: boolean;
  daemonArgs?: string[];
  runtimeConfig?: {
    portMappings?: { hostPort: number; containerPort: number; protocol?: string; hostIP?: string }[];
    aliases?: Record<string, string[]>;
  };
  prevResult?: { ips?: { address: string }[] };
  'cni.dev/valid-attachments'?: { containerID: string; ifname: string }[];
}

/** Runs one CNI command; returns the exit status (output already written). */
export async function runCni(env: NodeJS.ProcessEnv, stdin: string, out: (s: string) => void): Promise<number> {
  let version = '1.0.0';
  try {
    const command = env.CNI_COMMAND;
    if (command === 'VERSION') {
      out(JSON.stringify({ cniVersion: CNI_VERSIONS[CNI_VERSIONS.length - 1], supportedVersions: CNI_VERSIONS }));
      return 0;
    }
    const conf = parseConf(stdin);
    version = conf.cniVersion;
    const socket = conf.apiSocket ?? defaultApiSocket();
    switch (command) {
      case 'ADD':
        out(JSON.stringify(await add(conf, env, socket)));
        return 0;
      case 'DEL':
        await del(env, socket);
        return 0;
      case 'CHECK':
        await check(conf, env, socket);
        return 0;
      case 'STATUS':
        await status(conf, socket);
        return 0;
      case 'GC':
        await gc(conf, socket);
        return 0;
      default:
        throw new CniError(CNI_ERR.invalidEnv, `CNI_COMMAND "${command ?? ''}" is not one of ADD, DEL, CHECK, STATUS, GC, VERSION`);
    }
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(codeFor(err), (err as Error).message);
    out(JSON.stringify({ cniVersion: version, code: e.cniCode, msg: e.message, ...(e.details ? { details: e.details } : {}) }));
    return 1;
  }
}

function codeFor(err: unknown): number {
  if (err instanceof UsernetError) {
    if (err.code === 'ERR_NO_DAEMON') return CNI_ERR.tryAgainLater;
    if (err.code === 'ERR_CONFIG') return CNI_ERR.invalidConfig;
    if (err.code === 'ERR_API') return CNI_ERR.io;
  }
  return CNI_ERR.internal;
}

function parseConf(stdin: string): NetConf {
  let c: NetConf;
  try {
    c = JSON.parse(stdin) as NetConf;
  } catch (err) {
    throw new CniError(CNI_ERR.decode, `the network configuration on stdin is not JSON: ${(err as Error).message}`);
  }
  if (typeof c !== 'object' || c === null) throw new CniError(CNI_ERR.decode, 'the network configuration must be a JSON object');
  if (!CNI_VERSIONS.includes(c.cniVersion)) {
    throw new CniError(CNI_ERR.incompatibleVersion, `cniVersion ${String(c.cniVersion)} is not supported`, `supported: ${CNI_VERSIONS.join(', ')}`);
  }
  if (typeof c.name !== 'string' || c.name === '') throw new CniError(CNI_ERR.invalidConfig, 'the network configuration has no name');
  if (c.apiSocket !== undefined && (typeof c.apiSocket !== 'string' || !c.apiSocket.startsWith('/'))) {
    throw new CniError(CNI_ERR.invalidConfig, 'apiSocket must be an absolute path');
  }
  if (c.daemonArgs !== undefined && (!Array.isArray(c.daemonArgs) || !c.daemonArgs.every((a) => typeof a === 'string'))) {
    throw new CniError(CNI_ERR.invalidConfig, 'daemonArgs must be an array of strings');
  }
  return c;
}

function need(env: NodeJS.ProcessEnv, name: string): string {
  const v = env[name];
  if (v === undefined || v === '') throw new CniError(CNI_ERR.invalidEnv, `${name} is not set`);
  return v;
}

function guestId(env: NodeJS.ProcessEnv): string {
  return `${need(env, 'CNI_CONTAINERID')}.${need(env, 'CNI_IFNAME')}`;
}

/** K8S_POD_NAME from CNI_ARGS ("K1=V1;K2=V2"), which podman sets to the container's name. */
function podName(env: NodeJS.ProcessEnv): string | null {
  for (const kv of (env.CNI_ARGS ?? '').split(';')) {
    const eq = kv.indexOf('=');
    if (eq > 0 && kv.slice(0, eq) === 'K8S_POD_NAME' && /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(kv.slice(eq + 1))) {
      return kv.slice(eq + 1);
    }
  }
  return null;
}

async function add(conf: NetConf, env: NodeJS.ProcessEnv, socket: string): Promise<object> {
  const id = guestId(env);
  const netns = need(env, 'CNI_NETNS');
  const ifname = need(env, 'CNI_IFNAME');
  await ensureDaemon(conf, socket);
  const aliases = conf.runtimeConfig?.aliases?.[conf.name] ?? [];
  const name = podName(env) ?? aliases.find((a) => /^[A-Za-z0-9-]{1,63}$/.test(a)) ?? null;
  const g = (await call(socket, 'POST', '/v1/guests', { id, netns, ifname, owner: `cni:${conf.name}`, ...(name === null ? {} : { name }) })) as GuestInfo;
  try {
    for (const m of conf.runtimeConfig?.portMappings ?? []) {
      const proto = (m.protocol ?? 'tcp').toLowerCase();
      if (proto !== 'tcp' && proto !== 'udp') throw new CniError(CNI_ERR.unsupportedField, `portMappings protocol ${m.protocol} is not tcp or udp`);
      const hostAddr = m.hostIP === undefined || m.hostIP === '' ? '0.0.0.0' : m.hostIP;
      await call(socket, 'POST', '/v1/forwards', { proto, hostAddr, hostPort: m.hostPort, guest: id, family: hostAddr.includes(':') ? 6 : 4, guestPort: m.containerPort });
    }
  } catch (err) {
    await call(socket, 'DELETE', `/v1/guests/${encodeURIComponent(id)}`).catch(() => undefined);
    throw err;
  }
  return result(conf.cniVersion, g, netns);
}

function result(version: string, g: GuestInfo, netns: string): object {
  const legacy = version === '0.4.0';
  const ips: object[] = [{ ...(legacy ? { version: '4' } : {}), address: `${g.ipv4}/${g.prefixLength}`, gateway: g.gateway, interface: 0 }];
  const routes: object[] = [{ dst: '0.0.0.0/0', gw: g.gateway }];
  if (g.ipv6 !== null) ips.push({ ...(legacy ? { version: '6' } : {}), address: `${g.ipv6}/64`, gateway: g.gateway6, interface: 0 });
  return {
    cniVersion: version,
    interfaces: [{ name: g.ifname, mac: g.mac, sandbox: netns }],
    ips,
    routes,
    dns: { nameservers: [g.dns, ...(g.dns6 === null ? [] : [g.dns6])] },
  };
}

async function del(env: NodeJS.ProcessEnv, socket: string): Promise<void> {
  await detach(guestId(env), socket);
}

async function detach(id: string, socket: string): Promise<void> {
  try {
    await call(socket, 'DELETE', `/v1/guests/${encodeURIComponent(id)}`);
  } catch (err) {
    // Idempotent: already gone, or no daemon (then nothing of ours is attached anywhere).
    if (err instanceof UsernetError && (err.code === 'ERR_NO_GUEST' || err.code === 'ERR_NO_DAEMON')) return;
    throw err;
  }
}

async function check(conf: NetConf, env: NodeJS.ProcessEnv, socket: string): Promise<void> {
  const id = guestId(env);
  let g: GuestInfo;
  try {
    g = (await call(socket, 'GET', `/v1/guests/${encodeURIComponent(id)}`)) as GuestInfo;
  } catch (err) {
    if (err instanceof UsernetError && err.code === 'ERR_NO_GUEST') throw new CniError(CNI_ERR.unknownContainer, `${id} is not attached to usernet network ${conf.name}`);
    throw err;
  }
  const want = conf.prevResult?.ips?.[0]?.address;
  if (want !== undefined && want !== `${g.ipv4}/${g.prefixLength}`) throw new CniError(CNI_ERR.internal + 1, `${id} has ${g.ipv4}/${g.prefixLength}, not ${want}`);
}

async function status(conf: NetConf, socket: string): Promise<void> {
  try {
    await call(socket, 'GET', '/v1/health');
  } catch (err) {
    if (conf.startDaemon === true && err instanceof UsernetError && err.code === 'ERR_NO_DAEMON') return;
    throw new CniError(CNI_ERR.notAvailable, `the usernet daemon at ${socket} does not answer: ${(err as Error).message}`);
  }
}

async function gc(conf: NetConf, socket: string): Promise<void> {
  const valid = new Set((conf['cni.dev/valid-attachments'] ?? []).map((a) => `${a.containerID}.${a.ifname}`));
  let guests: GuestInfo[];
  try {
    ({ guests } = (await call(socket, 'GET', '/v1/guests')) as { guests: GuestInfo[] });
  } catch (err) {
    if (err instanceof UsernetError && err.code === 'ERR_NO_DAEMON') return;
    throw err;
  }
  for (const g of guests) {
    if (g.owner === `cni:${conf.name}` && !valid.has(g.id)) await detach(g.id, socket);
  }
}

/** With "startDaemon": starts `usernet daemon` (detached, logging next to its socket) when none answers. */
async function ensureDaemon(conf: NetConf, socket: string): Promise<void> {
  if (conf.startDaemon !== true) return;
  try {
    await call(socket, 'GET', '/v1/health');
    return;
  } catch (err) {
    if (!(err instanceof UsernetError && err.code === 'ERR_NO_DAEMON')) throw err;
  }
  makeDirs(dirname(socket), 0o700);
  const logFd = openSync(join(dirname(socket), 'daemon.log'), 'a', 0o600);
  const main = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  const child = spawn(process.execPath, [main, 'daemon', '--api-socket', socket, '--ready-fd', '3', ...(conf.daemonArgs ?? [])], {
    detached: true,
    stdio: ['ignore', logFd, logFd, 'pipe'],
  });
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), DAEMON_START_MS);
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.once('data', () => {
      clearTimeout(timer);
      resolve(true);
    });
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
  child.unref();
  if (!ready) {
    let tail = '';
    try {
      tail = readFileSync(join(dirname(socket), 'daemon.log'), 'utf8').split('\n').slice(-5).join('\n');
    } catch {
      // no log
    }
    throw new CniError(CNI_ERR.tryAgainLater, `could not start usernet daemon for ${socket}`, tail);
  }
}
