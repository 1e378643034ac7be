/**
 * Attack 8, malformed frames on the real path: FRAMES frames from
 * attack-fuzz-frames.ts (every kind a guest can send, random fields, most of
 * them damaged; seeded, so a failing seed reproduces) are written from the
 * attacker's namespace through an AF_PACKET socket on its tap, so they take
 * the whole way in: tap, native batch read, bridge, gateway, NAT, host
 * sockets. Then usernet must be alive, its counters must show the frames,
 * and a fresh TCP transfer (sha256-checked), a ping and a DNS query must
 * work from the well-behaved guest, and a fresh TCP transfer from the
 * fuzzing guest itself. Complements the unit fuzzers (test/stack/*fuzz*).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runAsync } from './harness.js';
import { ATTACKER_IP, attackFixture, figures, GATEWAY, HOST_TARGET, Sampler, statsOfNet, wellBehaved } from './attack-harness.js';
import { FrameFuzzer, ip4, ip6, KINDS, type Kind } from './attack-fuzz-frames.js';

const attack = attackFixture();

const FRAMES = 40_000;
const SEED = Number(process.env.USERNET_FUZZ_SEED ?? 0x5eed18);
/**
 * Writes the length-prefixed frames of a file to an interface through
 * AF_PACKET, bounded by the file; paced (a pause every 100 frames) so the
 * tap's queue (500 frames) is not overrun and the frames reach usernet.
 */
const SENDER = `
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[2], 0))
data = open(sys.argv[1], 'rb').read()
off = sent = failed = 0
while off + 2 <= len(data):
    n = struct.unpack_from('>H', data, off)[0]
    off += 2
    try:
        s.send(data[off:off + n]); sent += 1
    except OSError:
        failed += 1
    off += n
    if (sent + failed) % 100 == 0:
        time.sleep(0.01)
print('sent', sent, 'failed', failed)
`;

const mac = (s: string) => Buffer.from(s.split(':').map((h) => parseInt(h, 16)));

describe('attack: malformed frames on the real path', () => {
  it(`survives ${FRAMES} fuzzed frames of every kind from a guest (seed ${SEED}) and serves fresh connections after`, async () => {
    const net = await attack.start();
    const fz = new FrameFuzzer(SEED, {
      srcMac: mac(net.attacker.mac),
      gwMac: mac('52:55:0a:00:02:02'),
      srcIp: ip4(ATTACKER_IP),
      dst4: [ip4(GATEWAY), ip4('10.0.2.3'), ip4(HOST_TARGET), ip4('10.0.2.255'), ip4('255.255.255.255')],
      spoof4: [ip4('10.0.2.150'), ip4('0.0.0.0'), ip4('10.0.2.255'), ip4('127.0.0.1')],
      dst6: [ip6('fd00::2'), ip6('fd00::3'), ip6('ff02::1')],
      src6: ip6('fd00::101'),
      tcpPorts: [net.servers.hold, net.servers.http, 1, 9],
      udpPorts: [net.servers.udp, 53, 9],
    });
    const perKind = Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<Kind, number>;
    let mutated = 0;
    const parts: Buffer[] = [];
    for (let i = 0; i < FRAMES; i++) {
      const f = fz.next();
      perKind[f.kind]++;
      if (f.mutated) mutated++;
      const frame = f.frame.subarray(0, 9000);
      const len = Buffer.alloc(2);
      len.writeUInt16BE(frame.length);
      parts.push(len, frame);
    }
    const path = join(attack.files.tmpdir(), 'frames.bin');
    writeFileSync(path, Buffer.concat(parts));
    const sampler = new Sampler(net.usernet.pid);
    const before = await statsOfNet(net);
    const send = await runAsync('ip', ['netns', 'exec', net.attacker.ns, 'python3', '-c', SENDER, path, net.attacker.tap], 120_000);
    const m = /sent (\d+) failed (\d+)/.exec(send.stdout);
    expect(m, send.stderr).not.toBeNull();
    await new Promise((r) => setTimeout(r, 200));
    if (!net.usernet.running) throw new Error(`usernet died under the fuzz (seed ${SEED}): ${net.usernet.stderr.slice(-3000)}`);
    // Whatever the frames left behind (pending dials, half-open flows) settles or stays bounded; usernet answers.
    const after = await statsOfNet(net);
    const good = await wellBehaved(net);
    const own = await runAsync('ip', ['netns', 'exec', net.attacker.ns, 'sh', '-c', `curl -sS --fail --max-time 30 http://${GATEWAY}:${net.servers.http}/blob | sha256sum`], 40_000);
    sampler.stop();
    const port = (s: any) => s.bridge.ports.find((p: any) => p.name === net.attacker.tap).counters;
    const gwDrops = (s: any) => Object.values(s.bridge.ports.find((p: any) => p.name === 'gateway').counters.drops as Record<string, number>).reduce((a, b) => a + b, 0);
    figures('fuzz', {
      seed: SEED,
      frames: FRAMES,
      mutated,
      perKind,
      sent: Number(m![1]),
      sendFailed: Number(m![2]),
      rxFrames: port(after).rxFrames - port(before).rxFrames,
      gatewayDrops: gwDrops(after) - gwDrops(before),
      tcpFlowsCreated: after.nat.tcp.created - before.nat.tcp.created,
      udpFlowsCreated: after.nat.udp.created - before.nat.udp.created,
      ...sampler.figures(),
      good,
      ownTransferOk: own.stdout.split(' ')[0] === net.servers.sha256,
    });
    expect(net.usernet.running).toBe(true);
    expect(Number(m![1])).toBeGreaterThan(FRAMES * 0.9);
    // The frames arrived and the malformed ones were counted, not thrown on.
    expect(port(after).rxFrames - port(before).rxFrames).toBeGreaterThan(FRAMES * 0.9);
    expect(gwDrops(after) - gwDrops(before)).toBeGreaterThan(FRAMES / 10);
    expect(good.ok, good.detail).toBe(true);
    expect(own.stdout.split(' ')[0], own.stderr).toBe(net.servers.sha256);
    expect(net.usernet.stderr).not.toMatch(/TypeError|RangeError|uncaught|Error:/);
  }, 150_000);
});
