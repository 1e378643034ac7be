/**
 * Shared harness of the attack tests (test/e2e/attack-*.test.ts): one
 * usernet with two guests on its bridge, an attacker and a well-behaved one,
 * and the means to measure what an attack does to usernet and to the
 * well-behaved guest.
 *
 * Layout (every address lives in a namespace this harness creates, so no
 * packet leaves them, whatever a flood is aimed at):
 *
 *   host ns (usn-ahost-*): usernet --tap A --tap B, and attack-servers.ts on
 *     127.0.0.1 (blob HTTP, a TCP server that holds connections, a UDP sink,
 *     a DNS resolver given to usernet as --dns); its loopback also holds
 *     192.0.2.1 (HOST_TARGET), a destination beyond the gateway for floods
 *     that need one (ICMP echo flows go out through ping sockets).
 *   attacker ns: tap A, 10.0.2.101/24, default route via 10.0.2.2
 *   good ns:     tap B, 10.0.2.102/24, default route via 10.0.2.2
 *
 * `flood()` runs attack-gen.c (built once per process with the system C
 * compiler) in the attacker's namespace; `wellBehaved()` runs, from the good
 * guest, a TCP download with a sha256 check, a ping to the gateway and a DNS
 * query; `Sampler` follows usernet's RSS (VmRSS, VmHWM) and open fds from
 * /proc; `figures()` prints what a test measured as one line in its output.
 *
 * Cleanup: `close()` stops the processes and deletes the taps, then the
 * sandbox deletes the namespaces. `attackFixture()`, called once at the top
 * of a test file, does both after each test, also on failure.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach } from 'vitest';
import { must, run, runAsync, Sandbox, statsOf, USERNET, type Background } from './harness.js';

export const GATEWAY = '10.0.2.2';
export const DNS = '10.0.2.3';
export const GATEWAY_MAC = '52:55:0a:00:02:02';
/** An address on the host namespace's loopback: beyond the gateway, yet inside the test. */
export const HOST_TARGET = '192.0.2.1';
export const ATTACKER_IP = '10.0.2.101';
export const GOOD_IP = '10.0.2.102';

export interface Guest {
  ns: string;
  tap: string;
  ip: string;
  mac: string;
}

export interface Servers {
  http: number;
  hold: number;
  udp: number;
  dns: number;
  sha256: string;
  bytes: number;
}

export interface AttackNet {
  /** usernet, started as `ip netns exec HOSTNS node main.js ...` (the pid is node's: ip execs). */
  usernet: Background;
  servers: Servers;
  serverProc: Background;
  hostNs: string;
  attacker: Guest;
  good: Guest;
  close(): Promise<void>;
}

export interface AttackNetOptions {
  /** Extra usernet arguments, e.g. ['--limit', 'udp-flows=512']. */
  args?: string[];
  /** Size of the blob the good guest downloads (default 4 MiB). */
  blobBytes?: number;
}

function macOf(ns: string, dev: string): string {
  return /link\/ether ([0-9a-f:]{17})/.exec(must('ip', ['-n', ns, 'link', 'show', dev]))![1];
}

/** Starts the host namespace, the servers, usernet and both guests. */
export async function startAttackNet(sandbox: Sandbox, opts: AttackNetOptions = {}): Promise<AttackNet> {
  const hostNs = sandbox.netns('ahost');
  must('ip', ['-n', hostNs, 'addr', 'add', `${HOST_TARGET}/32`, 'dev', 'lo']);
  const taps = [sandbox.ifname('atk'), sandbox.ifname('good')];
  const made: { ns: string; tap: string }[] = [];
  for (const t of taps) {
    must('ip', ['-n', hostNs, 'tuntap', 'add', 'dev', t, 'mode', 'tap']);
    made.push({ ns: hostNs, tap: t });
  }
  // One process (node --import tsx), so that the signal for counts reaches the script itself.
  const serverProc = sandbox.spawn('ip', ['netns', 'exec', hostNs, process.execPath, '--import', 'tsx', join(import.meta.dirname, 'attack-servers.ts'), String(opts.blobBytes ?? 4 * 1024 * 1024)]);
  await serverProc.waitFor(/^servers \{.*\}$/m, 30_000);
  const servers = JSON.parse(/^servers (\{.*\})$/m.exec(serverProc.stdout)![1]) as Servers;

  const usernet = sandbox.spawn('ip', [
    'netns', 'exec', hostNs, process.execPath, USERNET,
    '--tap', taps[0], '--tap', taps[1], '--dns', `127.0.0.1:${servers.dns}`, '--log-level', 'info', '--no-warm-up',
    ...(opts.args ?? []),
  ]);
  await usernet.waitFor(/gateway 10\.0\.2\.2/, 30_000);

  const guests = [
    { tap: taps[0], ip: ATTACKER_IP, tag: 'atk' },
    { tap: taps[1], ip: GOOD_IP, tag: 'good' },
  ].map(({ tap, ip, tag }) => {
    const ns = sandbox.netns(tag);
    must('ip', ['-n', hostNs, 'link', 'set', tap, 'netns', ns]);
    const m = made.find((x) => x.tap === tap)!;
    m.ns = ns;
    must('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', tap]);
    must('ip', ['-n', ns, 'link', 'set', tap, 'up']);
    must('ip', ['-n', ns, 'route', 'add', 'default', 'via', GATEWAY]);
    return { ns, tap, ip, mac: macOf(ns, tap) };
  });

  const close = async (): Promise<void> => {
    await usernet.stop('SIGTERM', 3_000).catch(() => undefined);
    await serverProc.stop('SIGTERM', 3_000).catch(() => undefined);
    for (const m of made) run('ip', ['-n', m.ns, 'tuntap', 'del', 'dev', m.tap, 'mode', 'tap']);
  };
  return { usernet, servers, serverProc, hostNs, attacker: guests[0], good: guests[1], close };
}

export interface AttackFixture {
  /** This test's sandbox (namespaces, processes), emptied after each test. */
  readonly sandbox: Sandbox;
  /** Kept for the whole file (the generator binary, frame files). */
  readonly files: Sandbox;
  /** Starts this test's AttackNet, closed after the test. */
  start(opts?: AttackNetOptions): Promise<AttackNet>;
  /** attack-gen, built once per process. */
  generator(): string;
}

/**
 * The lifecycle every attack test file shares: registers the hooks that
 * close the net a test started and empty its sandbox after each test (also
 * on failure), and remove the file's own files after the last. Call once at
 * the top level of the file.
 */
export function attackFixture(): AttackFixture {
  const sandbox = new Sandbox();
  const files = new Sandbox();
  let net: AttackNet | null = null;
  afterEach(async () => {
    await net?.close();
    net = null;
    await sandbox.cleanup();
  });
  afterAll(() => files.cleanup());
  return {
    sandbox,
    files,
    start: async (opts) => (net = await startAttackNet(sandbox, opts)),
    generator: () => buildGenerator(files),
  };
}

let genPath: string | null = null;

/** Builds attack-gen.c once (into a directory of `files`, a sandbox kept for the whole file). */
export function buildGenerator(files: Sandbox): string {
  if (genPath !== null && existsSync(genPath)) return genPath;
  const out = join(files.tmpdir(), 'attack-gen');
  must('cc', ['-O2', '-Wall', '-o', out, join(import.meta.dirname, 'attack-gen.c')]);
  genPath = out;
  return out;
}

export type FloodMode = 'mac' | 'syn' | 'udp' | 'icmp' | 'frag4' | 'frag6' | 'dns';

export interface FloodSpec {
  mode: FloodMode;
  count: number;
  /** Default ATTACKER_IP (IPv4 modes). */
  srcIp?: string;
  /** Default GATEWAY. */
  dstIp?: string;
  dport?: number;
  /** Default the gateway's MAC. */
  dstMac?: string;
  /** Frames per second at most; 0: unpaced (the tap drops what usernet does not read in time). */
  rate?: number;
}

/** Sends a flood from the attacker's namespace; resolves with the number of frames handed to its tap. */
export async function flood(net: AttackNet, gen: string, spec: FloodSpec, timeoutMs = 60_000): Promise<{ sent: number; ms: number }> {
  const start = Date.now();
  const r = await runAsync(
    'ip',
    [
      'netns', 'exec', net.attacker.ns, gen, spec.mode, net.attacker.tap, String(spec.count), net.attacker.mac, spec.dstMac ?? GATEWAY_MAC,
      spec.srcIp ?? ATTACKER_IP, spec.dstIp ?? GATEWAY, String(spec.dport ?? 0), String(spec.rate ?? 0),
    ],
    timeoutMs,
  );
  const m = /sent (\d+)/.exec(r.stdout);
  if (r.status !== 0 || m === null) throw new Error(`attack-gen ${spec.mode} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return { sent: Number(m[1]), ms: Date.now() - start };
}

export interface WellBehavedResult {
  /** The download's sha256 matched the blob's. */
  transferOk: boolean;
  transferBytes: number;
  transferMs: number;
  pingsReceived: number;
  /** Pings answered by HOST_TARGET (beyond the gateway: an ICMP flow through a ping socket). */
  pingsBeyondReceived: number;
  /** A UDP datagram to the host's sink came back (a UDP flow). */
  udpEcho: boolean;
  /** The answer dig printed (192.0.2.7 expected), or ''. */
  dnsAnswer: string;
  ok: boolean;
  detail: string;
}

/**
 * The well-behaved guest's checks: a download of the blob over a new TCP
 * connection to the host (sha256 compared), 3 pings to the gateway and 3 to
 * HOST_TARGET beyond it (an ICMP flow), a UDP round trip to the host (a UDP
 * flow) and a DNS query through usernet's forwarder. Each is bounded; none
 * throws.
 */
export async function wellBehaved(net: AttackNet): Promise<WellBehavedResult> {
  const ns = net.good.ns;
  const t0 = Date.now();
  const curl = await runAsync(
    'ip',
    ['netns', 'exec', ns, 'sh', '-c', `curl -sS --fail --max-time 30 http://${GATEWAY}:${net.servers.http}/blob | sha256sum`],
    40_000,
  );
  const transferMs = Date.now() - t0;
  const ping = await runAsync('ip', ['netns', 'exec', ns, 'ping', '-c', '3', '-i', '0.2', '-W', '2', GATEWAY], 20_000);
  const pingBeyond = await runAsync('ip', ['netns', 'exec', ns, 'ping', '-c', '3', '-i', '0.2', '-W', '2', HOST_TARGET], 20_000);
  const dig = await runAsync('ip', ['netns', 'exec', ns, 'dig', '+short', '+time=2', '+tries=3', `@${DNS}`, 'good.test'], 30_000);
  const py = [
    'import socket',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)',
    'for i in range(3):',
    `    s.sendto(b"good%d" % i, ("${GATEWAY}", ${net.servers.udp}))`,
    '    try:',
    '        print(s.recv(100).decode()); break',
    '    except socket.timeout:',
    '        pass',
  ].join('\n');
  const udp = await runAsync('ip', ['netns', 'exec', ns, 'python3', '-c', py], 20_000);
  const transferOk = curl.stdout.split(' ')[0] === net.servers.sha256;
  const pingsReceived = Number(/(\d+) received/.exec(ping.stdout)?.[1] ?? 0);
  const pingsBeyondReceived = Number(/(\d+) received/.exec(pingBeyond.stdout)?.[1] ?? 0);
  const udpEcho = /^good\d$/m.test(udp.stdout);
  const dnsAnswer = dig.stdout.trim();
  return {
    transferOk,
    transferBytes: transferOk ? net.servers.bytes : 0,
    transferMs,
    pingsReceived,
    pingsBeyondReceived,
    udpEcho,
    dnsAnswer,
    ok: transferOk && pingsReceived === 3 && pingsBeyondReceived === 3 && udpEcho && dnsAnswer === '192.0.2.7',
    detail:
      `curl: ${curl.stderr.trim()} ping: ${ping.stdout.split('\n').find((l) => /received/.test(l)) ?? ping.stderr} ` +
      `ping ${HOST_TARGET}: ${pingBeyond.stdout.split('\n').find((l) => /received/.test(l)) ?? pingBeyond.stderr} ` +
      `udp: ${udp.stdout.trim() || udp.stderr.trim()} dig: ${dig.stdout.trim() || dig.stderr.trim()}`,
  };
}

export interface ProcSample {
  rssKb: number;
  hwmKb: number;
  fds: number;
}

/** Reads a process's VmRSS, VmHWM (kB) and open fd count from /proc. */
export function sampleProc(pid: number): ProcSample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { rssKb: kb('VmRSS'), hwmKb: kb('VmHWM'), fds: readdirSync(`/proc/${pid}/fd`).length };
}

/** Samples a process every intervalMs until stop(); keeps the first sample and the peaks. */
export class Sampler {
  first: ProcSample;
  last: ProcSample;
  peakRssKb = 0;
  peakFds = 0;
  samples = 0;
  private readonly timer: NodeJS.Timeout;
  constructor(
    readonly pid: number,
    intervalMs = 50,
  ) {
    this.first = sampleProc(pid);
    this.last = this.first;
    this.take();
    this.timer = setInterval(() => this.take(), intervalMs);
  }
  take(): ProcSample {
    try {
      const s = sampleProc(this.pid);
      this.last = s;
      this.samples++;
      this.peakRssKb = Math.max(this.peakRssKb, s.rssKb, s.hwmKb);
      this.peakFds = Math.max(this.peakFds, s.fds);
    } catch {
      // The process is gone; the test's liveness check reports it.
    }
    return this.last;
  }
  stop(): void {
    clearInterval(this.timer);
    this.take();
  }
  /** The start and peaks, as every test's figures show them. */
  figures(): { rssStartKb: number; peakRssKb: number; fdsStart: number; peakFds: number } {
    return { rssStartKb: this.first.rssKb, peakRssKb: this.peakRssKb, fdsStart: this.first.fds, peakFds: this.peakFds };
  }
}

/** usernet's counters (SIGUSR1), with --stats-mac-table if it was started with it. */
export function statsOfNet(net: AttackNet): Promise<any> {
  if (!net.usernet.running) throw new Error(`usernet is gone; its stderr ends: ${net.usernet.stderr.slice(-3000)}`);
  return statsOf(net.usernet);
}

/** The servers' counts (connections held, UDP datagrams, DNS answered and dropped). */
export async function serverCounts(net: AttackNet): Promise<{ held: number; heldNow: number; udp: number; dnsAnswered: number; dnsDropped: number }> {
  const before = net.serverProc.stdout.length;
  process.kill(net.serverProc.pid, 'SIGUSR2');
  for (let i = 0; i < 250; i++) {
    const m = /counts (\{.*\})\n/.exec(net.serverProc.stdout.slice(before));
    if (m) return JSON.parse(m[1]);
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('attack-servers gave no counts');
}

/** Waits until check() holds, polling every 100 ms; false after timeoutMs. */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Prints a test's figures as one line of its output: `attack figures <name>: {...}`. */
export function figures(name: string, f: Record<string, unknown>): void {
  console.log(`attack figures ${name}: ${JSON.stringify(f)}`);
}

/** Frames usernet has read from a guest's tap (its bridge port's rxFrames). */
export function rxFrames(stats: any, guest: Guest): number {
  return stats.bridge.ports.find((p: any) => p.name === guest.tap)?.counters.rxFrames ?? 0;
}

/** The sum of every counter named `reason` anywhere in a stats object (drop reasons are counted where they happen). */
export function dropCount(stats: unknown, reason: string): number {
  let n = 0;
  const walk = (o: unknown): void => {
    if (o === null || typeof o !== 'object') return;
    for (const [k, v] of Object.entries(o)) {
      if (k === reason && typeof v === 'number') n += v;
      else walk(v);
    }
  };
  walk(stats);
  return n;
}
