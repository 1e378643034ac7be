/**
 * ARP for the gateway's two IPv4 addresses (RFC 826), sans-IO.
 *
 * How it works
 * - `input` takes an ARP frame the gateway parsed: a request for the gateway
 *   or the DNS address gets a reply; anything else is counted and dropped
 *   (real hosts on the bridge answer for themselves).
 * - Every sound ARP packet's sender (requests, replies, gratuitous
 *   announcements alike) is learned into `neighbors` when it is in the
 *   subnet, so the NAT can address guests that never sent it IP.
 * - `sendRequest` asks who has a guest address (port forwards to guests
 *   that never spoke).
 * - Replies and requests are built in the gateway's transmit arena (LinkTx);
 *   the ARP repr is a field: nothing allocates per packet.
 */
import type { DropReason } from '../drop-reasons.js';
import type { LinkInput, LinkTx } from '../link.js';
import type { Neighbors } from '../ip/neighbors.js';
import { ArpRepr, ARP_LEN, ARP_SHA_OFFSET, ARP_OP_REPLY, ARP_OP_REQUEST } from '../wire/arp.js';
import { emitEthernetHeader, ETH_HEADER_LEN, ETHERTYPE_ARP } from '../wire/ethernet.js';

/** The IPv4 identity ARP answers for (the IPv4 layer). */
export interface ArpOwner {
  readonly address: number;
  isLocalAddress(ip: number): boolean;
  inSubnet(ip: number): boolean;
}

export class Arp {
  private readonly arp = new ArpRepr();
  /** Guest MACs learned from ARP senders; null: learn nothing. */
  neighbors: Neighbors | null = null;
  replies = 0;
  requestsSent = 0;
  /** ARP packets parsed fine but not answered (other targets, replies, other operations). */
  ignored = 0;

  constructor(
    private readonly mac: number,
    private readonly owner: ArpOwner,
    private readonly tx: LinkTx,
  ) {}

  /** One ARP frame (Ethernet already parsed in `link`). Returns null when answered, else the drop reason. */
  input(link: LinkInput, now: number): DropReason | null {
    const arp = this.arp;
    const eth = link.eth;
    const frame = link.frame;
    const bad = arp.parse(frame.buf, eth.payloadOffset, eth.payloadLength);
    if (bad !== null) return bad;
    this.learnSender(link, now);
    if (arp.op !== ARP_OP_REQUEST) {
      this.ignored++;
      return 'arp-not-request';
    }
    const target = arp.targetIp;
    if (!this.owner.isLocalAddress(target)) {
      // Real hosts on the bridge answer for themselves.
      this.ignored++;
      return 'arp-other-target';
    }
    // The asker's MAC is checked and copied as bytes: a 48-bit number handed
    // to a helper the JIT did not inline would be boxed once per packet.
    const rx = frame.buf;
    const sha = eth.payloadOffset + ARP_SHA_OFFSET;
    if ((rx[sha] & 1) !== 0 || (rx[sha] | rx[sha + 1] | rx[sha + 2] | rx[sha + 3] | rx[sha + 4] | rx[sha + 5]) === 0) {
      return 'arp-bad-sender';
    }
    const askerMac = arp.senderMac;
    const askerIp = arp.senderIp;

    const tx = this.tx;
    const off = tx.allocTx(now);
    const buf = tx.txBuffer;
    emitEthernetHeader(buf, off, 0, this.mac, ETHERTYPE_ARP);
    for (let i = 0; i < 6; i++) buf[off + i] = rx[sha + i];
    arp.op = ARP_OP_REPLY;
    arp.senderMac = this.mac;
    arp.senderIp = target;
    arp.targetMac = askerMac;
    arp.targetIp = askerIp;
    arp.emitInto(buf, off + ETH_HEADER_LEN);
    this.replies++;
    tx.transmit(off, ETH_HEADER_LEN + ARP_LEN, now);
    return null;
  }

  /** Learns the sender of the ARP packet just parsed, unless it is unusable (multicast, zero, probe with 0.0.0.0, outside the subnet). */
  private learnSender(link: LinkInput, now: number): void {
    const n = this.neighbors;
    if (n === null) return;
    const ip = this.arp.senderIp;
    if (ip === 0 || this.owner.isLocalAddress(ip)) return;
    const rx = link.frame.buf;
    const sha = link.eth.payloadOffset + ARP_SHA_OFFSET;
    if ((rx[sha] & 1) !== 0 || (rx[sha] | rx[sha + 1] | rx[sha + 2] | rx[sha + 3] | rx[sha + 4] | rx[sha + 5]) === 0) return;
    if (this.owner.inSubnet(ip)) n.learn(ip, this.arp.senderMac, now);
  }

  /**
   * Broadcasts "who-has ip tell <gateway address>": the NAT needs the MAC of a
   * guest that has not sent anything yet (port forwards). Rare, so it shares
   * the reply arena.
   */
  sendRequest(ip: number, now: number): void {
    const tx = this.tx;
    const off = tx.allocTx(now);
    const buf = tx.txBuffer;
    emitEthernetHeader(buf, off, 0xffff_ffff_ffff, this.mac, ETHERTYPE_ARP);
    const arp = this.arp;
    arp.op = ARP_OP_REQUEST;
    arp.senderMac = this.mac;
    arp.senderIp = this.owner.address;
    arp.targetMac = 0;
    arp.targetIp = ip >>> 0;
    arp.emitInto(buf, off + ETH_HEADER_LEN);
    this.requestsSent++;
    tx.transmit(off, ETH_HEADER_LEN + ARP_LEN, now);
  }
}
