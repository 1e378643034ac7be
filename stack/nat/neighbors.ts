/**
 * Guest IPv4 address -> MAC, learned from the frames guests send the
 * gateway. The NAT needs it to address replies that are not answers to a
 * frame in hand (DNS answers, UDP from the host, port-forwarded connections).
 * Bounded: beyond `capacity` the oldest learned entry is dropped (a Map keeps
 * insertion order, and a MAC change re-inserts).
 */
export const NEIGHBOR_CAPACITY = 1024;

export class Neighbors {
  private readonly map = new Map<number, number>();

  constructor(private readonly capacity = NEIGHBOR_CAPACITY) {}

  learn(ip: number, mac: number): void {
    const cur = this.map.get(ip);
    if (cur === mac) return;
    if (cur !== undefined) this.map.delete(ip);
    else if (this.map.size >= this.capacity) {
      const oldest = this.map.keys().next().value as number;
      this.map.delete(oldest);
    }
    this.map.set(ip, mac);
  }

  /** The MAC of ip, or -1 when unknown. */
  lookup(ip: number): number {
    return this.map.get(ip) ?? -1;
  }

  get size(): number {
    return this.map.size;
  }
}
