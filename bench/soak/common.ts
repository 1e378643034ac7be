/** What the soak's host side (bench/soak.ts) and guest side (guest.ts) agree on. */
import { createHash } from 'node:crypto';

export interface GuestConfig {
  seconds: number;
  /** N+2 and P::2: the host's loopback seen from the guest. */
  host4: string;
  host6: string;
  /** N+3 and P::3: usernet's DNS forwarder. */
  dns4: string;
  dns6: string;
  dnsName: string;
  dnsA: string;
  sourcePort: number;
  sinkPort: number;
  echoPort: number;
  udpPort: number;
  /** Where the guest's echo servers listen for the host's forwarded traffic. */
  guestTcpPort: number;
  guestUdpPort: number;
  blobBytes: number;
  /** Pause between two bulk transfers of one loop (4 loops: down and up, two families). */
  bulkPauseMs: number;
  /** Long-lived connections held open, half per family. */
  holders: number;
}

/** The transfer payload: the same bytes on both sides without shipping them (sha256 chained over a counter). */
export function soakBlob(bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let off = 0, i = 0; off < bytes; off += 32, i++) {
    createHash('sha256').update(`usernet soak ${i}`).digest().copy(out, off);
  }
  return out;
}
