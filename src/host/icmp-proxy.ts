/**
 * The host side of the ICMP echo NAT: one unprivileged ping socket per guest
 * echo flow, of the flow's family (ICMP over IPv4, or ICMPv6). All sockets
 * share one receive area (and one IPv6 address area), since the addon hands
 * a batch to JS and reclaims the slots when the callback returns.
 *
 * Ping sockets of both families need the process's group in
 * net.ipv4.ping_group_range (root too). As root, usernet widens the range to
 * include its own group once and logs it: lazily on the first refusal, or up
 * front through `prepare()` for a caller about to lose write access to /proc
 * (the slirp4netns sandbox). Otherwise (or if that fails) echo to hosts other
 * than the gateway is dropped and counted, and the first refusal is logged
 * with the fix.
 *
 * IPv6 addresses are handles into the NAT's interned table: a send reads the
 * destination there in place; an ICMPv6 error's offender is interned for the
 * length of the call that reports it.
 */
import { isFdShortage, noteFdShortage } from '../fd-shortage.js';
import { readFileSync, writeFileSync } from 'node:fs';
import type { IcmpHostEnv, IcmpNat } from '../../stack/nat/icmp-nat.js';
import type { IcmpFlow } from '../../stack/nat/icmp-flows.js';
import { isIpv6Handle } from '../../stack/ip/ip-addresses.js';
import { native } from '../native/addon.js';
import {
  PING_ADDR,
  PING_ADDR6_OFFENDER,
  PING_ADDR6_PEER,
  PING_ADDR6_STRIDE,
  PING_ENTRY_WORDS,
  PING_INFO,
  PING_KIND,
  PING_KIND_MASK,
  PING_KIND_REPLY,
  PING_LEN,
  PING_MAX_BATCH,
  PING_OFFENDER,
  PING_TYPE_CODE,
  type PingSocket,
} from '../native/types.js';
import type { Logger } from '../log.js';
import { ErrnoCounts, newDropCounters, type DropAndErrnoCounts } from '../../stack/counters.js';
import type { DropReason } from '../../stack/drop-reasons.js';

/** A reply is as long as its request; 65,535 covers reassembled requests too. */
const SLOT = 65_536;
const SLOTS = 16;
const ENETUNREACH = 101;
const EHOSTUNREACH = 113;
const ICMP_DEST_UNREACHABLE = 3;
const ICMPV6_DEST_UNREACHABLE = 1;
/** ICMPv6 unreachable codes (RFC 4443 3.1): no route, address unreachable. */
const ICMPV6_UNREACH_NO_ROUTE = 0;
const ICMPV6_UNREACH_ADDRESS = 3;
const PING_GROUP_RANGE = '/proc/sys/net/ipv4/ping_group_range';

interface FlowSocket {
  socket: PingSocket;
  generation: number;
}

export class IcmpProxy implements IcmpHostEnv {
  private readonly sockets = new Map<number, FlowSocket>();
  private readonly rxArea = new ArrayBuffer(SLOT * SLOTS);
  private readonly rx = Buffer.from(this.rxArea);
  private readonly entries = new Uint32Array(SLOTS * PING_ENTRY_WORDS);
  private readonly addrs6 = new Uint8Array(SLOTS * PING_ADDR6_STRIDE);
  private refusedLogged = false;
  private widened = false;
  private readonly dropped = newDropCounters();
  /** Drops by reason so far (allocates: for stats and tests). */
  /** Failed sends by errno number, among the drops as 'icmp-send-errno-101' and the like. */
  private readonly sendErrors = new ErrnoCounts('icmp-send-errno-');
  get drops(): DropAndErrnoCounts {
    return this.sendErrors.addTo(this.dropped.snapshot());
  }

  constructor(
    private readonly nat: IcmpNat,
    private readonly clock: () => number,
    private readonly flushPorts: (now: number) => void,
    private readonly log: Logger,
  ) {}

  get openSockets(): number {
    return this.sockets.size;
  }

  /**
   * Makes sure ping sockets will be allowed before the process loses the
   * means to allow them: as root, widens net.ipv4.ping_group_range (which
   * governs ICMPv6 ping sockets too) when it excludes our group. True when
   * our group is (now) in the range; false when it is not and cannot be.
   */
  prepare(): boolean {
    if (this.widened) return true;
    const gid = process.getgid?.() ?? 0;
    try {
      const [lo, hi] = readFileSync(PING_GROUP_RANGE, 'utf8').trim().split(/\s+/).map(Number);
      if (lo <= gid && gid <= hi) return true;
    } catch (err) {
      this.log.debug(`cannot read ping_group_range: ${(err as Error).message}`);
      return false;
    }
    this.widened = this.widenPingGroupRange();
    return this.widened;
  }

  open(flow: IcmpFlow): void {
    this.close(flow);
    let socket: PingSocket;
    try {
      socket = this.createSocket(flow, () => fs);
    } catch (err) {
      if ((err as { code?: string }).code === 'EACCES' && !this.widened && this.widenPingGroupRange()) {
        this.widened = true;
        return this.open(flow);
      }
      this.bump('icmp-socket-refused');
      if (isFdShortage((err as { code?: string }).code)) {
        // Not a lasting refusal: the next flow may have a descriptor again.
        noteFdShortage(this.log, 'icmp', this.clock());
        return;
      }
      if (!this.refusedLogged) {
        this.refusedLogged = true;
        const hint = (err as { hint?: string }).hint;
        this.log.warn(`ICMP echo to other hosts is off: ${(err as Error).message}${hint ? ` (${hint})` : ''}`);
      }
      return;
    }
    const fs: FlowSocket = { socket, generation: flow.generation };
    this.sockets.set(flow.id, fs);
    this.nat.flows.setHostIdent(flow, socket.localId);
  }

  private createSocket(flow: IcmpFlow, fs: () => FlowSocket): PingSocket {
    const v6 = isIpv6Handle(flow.hostIp);
    return native.createPingSocket({
      rx: this.rxArea,
      slotSize: SLOT,
      slotCount: Math.min(SLOTS, PING_MAX_BATCH),
      entries: this.entries,
      ...(v6 ? { family: 6 as const, addrs: this.addrs6 } : {}),
      onBatch: (count) => this.onBatch(flow, fs(), count),
      onError: (err) => {
        this.log.debug(`ping socket: ${err.message}`);
        this.close(flow);
      },
    });
  }

  /**
   * As root, lets our own group use ping sockets in this network namespace
   * (net.ipv4.ping_group_range, empty by default on many systems), widening
   * the range as little as possible. Says so in the log. False when not root
   * or the sysctl cannot be written.
   */
  private widenPingGroupRange(): boolean {
    if (process.getuid?.() !== 0) return false;
    const gid = process.getgid?.() ?? 0;
    try {
      const [lo, hi] = readFileSync(PING_GROUP_RANGE, 'utf8').trim().split(/\s+/).map(Number);
      const next = lo > hi ? `${gid} ${gid}` : `${Math.min(lo, gid)} ${Math.max(hi, gid)}`;
      writeFileSync(PING_GROUP_RANGE, next);
      this.log.info(`set net.ipv4.ping_group_range to "${next}" (was "${lo} ${hi}") so ICMP echo can be forwarded`);
      return true;
    } catch (err) {
      this.log.debug(`cannot widen ping_group_range: ${(err as Error).message}`);
      return false;
    }
  }

  send(flow: IcmpFlow, buf: Buffer, off: number, len: number, ttl: number): void {
    const fs = this.sockets.get(flow.id);
    if (fs === undefined) return this.bump('icmp-no-socket');
    const v6 = isIpv6Handle(flow.hostIp);
    let r: number;
    if (v6) {
      const a = this.nat.output.addrs;
      r = fs.socket.send6(buf, off, len, a.bytes, a.offsetOf(flow.hostIp), ttl);
    } else {
      r = fs.socket.send(buf, off, len, flow.hostIp, ttl);
    }
    if (r === -ENETUNREACH || r === -EHOSTUNREACH) {
      // No route from the host: the guest hears it as a router's unreachable.
      const net = r === -ENETUNREACH;
      if (v6) this.nat.error(flow, ICMPV6_DEST_UNREACHABLE, net ? ICMPV6_UNREACH_NO_ROUTE : ICMPV6_UNREACH_ADDRESS, 0, 0, buf, off, len, this.clock());
      else this.nat.error(flow, ICMP_DEST_UNREACHABLE, net ? 0 : 1, 0, 0, buf, off, len, this.clock());
    } else if (r < 0) {
      this.sendErrors.add(-r);
    }
  }

  close(flow: IcmpFlow): void {
    const fs = this.sockets.get(flow.id);
    if (fs === undefined) return;
    this.sockets.delete(flow.id);
    fs.socket.close();
  }

  private onBatch(flow: IcmpFlow, fs: FlowSocket, count: number): void {
    if (this.sockets.get(flow.id) !== fs || flow.generation !== fs.generation) return;
    const now = this.clock();
    const e = this.entries;
    const v6 = fs.socket.family === 6;
    const a = this.nat.output.addrs;
    for (let i = 0; i < count; i++) {
      const w = i * PING_ENTRY_WORDS;
      const len = e[w + PING_LEN];
      const off = i * SLOT;
      if ((e[w + PING_KIND] & PING_KIND_MASK) === PING_KIND_REPLY) {
        if (v6 ? e[w + PING_ADDR] === 0 || !this.peerIs(i, flow.hostIp) : e[w + PING_ADDR] !== flow.hostIp) continue;
        this.nat.reply(flow, this.rx, off, len, now);
        continue;
      }
      const tc = e[w + PING_TYPE_CODE];
      if (tc === 0) continue;
      if (!v6) {
        this.nat.error(flow, tc >>> 8, tc & 0xff, e[w + PING_OFFENDER], e[w + PING_INFO], this.rx, off, len, now);
        continue;
      }
      // Interned only while the error is built; -1 (table full) is reported as unknown.
      const offender = e[w + PING_OFFENDER] === 0 ? -1 : a.acquire(this.addrs6, i * PING_ADDR6_STRIDE + PING_ADDR6_OFFENDER);
      this.nat.error(flow, tc >>> 8, tc & 0xff, offender < 0 ? 0 : offender, e[w + PING_INFO], this.rx, off, len, now);
      a.release(offender);
    }
    this.flushPorts(now);
  }

  /** Whether entry i's IPv6 peer is the address of handle h. */
  private peerIs(i: number, h: number): boolean {
    const a = this.nat.output.addrs;
    const b = a.bytes;
    const o = a.offsetOf(h);
    const p = this.addrs6;
    const q = i * PING_ADDR6_STRIDE + PING_ADDR6_PEER;
    for (let k = 0; k < 16; k++) if (b[o + k] !== p[q + k]) return false;
    return true;
  }

  closeAll(): void {
    for (const fs of this.sockets.values()) fs.socket.close();
    this.sockets.clear();
  }

  private bump(reason: DropReason): void {
    this.dropped.add(reason);
  }
}
