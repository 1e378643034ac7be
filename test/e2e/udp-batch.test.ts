/**
 * UDP bursts end to end, with the offloads on and off: a guest in `usernet
 * run` sends sequence-numbered datagrams to a server on host loopback, in
 * bursts the guest's kernel hands over as USO super-frames where the tap took
 * USO (UDP_SEGMENT on the guest's socket), and the server answers with bursts
 * of its own (UDP_SEGMENT on the host, so usernet's flow socket receives them
 * coalesced by UDP_GRO), then as single datagrams (which usernet may put
 * together into USO frames itself). Both sides check every datagram's number and bytes,
 * and the stats say which paths were taken. Traffic: loopback and the run's
 * namespace only.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, Sandbox, usernetAsync } from './harness.js';

const sandbox = new Sandbox();
afterEach(() => sandbox.cleanup());

/** Datagrams each way, their size, and how many go per burst (one sendmsg with UDP_SEGMENT). */
const COUNT = 800;
const SIZE = 1200;
const BURST = 20;

// Datagram i: its number (4 bytes, big-endian), then SIZE - 4 bytes of (i + k) & 0xff.
const COMMON = `
import socket, struct, sys, time, json
SOL_UDP = 17
UDP_SEGMENT = 103
COUNT, SIZE, BURST = ${COUNT}, ${SIZE}, ${BURST}
def datagram(i):
    return struct.pack('>I', i) + bytes((i + k) & 0xff for k in range(SIZE - 4))
def send_bursts(s, addr):
    # The first half as UDP_SEGMENT bursts, the second as single datagrams sent back to back.
    s.setsockopt(SOL_UDP, UDP_SEGMENT, SIZE)
    for b in range(0, COUNT, BURST):
        if b == COUNT // 2:
            s.setsockopt(SOL_UDP, UDP_SEGMENT, 0)
        ds = [datagram(i) for i in range(b, min(b + BURST, COUNT))]
        for payload in ([b''.join(ds)] if b < COUNT // 2 else ds):
            if addr is None:
                s.send(payload)
            else:
                s.sendto(payload, addr)
        time.sleep(0.002)
def check(got):
    nums = [struct.unpack('>I', d[:4])[0] for d in got]
    bad = [n for n, d in zip(nums, got) if n >= COUNT or d != datagram(n)]
    return {'received': len(got), 'inOrder': nums == sorted(nums), 'unique': len(set(nums)), 'bad': len(bad)}
`;

const HOST = `${COMMON}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(('127.0.0.1', int(sys.argv[1])))
print('listening', flush=True)
got = []
peer = None
while True:
    d, peer = s.recvfrom(65536)
    if d == b'done':
        break
    got.append(d)
print(json.dumps(check(got)), flush=True)
send_bursts(s, peer)
s.sendto(b'end', peer)
`;

const GUEST = `${COMMON}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.connect(('10.0.2.2', int(sys.argv[1])))
send_bursts(s, None)
time.sleep(0.2)
s.send(b'done')
s.settimeout(20)
got = []
while True:
    d = s.recv(65536)
    if d == b'end':
        break
    got.append(d)
print(json.dumps(check(got)), flush=True)
# One stats interval more, so usernet logs its counters after the traffic.
time.sleep(1.5)
`;

describe('UDP bursts through the NAT', () => {
  for (const offload of [true, false]) {
    it(`delivers sequence-numbered bursts both ways intact (${offload ? 'vnet offloads: USO and GRO' : 'plain tap: no USO'})`, async () => {
      const dir = sandbox.tmpdir();
      writeFileSync(join(dir, 'host.py'), HOST);
      writeFileSync(join(dir, 'guest.py'), GUEST);
      const logFile = join(dir, 'usernet.log');
      const port = await freePort();
      const host = sandbox.spawn('python3', [join(dir, 'host.py'), String(port)]);
      await host.waitFor(/listening/);
      const r = await usernetAsync(
        ['run', '--stats-interval', '1', '--log-file', logFile, ...(offload ? [] : ['--no-offload']), '--', 'python3', join(dir, 'guest.py'), String(port)],
        60_000,
      );
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      await host.exited;
      const expected = { received: COUNT, inOrder: true, unique: COUNT, bad: 0 };
      expect(JSON.parse(host.stdout.trim().split('\n')[1])).toEqual(expected);
      expect(JSON.parse(r.stdout.trim())).toEqual(expected);

      const lines = readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('usernet: stats '));
      const stats = JSON.parse(lines[lines.length - 1].slice(lines[lines.length - 1].indexOf('{')));
      const u = stats.udpHost;
      expect(u.datagramsOut).toBeGreaterThanOrEqual(COUNT + 1);
      expect(u.groSockets).toBeGreaterThanOrEqual(1);
      expect(u.gsoRefused).toBeNull();
      // The host's UDP_SEGMENT bursts cross loopback whole, and UDP_GRO hands them over so.
      expect(u.datagramsIn).toBeGreaterThan(u.messagesIn);
      if (offload) {
        expect(stats.taps[0].offloads).toEqual(expect.arrayContaining(['uso4', 'uso6']));
        expect(u.usoToGuests).toBe(true);
        expect(u.usoFrames).toBeGreaterThan(0);
        // The guest's bursts came as super-frames and left as UDP_SEGMENT messages.
        expect(u.messagesOut).toBeLessThan(u.datagramsOut / 2);
      } else {
        expect(u.usoToGuests).toBe(false);
        expect(u.usoFrames).toBe(0);
      }
    }, 90_000);
  }
});
