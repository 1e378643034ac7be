/**
 * Writes every frame that enters the bridge to a classic pcap file, readable
 * by tcpdump and Wireshark. Frames are copied into a 1 MiB buffer and written
 * with one synchronous write when it fills, on flush() and on close(): a debug
 * aid, so simplicity wins over overlapping the disk write with forwarding.
 * virtio-net headers are left out; GSO super-frames are recorded whole.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Frame } from '../stack/frame.js';
import {
  PCAP_GLOBAL_HEADER_LEN,
  PCAP_RECORD_HEADER_LEN,
  writeGlobalHeader,
  writeRecordHeader,
} from '../stack/pcap.js';

const BUFFER_BYTES = 1 << 20;
/** Super-frames reach 64 KiB + headers; a snaplen of 256 KiB keeps them whole. */
const SNAPLEN = 262_144;

export class PcapWriter {
  private fd: number;
  private readonly buf = Buffer.alloc(BUFFER_BYTES);
  private used = 0;
  records = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w', 0o644);
    writeGlobalHeader(this.buf, 0, SNAPLEN);
    this.used = PCAP_GLOBAL_HEADER_LEN;
    this.flush();
  }

  record(frame: Frame, wallMs: number): void {
    if (this.fd < 0) return;
    const need = PCAP_RECORD_HEADER_LEN + frame.len;
    if (this.used + need > this.buf.length) this.flush();
    writeRecordHeader(this.buf, this.used, wallMs, frame.len, frame.len);
    frame.buf.copy(this.buf, this.used + PCAP_RECORD_HEADER_LEN, frame.off, frame.off + frame.len);
    this.used += need;
    this.records++;
  }

  flush(): void {
    let off = 0;
    while (off < this.used) off += writeSync(this.fd, this.buf, off, this.used - off);
    this.used = 0;
  }

  close(): void {
    if (this.fd < 0) return;
    this.flush();
    closeSync(this.fd);
    this.fd = -1;
  }
}
