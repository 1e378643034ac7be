/**
 * A stand-in MAC for a guest whose interface has no MAC at all.
 *
 * How it works
 * - gVisor's /dev/net/tun creates the tap's NIC without a link address
 *   (pkg/tcpip/link/tun/device.go: `channel.New(..., "")`; gvisor #8517), and
 *   neither SIOCSIFHWADDR nor RTM_NEWLINK can set one there. Every frame that
 *   guest sends has source 00:00:00:00:00:00, and so has the sender hardware
 *   address of its ARP packets. The bridge (like Linux's) drops an all-zero
 *   source, and the gateway will not answer or learn an all-zero ARP sender.
 * - The tap port therefore rewrites, on the way in, an all-zero Ethernet source
 *   to a stand-in MAC it chose, and in an ARP packet (Ethernet/IPv4, 6-byte
 *   hardware addresses) an all-zero sender hardware address as well. To the
 *   rest of usernet that guest then has an ordinary MAC.
 * - Nothing is rewritten on the way out: gVisor's tap accepts frames to any
 *   destination MAC (its NIC does not filter on it), so frames addressed to the
 *   stand-in reach it as they are.
 * - A Linux tap always has a non-zero MAC, so for it this never fires; a guest
 *   that forges a zero source on one gets the stand-in too, which is harmless:
 *   it is the same as that guest using the stand-in MAC itself.
 */
import { writeMac } from './wire/mac.js';

const ETH_HLEN = 14;
const OFF_SRC = 6;
const OFF_TYPE = 12;
const ETHERTYPE_ARP = 0x0806;
/** ARP: htype(2) ptype(2) hlen(1) plen(1) op(2), then the sender hardware address. */
const ARP_HLEN_OFFSET = 4;
const ARP_SHA_OFFSET = 8;
const ARP_MIN = 28;

function isZero6(buf: Uint8Array, o: number): boolean {
  return (buf[o] | buf[o + 1] | buf[o + 2] | buf[o + 3] | buf[o + 4] | buf[o + 5]) === 0;
}

/**
 * Replaces an all-zero source MAC (and an all-zero ARP sender hardware
 * address) of the frame at buf[off, off+len) with `mac`. Returns true when it
 * rewrote the source. Frames shorter than an Ethernet header are left alone
 * (the bridge counts them as runts).
 */
export function standInForZeroSource(buf: Uint8Array, off: number, len: number, mac: number): boolean {
  if (len < ETH_HLEN || !isZero6(buf, off + OFF_SRC)) return false;
  writeMac(buf, off + OFF_SRC, mac);
  if (((buf[off + OFF_TYPE] << 8) | buf[off + OFF_TYPE + 1]) === ETHERTYPE_ARP && len >= ETH_HLEN + ARP_MIN) {
    const arp = off + ETH_HLEN;
    if (buf[arp + ARP_HLEN_OFFSET] === 6 && isZero6(buf, arp + ARP_SHA_OFFSET)) writeMac(buf, arp + ARP_SHA_OFFSET, mac);
  }
  return true;
}

/** A random locally administered unicast MAC (as Linux's eth_random_addr picks one). */
export function randomLocalMac(random: Uint8Array): number {
  const b0 = (random[0] & 0xfe) | 0x02;
  return (
    ((b0 << 8) | random[1]) * 0x1_0000_0000 + ((random[2] << 24) >>> 0) + ((random[3] << 16) | (random[4] << 8) | random[5])
  );
}
