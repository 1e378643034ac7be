/**
 * Which engine shard owns a frame from the guest (issue 17; ARCHITECTURE.md,
 * "Engine shards"). Pure: the bytes in, a shard number out.
 *
 * How it works
 * - A flow is owned by a shard that every shard computes alike from the
 *   flow's guest-side addresses and ports: a hash of (protocol, guest
 *   address, remote address, guest port, remote port) modulo the shard
 *   count. The guest's kernel spreads its transmit queues by its own
 *   (seeded, unknowable) symmetric hash, and a tap queue fd is read by one
 *   shard only, so a frame can arrive at a shard that does not own its flow;
 *   that shard hands it over (src/shards/). The kernel then steers the
 *   flow's later frames to the queue its owner writes on (tun.c:
 *   tun_flow_update on every write, tun_automq_select_queue on the guest's
 *   transmit; an entry is fresh for TUN_FLOW_EXPIRE, 3 s), so hand-overs
 *   are mostly the first frame of a flow, and the first after 3 s of quiet.
 * - Only frames from the guest are classified: the owner of a flow sends its
 *   frames to the guest itself, on its own queue.
 * - Shard 0 owns what is not a flow of the NAT, so exactly one shard answers
 *   it: ARP requests, DHCP, router and neighbour solicitations, MLD, IP
 *   fragments (they carry no ports; reassembly wants them in one place, so a
 *   fragmented datagram's flow is served by shard 0 even when another shard
 *   owns its unfragmented packets), VLAN-tagged frames and anything unknown.
 * - BROADCAST: frames that teach neighbour state every shard needs, because
 *   each shard resolves the guest's MAC on its own (ARP replies, neighbour
 *   advertisements). Each shard takes them; none answers them.
 * - Port forwards: every forward's listener lives in shard 0, which opens the
 *   flow into the guest. The guest's frames of such a flow come from the
 *   forward's guest port, so a frame whose guest (source) port is a forwarded
 *   port of its protocol belongs to shard 0 (`forwardPorts`). A guest
 *   connection that merely starts from such a port goes to shard 0 as well:
 *   the rule only has to be the same in every shard, and it is.
 * - ICMP errors from the guest about a flow (port unreachable for a UDP
 *   datagram it got) go to the owner of the flow in the quoted header.
 */

/** Every shard takes the frame (neighbour state); none answers it. */
export const BROADCAST = -1;

/** Numeric key of a forwarded guest port: protocol number * 65536 + port. */
export function forwardPortKey(proto: number, port: number): number {
  return proto * 65536 + port;
}

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_ARP = 0x0806;
const ETHERTYPE_IPV6 = 0x86dd;
const PROTO_ICMP = 1;
const PROTO_TCP = 6;
const PROTO_UDP = 17;
const PROTO_ICMPV6 = 58;
const DHCP_SERVER_PORT = 67;

/** A 32-bit mixing step (the murmur3 finaliser's constants): the shard count is small, the low bits must be good. */
function mix(h: number, v: number): number {
  h ^= v;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

function word(b: Buffer, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

/**
 * The shard of a flow given by its guest side: `ga`/`ra` the offsets of the
 * guest's and the remote address in `b` (`alen` 4 or 16 bytes).
 */
function flowShard(b: Buffer, proto: number, ga: number, ra: number, alen: number, gport: number, rport: number, shards: number, forwardPorts: ReadonlySet<number> | null): number {
  if (forwardPorts !== null && forwardPorts.has(forwardPortKey(proto, gport))) return 0;
  let h = mix(0x9e3779b9, proto);
  for (let i = 0; i < alen; i += 4) h = mix(h, word(b, ga + i));
  for (let i = 0; i < alen; i += 4) h = mix(h, word(b, ra + i));
  h = mix(h, (gport << 16) | rport);
  return (h >>> 0) % shards;
}

/**
 * The shard that owns the guest's frame at `b[off, off+len)` (Ethernet
 * header first), 0..shards-1, or BROADCAST. `forwardPorts`: forwardPortKey of
 * every forward's guest port, or null for none.
 */
export function frameOwner(b: Buffer, off: number, len: number, shards: number, forwardPorts: ReadonlySet<number> | null): number {
  if (shards <= 1 || len < 14) return 0;
  const type = (b[off + 12] << 8) | b[off + 13];
  const l3 = off + 14;
  const end = off + len;
  if (type === ETHERTYPE_IPV4) {
    if (end - l3 < 20) return 0;
    const ihl = (b[l3] & 0x0f) * 4;
    const proto = b[l3 + 9];
    // More fragments, or an offset: a fragment (see above).
    if ((((b[l3 + 6] << 8) | b[l3 + 7]) & 0x3fff) !== 0) return 0;
    const l4 = l3 + ihl;
    if (ihl < 20 || end - l4 < 8) return 0;
    if (proto === PROTO_TCP || proto === PROTO_UDP) {
      const sport = (b[l4] << 8) | b[l4 + 1];
      const dport = (b[l4 + 2] << 8) | b[l4 + 3];
      if (proto === PROTO_UDP && dport === DHCP_SERVER_PORT) return 0;
      return flowShard(b, proto, l3 + 12, l3 + 16, 4, sport, dport, shards, forwardPorts);
    }
    if (proto === PROTO_ICMP) {
      const t = b[l4];
      // Echo request: the identifier is the flow's port on both sides (stack/nat/icmp-nat.ts).
      if (t === 8) {
        const id = (b[l4 + 4] << 8) | b[l4 + 5];
        return flowShard(b, proto, l3 + 12, l3 + 16, 4, id, id, shards, forwardPorts);
      }
      // Unreachable, time exceeded, parameter problem: the quoted packet went to the guest.
      if (t === 3 || t === 11 || t === 12) return quoted4(b, l4 + 8, end, shards, forwardPorts);
    }
    return 0;
  }
  if (type === ETHERTYPE_IPV6) {
    if (end - l3 < 40) return 0;
    const nh = b[l3 + 6];
    const l4 = l3 + 40;
    if (end - l4 < 8) return 0;
    if (nh === PROTO_TCP || nh === PROTO_UDP) {
      const sport = (b[l4] << 8) | b[l4 + 1];
      const dport = (b[l4 + 2] << 8) | b[l4 + 3];
      return flowShard(b, nh, l3 + 8, l3 + 24, 16, sport, dport, shards, forwardPorts);
    }
    if (nh === PROTO_ICMPV6) {
      const t = b[l4];
      if (t === 128) {
        const id = (b[l4 + 4] << 8) | b[l4 + 5];
        return flowShard(b, nh, l3 + 8, l3 + 24, 16, id, id, shards, forwardPorts);
      }
      // Neighbour advertisement: every shard resolves the guest on its own.
      if (t === 136) return BROADCAST;
      if (t >= 1 && t <= 4) return quoted6(b, l4 + 8, end, shards, forwardPorts);
    }
    // Router and neighbour solicitations, MLD (hop-by-hop header), fragments, the rest.
    return 0;
  }
  if (type === ETHERTYPE_ARP) {
    if (end - l3 < 8) return 0;
    // Replies teach every shard the guest's MAC; requests get one answer, from shard 0.
    return ((b[l3 + 6] << 8) | b[l3 + 7]) === 2 ? BROADCAST : 0;
  }
  return 0;
}

/** The owner of the flow an IPv4 ICMP error quotes: the quoted packet was sent to the guest (source: the remote). */
function quoted4(b: Buffer, q: number, end: number, shards: number, forwardPorts: ReadonlySet<number> | null): number {
  if (end - q < 28) return 0;
  const ihl = (b[q] & 0x0f) * 4;
  const proto = b[q + 9];
  const l4 = q + ihl;
  if (ihl < 20 || end - l4 < 8) return 0;
  if (proto === PROTO_TCP || proto === PROTO_UDP) {
    const rport = (b[l4] << 8) | b[l4 + 1];
    const gport = (b[l4 + 2] << 8) | b[l4 + 3];
    return flowShard(b, proto, q + 16, q + 12, 4, gport, rport, shards, forwardPorts);
  }
  if (proto === PROTO_ICMP && b[l4] === 0) {
    const id = (b[l4 + 4] << 8) | b[l4 + 5];
    return flowShard(b, proto, q + 16, q + 12, 4, id, id, shards, forwardPorts);
  }
  return 0;
}

function quoted6(b: Buffer, q: number, end: number, shards: number, forwardPorts: ReadonlySet<number> | null): number {
  if (end - q < 48) return 0;
  const nh = b[q + 6];
  const l4 = q + 40;
  if (nh === PROTO_TCP || nh === PROTO_UDP) {
    const rport = (b[l4] << 8) | b[l4 + 1];
    const gport = (b[l4 + 2] << 8) | b[l4 + 3];
    return flowShard(b, nh, q + 24, q + 8, 16, gport, rport, shards, forwardPorts);
  }
  if (nh === PROTO_ICMPV6 && b[l4] === 129) {
    const id = (b[l4 + 4] << 8) | b[l4 + 5];
    return flowShard(b, nh, q + 24, q + 8, 16, id, id, shards, forwardPorts);
  }
  return 0;
}
