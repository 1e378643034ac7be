/**
 * The host side of the attack tests, run in usernet's own namespace (see
 * attack-harness.ts) so that everything stays inside namespaces the test
 * made: on 127.0.0.1 an HTTP blob server (GET /blob: random bytes whose
 * sha256 is announced), a TCP server that accepts and holds every connection
 * (the target of connection and SYN floods), a UDP sink that never answers,
 * and a DNS resolver that answers every name with 192.0.2.7 except names
 * under flood.test, which it drops (a dead upstream for the flood: queries
 * stay pending in usernet's forwarder until they time out).
 *
 * Prints one line `servers {json}` with the ports and the blob's sha256;
 * on SIGUSR1 prints `counts {json}` (connections held, UDP datagrams,
 * DNS queries answered and dropped). Stops on SIGTERM.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';

const bytes = Number(process.argv[2] ?? 8 * 1024 * 1024);
const blob = randomBytes(bytes);
const sha256 = createHash('sha256').update(blob).digest('hex');

const counts = { held: 0, heldNow: 0, udp: 0, dnsAnswered: 0, dnsDropped: 0 };

const http = createHttpServer((req, res) => {
  if (req.url === '/blob') {
    res.writeHead(200, { 'content-length': bytes });
    res.end(blob);
  } else res.writeHead(404).end();
});

const held = new Set<Socket>();
const hold = createTcpServer((s) => {
  counts.held++;
  held.add(s);
  counts.heldNow = held.size;
  s.on('error', () => undefined);
  s.on('close', () => {
    held.delete(s);
    counts.heldNow = held.size;
  });
  s.resume();
});
hold.maxConnections = 1 << 20;

const udp = createSocket('udp4');
udp.on('message', () => counts.udp++);

/** The question name of a DNS query (labels joined with dots), or null. */
function questionName(m: Buffer): { name: string; end: number } | null {
  let o = 12;
  const labels: string[] = [];
  while (o < m.length) {
    const n = m[o];
    if (n === 0) return { name: labels.join('.'), end: o + 5 };
    if (n > 63 || o + 1 + n > m.length) return null;
    labels.push(m.toString('latin1', o + 1, o + 1 + n));
    o += 1 + n;
  }
  return null;
}

const dns = createSocket('udp4');
dns.on('message', (m, rinfo) => {
  if (m.length < 12) return;
  const q = questionName(m);
  if (q === null || q.end > m.length) return;
  if (q.name.toLowerCase().endsWith('flood.test')) {
    counts.dnsDropped++;
    return;
  }
  counts.dnsAnswered++;
  const head = Buffer.from(m.subarray(0, q.end));
  head[2] = 0x81; // QR, RD
  head[3] = 0x80; // RA, NOERROR
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(1, 6);
  head.writeUInt16BE(0, 8);
  head.writeUInt16BE(0, 10);
  const answer = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
  dns.send(Buffer.concat([head, answer]), rinfo.port, rinfo.address);
});

await Promise.all([
  new Promise<void>((r) => http.listen(0, '127.0.0.1', r)),
  new Promise<void>((r) => hold.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, r)),
  new Promise<void>((r) => udp.bind(0, '127.0.0.1', r)),
  new Promise<void>((r) => dns.bind(0, '127.0.0.1', r)),
]);
const ports = {
  http: (http.address() as AddressInfo).port,
  hold: (hold.address() as AddressInfo).port,
  udp: udp.address().port,
  dns: dns.address().port,
};
process.stdout.write(`servers ${JSON.stringify({ ...ports, sha256, bytes })}\n`);
process.on('SIGUSR1', () => process.stdout.write(`counts ${JSON.stringify(counts)}\n`));
process.on('SIGTERM', () => process.exit(0));
