/**
 * Host servers of the slow-peer attack (attack-slow-peers.test.ts), run in
 * usernet's namespace: on 127.0.0.1 a `push` server that writes PUSH_BYTES
 * to every connection (as fast as the connection takes them) and reads
 * whatever comes, and a `noread` server that accepts and never reads.
 * The push server starts pushing on SIGUSR2 (so that the connections are
 * all opened before the data moves). Prints `slow-servers {json}` with the
 * ports; on SIGUSR1 `counts {json}` (connections, bytes queued by push);
 * stops on SIGTERM.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';

const pushBytes = Number(process.argv[2] ?? 512 * 1024);
const chunk = Buffer.alloc(64 * 1024, 0xa5);
const counts = { push: 0, noread: 0, pushed: 0 };
const sockets = new Set<Socket>();
let pushing = false;
const waiting: (() => void)[] = [];

const push = createServer((s) => {
  counts.push++;
  sockets.add(s);
  s.on('error', () => undefined);
  s.on('close', () => sockets.delete(s));
  s.resume();
  let left = pushBytes;
  const more = () => {
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      left -= n;
      counts.pushed += n;
      if (!s.write(chunk.subarray(0, n))) {
        s.once('drain', more);
        return;
      }
    }
  };
  if (pushing) more();
  else waiting.push(more);
});
const noread = createServer({ pauseOnConnect: true }, (s) => {
  counts.noread++;
  sockets.add(s);
  s.on('error', () => undefined);
  s.on('close', () => sockets.delete(s));
});
push.maxConnections = noread.maxConnections = 1 << 20;

await Promise.all([
  new Promise<void>((r) => push.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, r)),
  new Promise<void>((r) => noread.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, r)),
]);
process.stdout.write(`slow-servers ${JSON.stringify({ push: (push.address() as AddressInfo).port, noread: (noread.address() as AddressInfo).port })}\n`);
process.on('SIGUSR1', () => process.stdout.write(`counts ${JSON.stringify({ ...counts, open: sockets.size })}\n`));
process.on('SIGUSR2', () => {
  pushing = true;
  for (const f of waiting.splice(0)) f();
});
process.on('SIGTERM', () => process.exit(0));
