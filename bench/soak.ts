/**
 * `npm run soak -- --minutes N`: mixed traffic through one usernet for N
 * minutes, its footprint sampled every 10 s, written to bench/SOAK.md with a
 * plot (bench/SOAK.svg). Not part of CI.
 *
 *   npm run soak -- [--minutes 30] [--warm-up-minutes M] [--drain-seconds 75] [--out DIR] [--no-write]
 *
 * (--out: where SOAK.md and SOAK.svg go; default bench/)
 *
 * usernet runs as `usernet --tap T` with the tap moved into a namespace this
 * script configures (10.0.2.100/24, a fixed MAC so that the SLAAC address and
 * with it the IPv6 port forward are known beforehand), DNS to this script's
 * own resolver on 127.0.0.1 (--dns), port forwards to the guest over both
 * families and --metrics on 127.0.0.1, from which the samples are read. The
 * guest side (soak/guest.ts, in the namespace) runs transfers both ways,
 * connection churn, long-lived connections, UDP, DNS and pings against
 * servers this script runs on 127.0.0.1 and ::1; this script drives the
 * forwarded traffic. After the traffic, the samples go on for
 * --drain-seconds, long enough for UDP's 60 s idle timeout to reclaim the
 * flows. Every namespace, tap and process is removed at the end, also on
 * failure or Ctrl-C. Needs root.
 */
import { createHash } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { answerQuery } from '../src/check/dns-responder.js';
import { freePort } from './lib/context.js';
import { Cleanup, fdCount, must, rssKiB, sh, sleep } from './lib/sys.js';
import { soakBlob, type GuestConfig } from './soak/common.js';
import { grows, renderSvg, renderTable, trend, type Sample } from './soak/report.js';

const BENCH_DIR = resolve(import.meta.dirname);
const ROOT = dirname(BENCH_DIR);
const USERNET = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const SAMPLE_MS = 10_000;
const GUEST_MAC = '52:54:00:5a:0a:01';
/** The EUI-64 SLAAC address of GUEST_MAC in fd00::/64. */
const GUEST_IP6 = 'fd00::5054:ff:fe5a:a01';
const DNS_NAME = 'soak.usernet.test';
const DNS_A = '192.0.2.7';
const BLOB_BYTES = 4 * 1024 * 1024;
const GUEST_TCP_PORT = 8080;
const GUEST_UDP_PORT = 8081;

const USAGE = 'usage: npm run soak -- [--minutes N] [--warm-up-minutes M] [--drain-seconds S] [--out DIR] [--no-write]';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    'warm-up-minutes': { type: 'string' },
    'drain-seconds': { type: 'string', default: '75' },
    'no-write': { type: 'boolean', default: false },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const minutes = Number(args.minutes);
const drainSeconds = Number(args['drain-seconds']);
// Long enough for every idle timeout but TCP's (UDP 60 s) to have turned its table over, and for the JIT.
const warmUpMinutes = args['warm-up-minutes'] !== undefined ? Number(args['warm-up-minutes']) : Math.min(5, minutes / 5);
if (!(minutes > 0) || !(warmUpMinutes >= 0) || warmUpMinutes >= minutes || !(drainSeconds >= 0)) {
  process.stderr.write(`${USAGE}\n`);
  process.exit(2);
}

const c = new Cleanup();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    c.cleanupSync();
    process.exit(130);
  });
}

const log = (s: string) => process.stderr.write(`${s}\n`);
const blob = soakBlob(BLOB_BYTES);
const counts: Record<string, number> = {};
const failures: string[] = [];
function ok(kind: string): void {
  counts[`${kind}.ok`] = (counts[`${kind}.ok`] ?? 0) + 1;
}
function fail(kind: string, why: unknown): void {
  counts[`${kind}.fail`] = (counts[`${kind}.fail`] ?? 0) + 1;
  if (failures.length < 20) failures.push(`${kind}: ${String((why as Error)?.message ?? why)}`);
}

function listenTcp(host: string, port: number, allowHalfOpen: boolean, handler: (s: import('node:net').Socket) => void): Promise<Server> {
  const srv = createServer({ allowHalfOpen }, (s) => {
    s.on('error', () => undefined);
    handler(s);
  });
  c.add(`server ${host}:${port}`, () => void srv.close());
  return new Promise((res, rej) => {
    srv.once('error', rej);
    srv.listen(port, host, () => res(srv));
  });
}

/** The same port on 127.0.0.1 and ::1. */
async function listenBoth(allowHalfOpen: boolean, handler: (s: import('node:net').Socket) => void): Promise<number> {
  const s4 = await listenTcp('127.0.0.1', 0, allowHalfOpen, handler);
  const port = (s4.address() as AddressInfo).port;
  await listenTcp('::1', port, allowHalfOpen, handler);
  return port;
}

function bindUdp(type: 'udp4' | 'udp6', host: string, port: number, onMessage: (sock: UdpSocket, m: Buffer, r: { address: string; port: number }) => void): Promise<UdpSocket> {
  const sock = createSocket(type);
  sock.on('message', (m, r) => onMessage(sock, m, r));
  c.add(`udp ${host}:${port}`, () => sock.close());
  return new Promise((res, rej) => {
    sock.once('error', rej);
    sock.bind(port, host, () => res(sock));
  });
}

async function startServers(): Promise<{ source: number; sink: number; echo: number; udp: number; dns: number }> {
  const source = await listenBoth(false, (s) => s.end(blob));
  const sink = await listenBoth(true, (s) => {
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (b: Buffer) => {
      n += b.length;
      h.update(b);
    });
    s.on('end', () => s.end(`${h.digest('hex')} ${n}\n`));
  });
  const echo = await listenBoth(true, (s) => s.pipe(s));
  const echoUdp = (sock: UdpSocket, m: Buffer, r: { address: string; port: number }) => sock.send(m, r.port, r.address);
  const u4 = await bindUdp('udp4', '127.0.0.1', 0, echoUdp);
  const udp = u4.address().port;
  await bindUdp('udp6', '::1', udp, echoUdp);
  const answers = { name: DNS_NAME, a: Uint8Array.from(DNS_A.split('.').map(Number)), aaaa: Uint8Array.from([0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(11).fill(0), 7]) };
  const d = await bindUdp('udp4', '127.0.0.1', 0, (sock, m, r) => {
    const a = answerQuery(m, answers);
    if (a !== null) sock.send(a, r.port, r.address);
  });
  return { source, sink, echo, udp, dns: d.address().port };
}

function getStats(port: number): Promise<any> {
  return new Promise((res, rej) => {
    const req = get({ host: '127.0.0.1', port, path: '/stats', timeout: 5_000 }, (r) => {
      let body = '';
      r.setEncoding('utf8').on('data', (d: string) => (body += d));
      r.on('end', () => {
        try {
          res(JSON.parse(body));
        } catch (e) {
          rej(e);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('stats timed out')));
    req.on('error', rej);
  });
}

/** Host -> guest through a port forward: 16 KiB echoed. */
function forwardEcho(host: string, port: number): Promise<void> {
  return new Promise((res, rej) => {
    const msg = blob.subarray(0, 16_384);
    const got: Buffer[] = [];
    const s = connect({ host, port, allowHalfOpen: true });
    const t = setTimeout(() => {
      s.destroy();
      rej(new Error(`forward ${host}:${port} timed out`));
    }, 10_000);
    s.on('connect', () => s.end(msg));
    s.on('data', (b: Buffer) => got.push(b));
    s.on('end', () => {
      clearTimeout(t);
      s.destroy();
      if (Buffer.concat(got).equals(msg)) res();
      else rej(new Error(`forward ${host}:${port}: ${Buffer.concat(got).length} bytes back`));
    });
    s.on('error', (e) => {
      clearTimeout(t);
      rej(e);
    });
  });
}

function forwardUdp(port: number): Promise<void> {
  return new Promise((res, rej) => {
    const sock = createSocket('udp4');
    const t = setTimeout(() => {
      sock.close();
      rej(new Error('forwarded datagram not echoed'));
    }, 3_000);
    sock.on('message', (m) => {
      clearTimeout(t);
      sock.close();
      if (m.equals(blob.subarray(0, 700))) res();
      else rej(new Error('forwarded datagram differs'));
    });
    sock.send(blob.subarray(0, 700), port, '127.0.0.1');
  });
}

async function forwardLoop(kind: string, until: () => boolean, body: () => Promise<void>): Promise<void> {
  while (until()) {
    try {
      await body();
      ok(kind);
    } catch (e) {
      fail(kind, e);
      await sleep(1_000);
    }
    await sleep(250);
  }
}

function sampleOf(t: number, pid: number, st: any): Sample {
  const p = st.process;
  return {
    t,
    rssKiB: rssKiB(pid) ?? Math.round(p.rssBytes / 1024),
    fds: fdCount(pid) ?? p.fds,
    heapUsedKiB: Math.round(p.heapUsedBytes / 1024),
    heapTotalKiB: Math.round(p.heapTotalBytes / 1024),
    externalKiB: Math.round(p.externalBytes / 1024),
    gcCount: p.gc.count,
    gcPauseMs: p.gc.pauseMsTotal,
    gcPauseMaxMs: p.gc.pauseMsMax,
    tcpFlows: st.nat.tcp.active,
    udpFlows: st.nat.udp.active,
    icmpFlows: st.nat.icmp.active,
    hostTcp: st.hostSockets.tcp,
    hostUdp: st.hostSockets.udp,
    hostIcmp: st.hostSockets.icmp,
    macs: st.bridge.macTable.size,
  };
}

async function main(): Promise<void> {
  const ports = await startServers();
  const fwdTcp4 = await freePort();
  const fwdUdp4 = await freePort();
  const fwdTcp6 = await freePort();
  const metricsPort = await freePort();
  const tap = c.tap('soak');
  must('ip', ['link', 'set', tap, 'address', GUEST_MAC]);
  const usernetArgs = [
    '--tap', tap,
    '--dns', `127.0.0.1:${ports.dns}`,
    '-p', `127.0.0.1:${fwdTcp4}:10.0.2.100:${GUEST_TCP_PORT}`,
    '-p', `127.0.0.1:${fwdUdp4}:10.0.2.100:${GUEST_UDP_PORT}/udp`,
    '-p', `[::1]:${fwdTcp6}:[${GUEST_IP6}]:${GUEST_TCP_PORT}`,
    '--metrics', `tcp:127.0.0.1:${metricsPort}`,
    '--log-level', 'info',
  ];
  const u = c.spawn(process.execPath, [USERNET, ...usernetArgs], 'usernet');
  await u.waitFor(/metrics: GET/, 15_000);
  await u.waitFor(/warm-up/, 15_000);
  const ns = c.netns('soak');
  must('ip', ['link', 'set', tap, 'netns', ns]);
  must('ip', ['-n', ns, 'addr', 'add', '10.0.2.100/24', 'dev', tap]);
  must('ip', ['-n', ns, 'link', 'set', tap, 'up']);
  must('ip', ['-n', ns, 'route', 'add', 'default', 'via', '10.0.2.2']);
  // Guest pings use ping sockets (or raw, as root); both need nothing from the host.
  for (let i = 0; ; i++) {
    const a = sh('ip', ['-n', ns, '-6', 'addr', 'show', 'dev', tap, 'scope', 'global']).stdout;
    if (/ dynamic/.test(a) && !/tentative/.test(a)) {
      if (!a.includes(GUEST_IP6)) throw new Error(`SLAAC gave ${a}, expected ${GUEST_IP6}`);
      break;
    }
    if (i > 100) throw new Error(`no SLAAC address: ${a}`);
    await sleep(100);
  }
  const cfg: GuestConfig = {
    seconds: minutes * 60,
    host4: '10.0.2.2',
    host6: 'fd00::2',
    dns4: '10.0.2.3',
    dns6: 'fd00::3',
    dnsName: DNS_NAME,
    dnsA: DNS_A,
    sourcePort: ports.source,
    sinkPort: ports.sink,
    echoPort: ports.echo,
    udpPort: ports.udp,
    guestTcpPort: GUEST_TCP_PORT,
    guestUdpPort: GUEST_UDP_PORT,
    blobBytes: BLOB_BYTES,
    bulkPauseMs: 2_000,
    holders: 40,
  };
  const guest = c.spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', join(BENCH_DIR, 'soak', 'guest.ts'), JSON.stringify(cfg)], 'guest');
  await guest.waitFor(/"t":"ready"/, 30_000);
  const started = Date.now();
  const trafficEnd = started + minutes * 60_000;
  const end = trafficEnd + drainSeconds * 1000;
  log(`soak: ${minutes} min of traffic (warm-up ${warmUpMinutes} min), then ${drainSeconds} s idle; usernet pid ${u.pid}`);
  const traffic = () => Date.now() < trafficEnd;
  await sleep(500);
  const forwards = Promise.all([
    forwardLoop('forward-tcp4', traffic, () => forwardEcho('127.0.0.1', fwdTcp4)),
    forwardLoop('forward-tcp6', traffic, () => forwardEcho('::1', fwdTcp6)),
    forwardLoop('forward-udp4', traffic, () => forwardUdp(fwdUdp4)),
  ]);
  const samples: Sample[] = [];
  const cpu0 = cpuTicks(u.pid);
  for (let next = started; Date.now() < end; ) {
    next += SAMPLE_MS;
    await sleep(Math.max(0, next - Date.now()));
    if (!u.running) throw new Error(`usernet exited: ${u.stderr.slice(-2000)}`);
    const s = sampleOf((Date.now() - started) / 1000, u.pid, await getStats(metricsPort));
    samples.push(s);
    log(`  ${(s.t / 60).toFixed(1)} min: RSS ${(s.rssKiB / 1024).toFixed(1)} MiB, heap ${(s.heapUsedKiB / 1024).toFixed(1)}/${(s.heapTotalKiB / 1024).toFixed(1)} MiB, ${s.fds} fds, flows tcp ${s.tcpFlows} udp ${s.udpFlows} icmp ${s.icmpFlows}, GCs ${s.gcCount}`);
  }
  const cpuSeconds = (cpuTicks(u.pid) - cpu0) / 100;
  await forwards;
  const g = await guest.wait(30_000);
  const finalStats = await getStats(metricsPort);
  for (const line of guest.stdout.split('\n')) {
    if (line.startsWith('{"t":"counts"')) Object.assign(guestCounts, JSON.parse(line));
    if (line.startsWith('{"t":"fail"')) failures.push(`guest ${line}`);
  }
  delete guestCounts.t;
  const report = render(samples, { usernetArgs, cpuSeconds, guestExit: g.code, finalStats });
  log(report.summary);
  if (!args['no-write']) {
    const dir = args.out ?? BENCH_DIR;
    writeFileSync(join(dir, 'SOAK.md'), report.markdown);
    writeFileSync(join(dir, 'SOAK.svg'), renderSvg(samples, warmUpMinutes * 60));
    log(`soak: wrote ${join(dir, 'SOAK.md')} and SOAK.svg`);
  }
  if (!report.pass) process.exitCode = 1;
}

const guestCounts: Record<string, number | string> = {};

function cpuTicks(pid: number): number {
  const stat = sh('cat', [`/proc/${pid}/stat`]).stdout;
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

function render(samples: Sample[], info: { usernetArgs: string[]; cpuSeconds: number; guestExit: number | null; finalStats: any }): { markdown: string; summary: string; pass: boolean } {
  const traffic = samples.filter((s) => s.t <= minutes * 60 + 1);
  const steady = traffic.filter((s) => s.t >= warmUpMinutes * 60);
  const drained = samples[samples.length - 1];
  const checks: { what: string; unit: string; pick: (s: Sample) => number; tol: number; floor: number; scale: number }[] = [
    { what: 'RSS', unit: 'MiB', pick: (s) => s.rssKiB, tol: 0.1, floor: 8 * 1024, scale: 1 / 1024 },
    { what: 'V8 heap used', unit: 'MiB', pick: (s) => s.heapUsedKiB, tol: 0.1, floor: 4 * 1024, scale: 1 / 1024 },
    { what: 'V8 heap total', unit: 'MiB', pick: (s) => s.heapTotalKiB, tol: 0.1, floor: 4 * 1024, scale: 1 / 1024 },
    { what: 'external', unit: 'MiB', pick: (s) => s.externalKiB, tol: 0.1, floor: 4 * 1024, scale: 1 / 1024 },
    { what: 'fds', unit: '', pick: (s) => s.fds, tol: 0.1, floor: 20, scale: 1 },
    { what: 'TCP flows', unit: '', pick: (s) => s.tcpFlows, tol: 0.1, floor: 20, scale: 1 },
    { what: 'UDP flows', unit: '', pick: (s) => s.udpFlows, tol: 0.1, floor: 20, scale: 1 },
  ];
  const rows = checks.map((ch) => {
    const tr = trend(steady, ch.pick);
    const g = grows(tr, ch.tol, ch.floor);
    const f = (v: number) => (ch.scale === 1 ? v.toFixed(0) : (v * ch.scale).toFixed(1));
    return { g, line: `| ${ch.what}${ch.unit ? ` (${ch.unit})` : ''} | ${f(tr.early)} | ${f(tr.late)} | ${f(tr.min)}–${f(tr.max)} | ${(tr.slopePerMin * ch.scale).toFixed(ch.scale === 1 ? 2 : 3)} | ${g ? '**grows**' : 'flat'} |` };
  });
  const gcFirst = steady[0];
  const gcLast = steady[steady.length - 1];
  const steadyMin = (gcLast.t - gcFirst.t) / 60;
  const gcPerMin = (gcLast.gcCount - gcFirst.gcCount) / steadyMin;
  const pausePerMin = (gcLast.gcPauseMs - gcFirst.gcPauseMs) / steadyMin;
  const failed = Object.entries(counts).concat(Object.entries(guestCounts).filter((e): e is [string, number] => typeof e[1] === 'number')).filter(([k, v]) => k.endsWith('.fail') && v > 0);
  const all: Record<string, number> = {};
  for (const [k, v] of Object.entries(guestCounts)) if (typeof v === 'number') all[k] = v;
  for (const [k, v] of Object.entries(counts)) all[k] = v;
  const kinds = [...new Set(Object.keys(all).map((k) => k.replace(/\.(ok|fail)$/, '')))].sort();
  const opsTable = ['| traffic | done | failed |', '|---|---:|---:|', ...kinds.map((k) => `| ${k} | ${all[`${k}.ok`] ?? 0} | ${all[`${k}.fail`] ?? 0} |`)].join('\n');
  const anyGrowth = rows.some((r) => r.g);
  const pass = !anyGrowth && failed.length === 0 && info.guestExit === 0;
  const tcp = info.finalStats.nat.tcp;
  const summary =
    `soak: ${minutes} min, ${samples.length} samples; after warm-up: ${anyGrowth ? 'GROWTH' : 'no growth'}; ` +
    `${failed.length === 0 ? 'no failed operation' : `failures: ${failed.map(([k, v]) => `${k}=${v}`).join(', ')}`}; ` +
    `usernet CPU ${info.cpuSeconds.toFixed(0)} s`;
  const markdown = `# Soak: ${minutes} minutes of mixed traffic through one usernet

Produced by \`npm run soak -- --minutes ${minutes}\` (bench/soak.ts) on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC,
${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, shared with other work.
usernet ran as \`usernet ${info.usernetArgs.join(' ').replace(/\d{4,5}/g, 'PORT').replace(/ubsoak[0-9a-f]+/, 'TAP')}\`;
samples every ${SAMPLE_MS / 1000} s: RSS and fds from /proc/PID, the V8 heap, GC pauses (perf_hooks) and the flow tables from
its GET /stats. The first ${warmUpMinutes} min are warm-up; after ${minutes} min the traffic stops and the samples go on
for ${drainSeconds} s.

**Result: ${anyGrowth ? 'growth after the warm-up (see below)' : 'no growth after the warm-up'}; ${failed.length === 0 ? 'every operation succeeded' : `${failed.length} kinds of operation failed`}.**

## Traffic

From the guest namespace (to servers on 127.0.0.1 and ::1 through 10.0.2.2 and fd00::2): ${BLOB_BYTES / 1048576} MiB
downloads and uploads, sha256-checked, in four loops (each family, each way) with 2 s between transfers; connection churn
(four loops: connect, 1 KiB echoed, close); 40 long-lived connections, each echoing a line every ~5 s and replaced after
about a minute; UDP rounds (a new socket, so a new flow, with three 512-byte datagrams echoed) every 100 ms per family;
DNS (A, AAAA and an unknown name) through 10.0.2.3 and fd00::3 to a resolver on 127.0.0.1 every 250 ms per family;
\`ping -c 5\` to the gateway over both families every ~6 s (the gateway answers those itself: no ICMP NAT flow; every
other destination would leave the machine). From the host, through the port forwards to the guest: 16 KiB
echoed over TCP (127.0.0.1 and ::1) and a 700-byte datagram (UDP, 127.0.0.1), every 250 ms each.

${opsTable}

usernet used ${info.cpuSeconds.toFixed(0)} s of CPU over the run (${((info.cpuSeconds / (minutes * 60 + drainSeconds)) * 100).toFixed(0)}% of one core).
TCP connections opened ${tcp.created}, closed ${JSON.stringify(tcp.closed)}.

## After the warm-up (${steady.length} samples from ${warmUpMinutes} to ${minutes} min)

"first" and "last" are the medians of the first and the last fifth of these samples; growth means last − first above
10% of first and above a floor (8 MiB RSS, 4 MiB heap, 20 fds or flows).

| figure | first | last | range | slope per minute | |
|---|---:|---:|---:|---:|---|
${rows.map((r) => r.line).join('\n')}

GC: ${gcPerMin.toFixed(1)} collections and ${pausePerMin.toFixed(1)} ms of pauses per minute (${((pausePerMin / 60_000) * 100).toFixed(3)}% of the time);
longest pause over the whole run ${drained.gcPauseMaxMs.toFixed(1)} ms.

After ${drainSeconds} s without traffic: ${drained.tcpFlows} TCP, ${drained.udpFlows} UDP and ${drained.icmpFlows} ICMP flows,
host sockets ${drained.hostTcp}/${drained.hostUdp}/${drained.hostIcmp} (tcp/udp/icmp), ${drained.fds} fds, RSS ${(drained.rssKiB / 1024).toFixed(1)} MiB.
${failures.length > 0 ? `\nFirst failures:\n\n${failures.map((f) => `- ${f}`).join('\n')}\n` : ''}
![usernet memory, descriptors and flows over the soak](SOAK.svg)

## Samples (one a minute; GCs and pause ms since the previous row, longest pause so far)

${renderTable(samples, 60)}
`;
  return { markdown, summary, pass };
}

main()
  .catch((e: unknown) => {
    process.stderr.write(`soak: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  })
  .finally(() => c.cleanup());
