/**
 * Writes every frame that enters the bridge to a capture file, readable by
 * tcpdump and Wireshark: pcapng by default, with one interface per bridge
 * port so that each frame says which port it came in on (the gateway's own
 * frames on the interface "gateway"), or classic pcap (--pcap-format pcap:
 * one undivided stream, for tools that predate pcapng).
 *
 * Frames are copied into a 1 MiB buffer and written with one synchronous
 * write when it fills, on flush() and on close(): a debug aid, so simplicity
 * wins over overlapping the disk write with forwarding. virtio-net headers
 * are left out; GSO super-frames are recorded whole.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Frame, Port } from '../stack/frame.js';
import { PCAP_RECORD_HEADER_LEN, writeGlobalHeader, writeRecordHeader } from '../stack/pcap.js';
import {
  enhancedPacketLength,
  interfaceBlockLength,
  writeEnhancedPacketHeader,
  writeEnhancedPacketTrailer,
  writeInterfaceBlock,
  writeSectionHeader,
} from '../stack/pcapng.js';

const BUFFER_BYTES = 1 << 20;
/** Super-frames reach 64 KiB + headers; a snaplen of 256 KiB keeps them whole. */
const SNAPLEN = 262_144;

export type CaptureFormat = 'pcapng' | 'pcap';

export interface CaptureWriter {
  readonly records: number;
  /** Records a frame that entered the bridge through `from` at `wallMs` (ms since the epoch). */
  record(frame: Frame, from: Port, wallMs: number): void;
  flush(): void;
  close(): void;
}

export function openCapture(path: string, format: CaptureFormat): CaptureWriter {
  return format === 'pcap' ? new PcapWriter(path) : new PcapngWriter(path);
}

/** The file and its write buffer. */
abstract class BufferedCapture {
  protected fd: number;
  protected readonly buf = Buffer.alloc(BUFFER_BYTES);
  protected used = 0;
  records = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w', 0o644);
  }

  /** Makes room for `need` more bytes. */
  protected reserve(need: number): void {
    if (this.used + need > this.buf.length) this.flush();
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

/** Classic pcap: a file header, then a record header before each frame. */
export class PcapWriter extends BufferedCapture implements CaptureWriter {
  constructor(path: string) {
    super(path);
    this.used = writeGlobalHeader(this.buf, 0, SNAPLEN);
    this.flush();
  }

  record(frame: Frame, _from: Port, wallMs: number): void {
    if (this.fd < 0) return;
    const need = PCAP_RECORD_HEADER_LEN + frame.len;
    this.reserve(need);
    writeRecordHeader(this.buf, this.used, wallMs, frame.len, frame.len);
    frame.buf.copy(this.buf, this.used + PCAP_RECORD_HEADER_LEN, frame.off, frame.off + frame.len);
    this.used += need;
    this.records++;
  }
}

/**
 * pcapng: a section header, then an interface description for each port at
 * its first frame (interface ids count up from 0 in that order; a port
 * removed and another added under a reused bridge id is a new interface),
 * and an enhanced packet block per frame naming its interface.
 */
export class PcapngWriter extends BufferedCapture implements CaptureWriter {
  /** Interface id per port; weak, so that ports detached long ago (and their buffers) are not kept alive. */
  private readonly interfaces = new WeakMap<Port, number>();
  private nextInterface = 0;

  constructor(path: string) {
    super(path);
    this.used = writeSectionHeader(this.buf, 0, 'usernet');
    this.flush();
  }

  /** Interfaces described so far. */
  get interfaceCount(): number {
    return this.nextInterface;
  }

  record(frame: Frame, from: Port, wallMs: number): void {
    if (this.fd < 0) return;
    let ifId = this.interfaces.get(from);
    if (ifId === undefined) {
      ifId = this.nextInterface++;
      this.interfaces.set(from, ifId);
      this.reserve(interfaceBlockLength(from.name));
      this.used = writeInterfaceBlock(this.buf, this.used, from.name, SNAPLEN);
    }
    this.reserve(enhancedPacketLength(frame.len));
    const data = writeEnhancedPacketHeader(this.buf, this.used, ifId, wallMs, frame.len, frame.len);
    frame.buf.copy(this.buf, data, frame.off, frame.off + frame.len);
    this.used = writeEnhancedPacketTrailer(this.buf, data, frame.len);
    this.records++;
  }
}
