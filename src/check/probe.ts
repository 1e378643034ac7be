/**
 * The guest half of `usernet check`: runs inside the namespace `usernet run`
 * made (as `node probe.js RESULTS CONFIG`), drives TCP, UDP, DNS and ICMP
 * echo through usernet's gateway to the check's servers on the host's
 * loopback, and writes one JSON result per probe to RESULTS. It prints
 * nothing; the check turns the results into its table.
 *
 * Only Node's standard library and usernet's own addon (ping sockets) are
 * used, so the probe needs no tool on the machine. Every probe has its own
 * deadline and they run concurrently: the probe ends within PROBE_TIMEOUT_MS
 * plus start-up whatever the network does.
 */
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';

import { UsernetError } from '../errors.js';
import { native } from '../native/addon.js';
import { PING_ADDR6_STRIDE, PING_ENTRY_WORDS, PING_KIND, PING_KIND_MASK, PING_KIND_REPLY } from '../native/types.js';
import { parseIpv4 } from '../../stack/wire/ipv4-address.js';
import { parseIpv6 } from '../../stack/wire/ipv6-address.js';

/** Generous for a loopback round trip through usernet, short enough for a check. */
export const PROBE_TIMEOUT_MS = 4000;
const PING_GROUP_RANGE = '/proc/sys/net/ipv4/ping_group_range';
const PAYLOAD = 'usernet check\n';

export interface ProbeConfig {
  gateway4: string;
  dns4: string;
  /** null: IPv6 is not probed. */
  gateway6: string | null;
  dns6: string | null;
  /** The /64 the guest's SLAAC address must be in (address text without the length). */
  prefix6: string | null;
  tcp4: number;
  udp4: number;
  tcp6: number;
  udp6: number;
  name: string;
  a: string;
  aaaa: string;
}

export interface ProbeResult {
  id: string;
  ok: boolean;
  detail: string;
}

/**
 * A probe that failed on its own terms (no answer in time, a wrong answer, no
 * address); its message is the probe's whole detail. Errors from sockets and
 * the resolver keep their errno code in front of the message instead.
 */
export class ProbeError extends UsernetError {}

export function withTimeout<T>(what: string, p: Promise<T>, ms = PROBE_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ProbeError('ERR_PROBE_TIMEOUT', `${what}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function tcpEcho(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const s = connect({ host, port, allowHalfOpen: true });
    let got = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.end(PAYLOAD));
    s.on('data', (d: string) => (got += d));
    s.on('error', reject);
    s.on('end', () => {
      s.destroy();
      if (got !== PAYLOAD) reject(new ProbeError('ERR_PROBE_WRONG_ANSWER', `echo came back as ${JSON.stringify(got)}`));
      else resolve(`${hostPort(host, port)} echoed ${PAYLOAD.length} bytes in ${ms(started)}`);
    });
  });
}

function udpEcho(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const done = (err: Error | null, detail = '') => {
      clearInterval(resend);
      s.close();
      if (err) reject(err);
      else resolve(detail);
    };
    s.on('error', (err) => done(err));
    s.on('message', (m) => {
      if (m.toString() === PAYLOAD) done(null, `${hostPort(host, port)} echoed a datagram in ${ms(started)}`);
    });
    // UDP may lose the first datagram while neighbours are resolved; send again now and then.
    const send = () => s.send(PAYLOAD, port, host);
    const resend = setInterval(send, 500);
    send();
  });
}

async function resolveName(server: string, name: string, family: 4 | 6, want: string): Promise<string> {
  const r = new Resolver({ timeout: 1000, tries: 3 });
  r.setServers([server]);
  const got = family === 4 ? await r.resolve4(name) : await r.resolve6(name);
  if (!got.includes(want)) throw new ProbeError('ERR_PROBE_WRONG_ANSWER', `${name} resolved to ${got.join(', ') || 'nothing'}, not ${want}`);
  return `${server} answered ${name} ${family === 4 ? 'A' : 'AAAA'} ${want}`;
}

/**
 * A ping socket in the guest namespace needs the group in that namespace's
 * ping_group_range, empty ("1 0") in a new namespace; the probe is root
 * there (or in its user namespace) and the namespace is the check's own.
 */
function allowPingHere(): void {
  try {
    writeFileSync(PING_GROUP_RANGE, '0 2147483647');
  } catch {
    // Creating the socket then reports EACCES with its hint.
  }
}

export function pingOnce(family: 4 | 6, target: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const slots = 4;
    const slotSize = 256;
    const entries = new Uint32Array(slots * PING_ENTRY_WORDS);
    const addrs = new Uint8Array(slots * PING_ADDR6_STRIDE);
    const sock = native.createPingSocket({
      family,
      rx: new ArrayBuffer(slots * slotSize),
      slotSize,
      slotCount: slots,
      entries,
      ...(family === 6 ? { addrs } : {}),
      onBatch: (count) => {
        for (let i = 0; i < count; i++) {
          if ((entries[i * PING_ENTRY_WORDS + PING_KIND] & PING_KIND_MASK) === PING_KIND_REPLY) {
            clearInterval(resend);
            sock.close();
            resolve(`${target} answered an echo request in ${ms(started)}`);
            return;
          }
        }
      },
      onError: (err) => {
        clearInterval(resend);
        sock.close();
        reject(err);
      },
    });
    // Type 8 (128 for ICMPv6), code 0, then identifier and checksum for the kernel to fill, sequence 1.
    const req = Buffer.from([family === 4 ? 8 : 128, 0, 0, 0, 0, 0, 0, 1, ...Buffer.from('usernet')]);
    const addr6 = family === 6 ? parseIpv6(target) : null;
    const dst4 = family === 4 ? parseIpv4(target) : 0;
    const send = () => {
      const n = family === 4 ? sock.send(req, 0, req.length, dst4) : sock.send6(req, 0, req.length, addr6!, 0);
      if (n < 0 && n !== -11) {
        clearInterval(resend);
        sock.close();
        reject(new ProbeError('ERR_PROBE_SEND', `sending an echo request to ${target} failed: errno ${-n}`));
      }
    };
    // The callbacks above run only after this line (a batch, an error, or a later send).
    const resend = setInterval(send, 500);
    send();
  });
}

/** The guest's SLAAC address in the prefix (usernet run waited for it before starting us). */
async function slaacAddress(prefix: string): Promise<string> {
  const want = prefix.replace(/::$/, ':');
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family === 'IPv6' && a.address.startsWith(want)) return `${a.address} (SLAAC)`;
    }
  }
  throw new ProbeError('ERR_PROBE_NO_ADDRESS', `no address in ${prefix}/64: router advertisements from the gateway did not configure the namespace`);
}

/** The check could not start an echo server on the host's ::1 (no IPv6 loopback there). */
function noServer6(): ProbeError {
  return new ProbeError('ERR_PROBE_NO_SERVER', 'no echo server on ::1');
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function ms(started: bigint): string {
  return `${(Number(process.hrtime.bigint() - started) / 1e6).toFixed(1)} ms`;
}

export async function runProbes(c: ProbeConfig): Promise<ProbeResult[]> {
  allowPingHere();
  const probes: [string, () => Promise<string>][] = [
    ['tcp4', () => tcpEcho(c.gateway4, c.tcp4)],
    ['udp4', () => udpEcho(c.gateway4, c.udp4)],
    ['dns4', () => resolveName(c.dns4, c.name, 4, c.a)],
    ['icmp4', () => pingOnce(4, c.gateway4)],
  ];
  if (c.gateway6 !== null && c.dns6 !== null && c.prefix6 !== null) {
    const [gateway6, dns6, prefix6] = [c.gateway6, c.dns6, c.prefix6];
    probes.push(
      ['slaac6', () => slaacAddress(prefix6)],
      ['tcp6', () => (c.tcp6 > 0 ? tcpEcho(gateway6, c.tcp6) : Promise.reject(noServer6()))],
      ['udp6', () => (c.udp6 > 0 ? udpEcho(gateway6, c.udp6) : Promise.reject(noServer6()))],
      ['dns6', () => resolveName(dns6, c.name, 6, c.aaaa)],
      ['icmp6', () => pingOnce(6, gateway6)],
    );
  }
  return Promise.all(
    probes.map(async ([id, fn]): Promise<ProbeResult> => {
      try {
        return { id, ok: true, detail: await withTimeout(id, Promise.resolve().then(fn)) };
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (err instanceof ProbeError) return { id, ok: false, detail: e.message };
        return { id, ok: false, detail: e.code && !e.message.includes(e.code) ? `${e.code}: ${e.message}` : e.message };
      }
    }),
  );
}
