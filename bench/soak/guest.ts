/**
 * The soak's guest side: runs inside the guest namespace (`ip netns exec NS
 * node --import tsx bench/soak/guest.ts CONFIG_JSON`) and keeps mixed traffic
 * going through usernet until its time is up:
 *
 *   - bulk downloads and uploads over IPv4 and IPv6, sha256-checked;
 *   - connection churn (connect, 1 KiB echoed, close) over both families;
 *   - long-lived connections that exchange a few bytes now and then;
 *   - UDP: a fresh socket (a new flow) per round, echoed datagrams;
 *   - DNS: A and AAAA for a known name, and an unknown name (NXDOMAIN),
 *     through N+3 and P::3 to the soak's own resolver on the host;
 *   - ping to the gateway over both families;
 *   - a TCP and a UDP echo server for the host's port-forward traffic.
 *
 * Every 10 s it prints one JSON line of counters ({"t":"counts",...}); a
 * failure is counted, and its first few reasons are printed, never thrown.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { connect, createServer, type Socket } from 'node:net';
import { soakBlob, type GuestConfig } from './common.js';

const cfg = JSON.parse(process.argv[2]) as GuestConfig;
const stopAt = Date.now() + cfg.seconds * 1000;
const running = () => Date.now() < stopAt;
const counts: Record<string, number> = {};
let reasons = 0;

function ok(kind: string): void {
  counts[`${kind}.ok`] = (counts[`${kind}.ok`] ?? 0) + 1;
}
function fail(kind: string, why: unknown): void {
  counts[`${kind}.fail`] = (counts[`${kind}.fail`] ?? 0) + 1;
  if (reasons++ < 20) process.stdout.write(`${JSON.stringify({ t: 'fail', kind, why: String((why as Error)?.message ?? why) })}\n`);
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const blob = soakBlob(cfg.blobBytes);
const blobSha = createHash('sha256').update(blob).digest('hex');

/** Connects, resolves with the socket; rejects on error or after timeoutMs. */
function dial(host: string, port: number, timeoutMs = 10_000): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect ${host}:${port} timed out`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/** Reads until the peer ends; rejects after timeoutMs. */
function readAll(s: Socket, onData: (b: Buffer) => void, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error('read timed out'));
    }, timeoutMs);
    s.on('data', onData);
    s.once('end', () => {
      clearTimeout(t);
      resolve();
    });
    s.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

async function download(host: string): Promise<void> {
  const s = await dial(host, cfg.sourcePort);
  const h = createHash('sha256');
  let n = 0;
  await readAll(s, (b) => {
    n += b.length;
    h.update(b);
  }, 60_000);
  s.destroy();
  const sha = h.digest('hex');
  if (n !== blob.length || sha !== blobSha) throw new Error(`download from ${host}: ${n} bytes, sha256 ${sha}`);
}

async function upload(host: string): Promise<void> {
  const s = await dial(host, cfg.sinkPort);
  let answer = '';
  const done = readAll(s, (b) => (answer += b.toString()), 60_000);
  s.end(blob);
  await done;
  s.destroy();
  if (answer.trim() !== `${blobSha} ${blob.length}`) throw new Error(`upload to ${host}: sink said ${answer.trim()}`);
}

async function echoOnce(host: string, port: number, bytes: number): Promise<void> {
  const s = await dial(host, port);
  const msg = blob.subarray(0, bytes);
  const got: Buffer[] = [];
  const done = readAll(s, (b) => got.push(b), 10_000);
  s.end(msg);
  await done;
  s.destroy();
  if (!Buffer.concat(got).equals(msg)) throw new Error(`echo via ${host}:${port}: ${Buffer.concat(got).length} of ${bytes} bytes back, or different`);
}

async function loop(kind: string, pauseMs: number, body: () => Promise<void>): Promise<void> {
  while (running()) {
    try {
      await body();
      ok(kind);
    } catch (e) {
      fail(kind, e);
      await sleep(1000);
    }
    await sleep(pauseMs);
  }
}

/** Long-lived connections: each sends 16 bytes every few seconds and expects them back. */
async function holders(host: string, count: number): Promise<void> {
  const tasks: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    tasks.push(
      loop('hold', 1000, async () => {
        const s = await dial(host, cfg.echoPort);
        try {
          // Each connection lives about a minute, then a new one takes its place.
          const rounds = 10 + (i % 5);
          for (let r = 0; r < rounds && running(); r++) {
            await sleep(5000 + i * 37);
            const msg = Buffer.from(`hold ${i} round ${r}\n`);
            const back = await new Promise<Buffer>((resolve, reject) => {
              const t = setTimeout(() => reject(new Error('hold echo timed out')), 10_000);
              let acc = Buffer.alloc(0);
              const onData = (b: Buffer) => {
                acc = Buffer.concat([acc, b]);
                if (acc.length >= msg.length) {
                  clearTimeout(t);
                  s.off('data', onData);
                  resolve(acc);
                }
              };
              s.on('data', onData);
              s.once('error', reject);
              s.write(msg);
            });
            if (!back.equals(msg)) throw new Error('hold echo differs');
          }
        } finally {
          s.destroy();
        }
      }),
    );
  }
  await Promise.all(tasks);
}

function udpRound(family: 4 | 6, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(family === 4 ? 'udp4' : 'udp6');
    const want = 3;
    let got = 0;
    const t = setTimeout(() => {
      sock.close();
      reject(new Error(`udp${family}: ${got} of ${want} echoes`));
    }, 3000);
    sock.on('message', (m) => {
      if (m.length === 512 && ++got === want) {
        clearTimeout(t);
        sock.close();
        resolve();
      }
    });
    sock.on('error', (e) => {
      clearTimeout(t);
      sock.close();
      reject(e);
    });
    for (let i = 0; i < want; i++) sock.send(blob.subarray(i * 512, (i + 1) * 512), cfg.udpPort, host);
  });
}

async function dnsRound(server: string): Promise<void> {
  const r = new Resolver({ timeout: 3000, tries: 2 });
  r.setServers([server]);
  const a = await r.resolve4(cfg.dnsName);
  if (a[0] !== cfg.dnsA) throw new Error(`A ${cfg.dnsName} via ${server}: ${a.join(',')}`);
  const aaaa = await r.resolve6(cfg.dnsName);
  if (aaaa.length !== 1) throw new Error(`AAAA ${cfg.dnsName} via ${server}: ${aaaa.join(',')}`);
  try {
    await r.resolve4(`x${Math.random().toString(36).slice(2)}.${cfg.dnsName}`);
    throw new Error('an unknown name resolved');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOTFOUND') throw e;
  }
}

function ping(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('ping', args, { stdio: 'ignore' });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ping ${args.join(' ')}: exit ${code}`))));
  });
}

/** Echo servers for the host's forwarded connections and datagrams. */
function forwardTargets(): void {
  createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  }).listen(cfg.guestTcpPort, '::');
  const u4 = createSocket('udp4');
  u4.on('message', (m, r) => u4.send(m, r.port, r.address));
  u4.bind(cfg.guestUdpPort, '0.0.0.0');
}

async function main(): Promise<void> {
  forwardTargets();
  const report = setInterval(() => process.stdout.write(`${JSON.stringify({ t: 'counts', ...counts })}\n`), 10_000);
  const v4 = cfg.host4;
  const v6 = cfg.host6;
  const tasks = [
    loop('download4', cfg.bulkPauseMs, () => download(v4)),
    loop('download6', cfg.bulkPauseMs, () => download(v6)),
    loop('upload4', cfg.bulkPauseMs, () => upload(v4)),
    loop('upload6', cfg.bulkPauseMs, () => upload(v6)),
    ...[0, 1, 2, 3].map((i) => loop(i % 2 === 0 ? 'churn4' : 'churn6', 50, () => echoOnce(i % 2 === 0 ? v4 : v6, cfg.echoPort, 1024))),
    holders(v4, cfg.holders / 2),
    holders(v6, cfg.holders / 2),
    loop('udp4', 100, () => udpRound(4, v4)),
    loop('udp6', 100, () => udpRound(6, v6)),
    loop('dns4', 250, () => dnsRound(cfg.dns4)),
    loop('dns6', 250, () => dnsRound(cfg.dns6)),
    loop('ping4', 5000, () => ping(['-c', '5', '-i', '0.2', '-W', '2', '-q', cfg.host4])),
    loop('ping6', 5000, () => ping(['-6', '-c', '5', '-i', '0.2', '-W', '2', '-q', cfg.host6])),
  ];
  process.stdout.write(`${JSON.stringify({ t: 'ready' })}\n`);
  await Promise.all(tasks);
  clearInterval(report);
  process.stdout.write(`${JSON.stringify({ t: 'counts', ...counts })}\n${JSON.stringify({ t: 'done' })}\n`);
  process.exit(0);
}

void main();
