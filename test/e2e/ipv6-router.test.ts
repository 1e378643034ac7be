// Real-kernel check of the IPv6 router: a namespace with a tap, whose frames a
// tiny harness passes to an Ipv6Layer and back (no bridge, no NAT). The
// kernel must take a SLAAC address in fd00::/64 from our RAs, a default route
// via our link-local address, and ping fd00::2. Needs root; the namespace is
// removed in afterAll, even on failure.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

import { afterAll, describe, expect, it } from 'vitest';

import { PortCounters, type Frame, type FrameSink, type Port } from '../../stack/frame.js';
import { GuestOutput } from '../../stack/guest-output.js';
import { Ipv6Layer } from '../../stack/ip6/ipv6-layer.js';
import { formatIpv6, parseIpv6 } from '../../stack/wire/ipv6-address.js';
import { formatMac, parseMac } from '../../stack/wire/mac.js';
import { native } from '../../src/native/addon.js';
import type { FrameIo } from '../../src/native/types.js';

const execFileAsync = promisify(execFile);

const SLOT = 2048;
const SLOTS = 32;
const TAP = 'usn6t0';
const GW_MAC = parseMac('52:55:0a:00:02:02');
const GUEST_MAC = Uint8Array.from([0x02, 0x00, 0x00, 0x00, 0x00, 0x0a]);

const namespaces: string[] = [];
let io: FrameIo | null = null;
let timer: NodeJS.Timeout | null = null;

afterAll(() => {
  if (timer !== null) clearInterval(timer);
  io?.close();
  for (const ns of namespaces) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
});

async function inNs(ns: string, args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', ns, ...args], { encoding: 'utf8', timeout: 20_000 });
  return stdout;
}

async function until(pred: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Writes what the router emits to the tap, one frame per native call (tests only). */
class TapSink implements FrameSink {
  readonly tx = new ArrayBuffer(SLOT);
  readonly txView = new Uint8Array(this.tx);
  readonly desc = new Uint32Array(4);
  bufIndex = -1;
  sent = 0;
  input(_from: Port, frame: Frame): void {
    if (io === null) return;
    this.txView.set(frame.buf.subarray(frame.off, frame.off + frame.len), 0);
    this.desc[0] = this.bufIndex;
    this.desc[1] = 0;
    this.desc[2] = frame.len;
    this.desc[3] = 0;
    this.sent += io.send(this.desc, 1);
  }
}

describe('Ipv6Layer against a real Linux kernel', () => {
  it('gives the kernel a SLAAC address and a default route, and answers ping -6 fd00::2', async () => {
    const ns = `usn6-${randomBytes(4).toString('hex')}`;
    execFileSync('ip', ['netns', 'add', ns]);
    namespaces.push(ns);
    // Default sysctls already accept RAs on a non-forwarding host; make sure of it.
    await inNs(ns, ['sysctl', '-qw', 'net.ipv6.conf.default.accept_ra=1', 'net.ipv6.conf.default.disable_ipv6=0']);

    const tap = native.openTapInNamespace({
      target: { netnsPath: `/run/netns/${ns}` },
      tap: { name: TAP, vnetHdr: false, offloads: 0 },
      configure: { name: TAP, mac: GUEST_MAC, mtu: 1500, up: true, loopbackUp: true },
    });

    const sink = new TapSink();
    const port: Port = { id: 0, name: 'gateway', vnet: false, counters: new PortCounters(), deliver() {}, flush() {} };
    const router = new Ipv6Layer({ mac: GW_MAC, mtu: 1500, maxRtrAdvIntervalMs: 4000 }, new GuestOutput(sink, port, GW_MAC, () => undefined));
    const rxBuf = new ArrayBuffer(SLOT * SLOTS);
    const rx = Buffer.from(rxBuf);
    const lengths = new Uint32Array(SLOTS);
    const frame: Frame = { buf: rx, off: 0, len: 0, vnet: false };
    const verdicts: Record<string, number> = {};
    const errors: Error[] = [];
    io = native.createFrameIo({
      fd: tap.fd,
      rx: rxBuf,
      slotSize: SLOT,
      slotCount: SLOTS,
      lengths,
      onBatch: (count) => {
        const now = Date.now();
        for (let i = 0; i < count; i++) {
          frame.off = i * SLOT;
          frame.len = lengths[i];
          // IPv4 and ARP are the gateway's business, not the router's.
          if (frame.len < 14 || rx[frame.off + 12] !== 0x86 || rx[frame.off + 13] !== 0xdd) continue;
          const v = router.handleFrame(frame, now);
          verdicts[v] = (verdicts[v] ?? 0) + 1;
        }
      },
      onError: (e) => errors.push(e),
    });
    sink.bufIndex = io.registerBuffer(sink.tx);
    io.start();
    router.poll(Date.now());
    timer = setInterval(() => {
      const now = Date.now();
      if (now >= router.pollAt()) router.poll(now);
    }, 50);

    const prefix = formatIpv6(router.prefix);
    let addr = '';
    await until(async () => {
      const j = JSON.parse(await inNs(ns, ['ip', '-j', '-6', 'addr', 'show', 'dev', TAP]));
      const infos: any[] = j[0]?.addr_info ?? [];
      const a = infos.find((x) => x.scope === 'global' && String(x.local).startsWith(prefix.replace(/::$/, ':')) && x.dynamic && !x.tentative);
      if (a === undefined) return false;
      expect(a.prefixlen).toBe(64);
      addr = a.local;
      return true;
    }, 20_000);
    // A fresh namespace uses addr_gen_mode eui64: the identifier comes from the guest MAC.
    expect(addr).toBe('fd00::ff:fe00:a');

    const routes = JSON.parse(await inNs(ns, ['ip', '-j', '-6', 'route', 'show', 'default']));
    expect(routes.length).toBeGreaterThan(0);
    expect(routes[0].gateway).toBe(formatIpv6(router.linkLocalAddress));
    expect(routes[0].dev).toBe(TAP);

    const ping = await inNs(ns, ['ping', '-6', '-c', '2', '-W', '2', '-i', '0.2', 'fd00::2']);
    expect(ping).toMatch(/2 received/);
    const pingLl = await inNs(ns, ['ping', '-6', '-c', '1', '-W', '2', `${formatIpv6(router.linkLocalAddress)}%${TAP}`]);
    expect(pingLl).toMatch(/1 received/);

    // The kernel's DAD for its own address met silence, and we learned it.
    const guestAddr = parseIpv6(addr)!;
    expect(formatMac(router.lookup(guestAddr, 0))).toBe('02:00:00:00:00:0a');
    const st = router.stats();
    expect(st.dadDefended).toBe(0);
    expect(st.routerAdvertsSent).toBeGreaterThan(0);
    expect(st.echoReplies).toBe(3);
    expect(st.neighborAdvertsSent).toBeGreaterThan(0);
    expect(verdicts.consumed).toBeGreaterThan(0);
    expect(errors).toEqual([]);
  });
});
