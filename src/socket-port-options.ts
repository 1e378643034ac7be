/**
 * --listen-qemu, --listen-dgram and --vxlan: parsed and checked here, opened
 * by src/socket-ports.ts.
 *
 *   --listen-qemu unix:PATH | tcp:HOST:PORT   QEMU -netdev stream (many VMs)
 *   --listen-dgram unix:PATH                  QEMU -netdev dgram (one VM)
 *   --vxlan REMOTE[:PORT][,vni=N][,local=ADDR:PORT]
 *
 * --vxlan options with the same local address form one endpoint (one socket,
 * one bridge port) with several remotes; they must then agree on the VNI.
 */
import { statSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute } from 'node:path';
import { ConfigError } from './errors.js';
import { VNI_MAX, VXLAN_PORT } from '../stack/wire/vxlan.js';

export interface StreamListenSpec {
  text: string;
  /** unix socket path, or null for TCP. */
  path: string | null;
  host: string;
  port: number;
}

export interface DgramListenSpec {
  text: string;
  path: string;
}

export interface VxlanRemote {
  address: string;
  port: number;
}

/** One VXLAN endpoint: a local socket, a VNI, its configured remotes. */
export interface VxlanSpec {
  text: string;
  vni: number;
  localAddress: string;
  localPort: number;
  remotes: VxlanRemote[];
}

export interface SocketPortSpecs {
  listenQemu: StreamListenSpec[];
  listenDgram: DgramListenSpec[];
  vxlan: VxlanSpec[];
}

const SUN_PATH_MAX = 107;
const DEFAULT_VNI = 1;

export function hasSocketPorts(s: SocketPortSpecs | undefined): boolean {
  return s !== undefined && s.listenQemu.length + s.listenDgram.length + s.vxlan.length > 0;
}

function unixPath(flag: string, text: string, path: string): string {
  if (path.length === 0 || Buffer.byteLength(path) > SUN_PATH_MAX) {
    throw new ConfigError(`${flag} ${text}: a unix socket path of 1..${SUN_PATH_MAX} bytes`);
  }
  return path;
}

function port(flag: string, text: string, p: string): number {
  if (!/^\d{1,5}$/.test(p) || Number(p) < 1 || Number(p) > 65535) throw new ConfigError(`${flag} ${text}: "${p}" is not a port (1..65535)`);
  return Number(p);
}

/** "1.2.3.4:5" or "[::1]:5" -> [address, port text]; port text null when absent and allowed. */
function hostPort(flag: string, text: string, s: string, portOptional: boolean): [string, string | null] {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:[\]]+)(?::(\d+))?$/.exec(s);
  if (m === null || isIP(m[1]) === 0) throw new ConfigError(`${flag} ${text}: "${s}" is not ADDRESS:PORT (IPv6 in brackets: [fd00::1]:4789)`);
  if (m[2] === undefined && !portOptional) throw new ConfigError(`${flag} ${text}: "${s}" needs a port`);
  return [m[1], m[2] ?? null];
}

export function parseListenQemu(text: string, flag = '--listen-qemu'): StreamListenSpec {
  if (text.startsWith('unix:')) return { text, path: unixPath(flag, text, text.slice(5)), host: '', port: 0 };
  if (text.startsWith('tcp:')) {
    const [host, p] = hostPort(flag, text, text.slice(4), false);
    return { text, path: null, host, port: port(flag, text, p as string) };
  }
  throw new ConfigError(`${flag} ${text}: expected unix:PATH or tcp:HOST:PORT`);
}

export function parseListenDgram(text: string, flag = '--listen-dgram'): DgramListenSpec {
  if (!text.startsWith('unix:')) throw new ConfigError(`${flag} ${text}: expected unix:PATH`);
  return { text, path: unixPath(flag, text, text.slice(5)) };
}

export function parseVxlanOne(text: string, flag = '--vxlan'): VxlanSpec {
  const [remoteText, ...opts] = text.split(',');
  const [address, p] = hostPort(flag, text, remoteText, true);
  const remotePort = p === null ? VXLAN_PORT : port(flag, text, p);
  let vni = DEFAULT_VNI;
  let localAddress = isIP(address) === 6 ? '::' : '0.0.0.0';
  let localPort = remotePort;
  for (const o of opts) {
    const eq = o.indexOf('=');
    const key = eq < 0 ? o : o.slice(0, eq);
    const value = eq < 0 ? '' : o.slice(eq + 1);
    if (key === 'vni') {
      if (!/^\d{1,8}$/.test(value) || Number(value) > VNI_MAX) throw new ConfigError(`${flag} ${text}: vni must be 0..${VNI_MAX}`);
      vni = Number(value);
    } else if (key === 'local') {
      const [la, lp] = hostPort(flag, text, value, false);
      localAddress = la;
      localPort = port(flag, text, lp as string);
    } else {
      throw new ConfigError(`${flag} ${text}: unknown option "${key}" (expected REMOTE[:PORT][,vni=N][,local=ADDR:PORT])`);
    }
  }
  if (isIP(localAddress) !== isIP(address)) throw new ConfigError(`${flag} ${text}: the remote and local addresses must be of one family`);
  return { text, vni, localAddress, localPort, remotes: [{ address, port: remotePort }] };
}

/** Groups --vxlan options by local address into endpoints. */
export function parseVxlan(texts: string[]): VxlanSpec[] {
  const byLocal = new Map<string, VxlanSpec>();
  for (const t of texts) {
    const s = parseVxlanOne(t);
    const key = `${s.localAddress}|${s.localPort}`;
    const have = byLocal.get(key);
    if (have === undefined) {
      byLocal.set(key, s);
      continue;
    }
    if (have.vni !== s.vni) throw new ConfigError(`--vxlan ${t}: local ${s.localAddress}:${s.localPort} already carries VNI ${have.vni} (one VNI per local address)`);
    have.remotes.push(...s.remotes);
    have.text += ` ${t}`;
  }
  return [...byLocal.values()];
}

export function parseSocketPortOptions(v: { 'listen-qemu'?: string[]; 'listen-dgram'?: string[]; vxlan?: string[] }): SocketPortSpecs {
  const listenQemu = (v['listen-qemu'] ?? []).map((t) => parseListenQemu(t));
  const listenDgram = (v['listen-dgram'] ?? []).map((t) => parseListenDgram(t));
  const paths = [...listenQemu.flatMap((s) => (s.path === null ? [] : [s.path])), ...listenDgram.map((s) => s.path)];
  if (new Set(paths).size !== paths.length) throw new ConfigError('the same socket path is given twice');
  return { listenQemu, listenDgram, vxlan: parseVxlan(v.vxlan ?? []) };
}

/** One socket port to open at run time (the daemon's POST /v1/ports). */
export type SocketPortRequest = { kind: 'qemu-stream'; spec: StreamListenSpec } | { kind: 'dgram'; spec: DgramListenSpec } | { kind: 'vxlan'; spec: VxlanSpec };

const REQUEST_FIELDS: Record<SocketPortRequest['kind'], string[]> = {
  'qemu-stream': ['kind', 'listen'],
  dgram: ['kind', 'listen'],
  vxlan: ['kind', 'remote', 'vni', 'local'],
};

/**
 * A POST /v1/ports body: {"kind":"qemu-stream","listen":"unix:PATH"|"tcp:HOST:PORT"},
 * {"kind":"dgram","listen":"unix:PATH"} or {"kind":"vxlan","remote":"ADDR[:PORT]",
 * "vni":N?,"local":"ADDR:PORT"?}, checked as the command-line options are. A
 * unix path must be absolute (the daemon's working directory is nobody's
 * business) in a directory that exists.
 */
export function parseSocketPortRequest(body: Record<string, unknown>): SocketPortRequest {
  const kind = body.kind;
  if (kind !== 'qemu-stream' && kind !== 'dgram' && kind !== 'vxlan') throw new ConfigError('kind must be "qemu-stream", "dgram" or "vxlan"', 'kind');
  for (const k of Object.keys(body)) {
    if (!REQUEST_FIELDS[kind].includes(k)) throw new ConfigError(`unknown field "${k}" for kind "${kind}" (expected ${REQUEST_FIELDS[kind].join(', ')})`, k);
  }
  if (kind === 'vxlan') {
    const { remote, vni, local } = body;
    if (typeof remote !== 'string' || remote.includes(',')) throw new ConfigError('remote must be "ADDR[:PORT]"', 'remote');
    if (vni !== undefined && (!Number.isInteger(vni) || (vni as number) < 0 || (vni as number) > VNI_MAX)) throw new ConfigError(`vni must be an integer 0..${VNI_MAX}`, 'vni');
    if (local !== undefined && (typeof local !== 'string' || local.includes(','))) throw new ConfigError('local must be "ADDR:PORT"', 'local');
    const text = `${remote}${vni === undefined ? '' : `,vni=${vni as number}`}${local === undefined ? '' : `,local=${local}`}`;
    return { kind, spec: parseVxlanOne(text, 'vxlan') };
  }
  const listen = body.listen;
  if (typeof listen !== 'string') throw new ConfigError(kind === 'dgram' ? 'listen must be "unix:PATH"' : 'listen must be "unix:PATH" or "tcp:HOST:PORT"', 'listen');
  const r: SocketPortRequest = kind === 'dgram' ? { kind, spec: parseListenDgram(listen, 'listen') } : { kind, spec: parseListenQemu(listen, 'listen') };
  const path = r.spec.path;
  if (path !== null) {
    if (!isAbsolute(path)) throw new ConfigError(`listen ${listen}: the path must be absolute`, 'listen');
    if (!statSync(dirname(path), { throwIfNoEntry: false })?.isDirectory()) throw new ConfigError(`listen ${listen}: ${dirname(path)} is not a directory`, 'listen');
  }
  return r;
}
