/**
 * A guest-side client of the attack tests that opens many TCP connections
 * and then misbehaves with them; run in a guest namespace as
 *
 *   node --import tsx attack-conn-client.ts MODE HOST PORT COUNT [BYTES]
 *
 * MODE: `hold` connects and does nothing; `noread` connects and never reads
 * (the host server's data piles up); `push` connects and writes BYTES
 * without ever reading (for a host server that never reads), from SIGHUP on; `udp` opens
 * COUNT UDP sockets, each sending a datagram to HOST:PORT every second. Connections
 * are opened at most 200 at a time, each attempt bounded by 10 s, and each
 * attempt's outcome is counted: connected, refused (a RST), unreachable (an
 * ICMP error), timeout, other. Prints `ready {json}` once every attempt has
 * its outcome, `progress {json}` on SIGUSR1 (bytes written so far), and on
 * SIGUSR2 closes every connection and prints `closed {json}`; exits on
 * SIGTERM.
 */
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';

const [mode, host, portText, countText, bytesText] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
const bytes = Number(bytesText ?? 0);
const CONCURRENCY = 100;
/** Long enough for a SYN retransmitted twice on a loaded machine (1 s, 3 s, 7 s): a refusal comes at once anyway. */
const CONNECT_TIMEOUT_MS = 30_000;

const outcomes = { connected: 0, refused: 0, unreachable: 0, timeout: 0, other: 0 };
const open = new Set<Socket>();
let written = 0;
let pushing = false;
const pushers: Socket[] = [];
let lateErrors = 0;
const chunk = Buffer.alloc(64 * 1024, 0x5a);

function attempt(): Promise<void> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    let settled = false;
    const settle = (k: keyof typeof outcomes) => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      outcomes[k]++;
      resolve();
    };
    const t = setTimeout(() => {
      s.destroy();
      settle('timeout');
    }, CONNECT_TIMEOUT_MS);
    s.once('connect', () => {
      open.add(s);
      settle('connected');
      if (mode === 'noread') s.pause();
      if (mode === 'push') {
        s.pause();
        if (pushing) pushOn(s);
        else pushers.push(s);
      }
      if (mode === 'hold') s.resume();
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (!settled) {
        const c = e.code ?? '';
        settle(c === 'ECONNREFUSED' || c === 'ECONNRESET' ? 'refused' : c === 'EHOSTUNREACH' || c === 'ENETUNREACH' ? 'unreachable' : c === 'ETIMEDOUT' ? 'timeout' : 'other');
      } else lateErrors++;
      open.delete(s);
    });
    s.on('close', () => open.delete(s));
  });
}

function pushOn(s: Socket): void {
  let left = bytes;
  const more = () => {
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      left -= n;
      written += n;
      if (!s.write(chunk.subarray(0, n))) {
        s.once('drain', more);
        return;
      }
    }
  };
  s.pause();
  more();
}

function udpFlows(): void {
  for (let i = 0; i < count; i++) {
    const u = createSocket('udp4');
    u.on('error', () => undefined);
    const send = () => u.send(chunk.subarray(0, 100), port, host);
    u.bind(0, () => {
      send();
      setInterval(send, 1000);
    });
  }
  outcomes.connected = count;
}

async function main(): Promise<void> {
  if (mode === 'udp') {
    udpFlows();
    process.stdout.write(`ready ${JSON.stringify(outcomes)}\n`);
    return;
  }
  let next = 0;
  const workers = Array.from({ length: Math.min(CONCURRENCY, count) }, async () => {
    while (next < count) {
      next++;
      await attempt();
    }
  });
  await Promise.all(workers);
  process.stdout.write(`ready ${JSON.stringify({ ...outcomes, open: open.size })}\n`);
}

process.on('SIGUSR1', () => process.stdout.write(`progress ${JSON.stringify({ written, open: open.size, lateErrors })}\n`));
// Closed 50 at a time, 10 ms apart: the RSTs of 2,000 sockets at once would overrun the tap's queue,
// and a lost RST is only repaired by usernet's next zero-window probe, up to a minute later.
process.on('SIGUSR2', async () => {
  const all = [...open];
  open.clear();
  for (let i = 0; i < all.length; i += 50) {
    for (const s of all.slice(i, i + 50)) s.destroy();
    await new Promise((r) => setTimeout(r, 10));
  }
  process.stdout.write(`closed ${JSON.stringify({ written, lateErrors })}\n`);
});
process.on('SIGHUP', () => {
  pushing = true;
  for (const s of pushers.splice(0)) if (!s.destroyed) pushOn(s);
});
process.on('SIGTERM', () => process.exit(0));
void main();
// Stay alive until told otherwise.
setInterval(() => undefined, 1 << 30);
