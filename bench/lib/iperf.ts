/** Reading iperf3's JSON (-J) output. */

export interface IperfTcp {
  bitsPerSecond: number;
  bytes: number;
}

export interface IperfUdp {
  /** Datagrams the receiver got, per second. */
  packetsPerSecond: number;
  packets: number;
  lost: number;
}

function parse(stdout: string): any {
  const start = stdout.indexOf('{');
  if (start < 0) throw new Error(`iperf3 printed no JSON: ${stdout.slice(0, 200)}`);
  const j = JSON.parse(stdout.slice(start));
  if (j.error) throw new Error(`iperf3: ${j.error}`);
  return j;
}

export function parseTcp(stdout: string): IperfTcp {
  const j = parse(stdout);
  const r = j.end?.sum_received;
  if (!r || typeof r.bits_per_second !== 'number') throw new Error('iperf3 JSON without end.sum_received');
  return { bitsPerSecond: r.bits_per_second, bytes: r.bytes };
}

export function parseUdp(stdout: string): IperfUdp {
  const j = parse(stdout);
  // 3.13+ reports the receiver's view in sum_received; older ones put the
  // sender's count and the receiver's losses together in sum.
  const s = j.end?.sum_received?.packets !== undefined ? j.end.sum_received : j.end?.sum;
  if (!s || typeof s.packets !== 'number') throw new Error('iperf3 JSON without UDP packet counts');
  const seconds = s.seconds ?? (s.end - s.start);
  const delivered = s.packets - (s.lost_packets ?? 0);
  return { packetsPerSecond: delivered / seconds, packets: s.packets, lost: s.lost_packets ?? 0 };
}
