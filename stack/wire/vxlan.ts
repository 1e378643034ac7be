/**
 * VXLAN header (RFC 7348 §5): 8 bytes before the inner Ethernet frame.
 *
 *   byte 0: flags, 0x08 (I: the VNI is valid); bytes 1-3 reserved
 *   bytes 4-6: VNI (24 bits); byte 7 reserved
 *
 * Receivers here are as strict as Linux's vxlan driver: any flag other than
 * I, or a reserved byte of the first word set, drops the packet (Linux drops
 * unknown flags it was not configured to parse, e.g. GBP). The reserved byte
 * after the VNI is ignored.
 */
export const VXLAN_HLEN = 8;
export const VXLAN_FLAG_I = 0x08;
/** IANA's port; flannel's default is 8472 (Linux's old default). */
export const VXLAN_PORT = 4789;
export const FLANNEL_VXLAN_PORT = 8472;
/** Outer Ethernet + IPv4 + UDP + VXLAN: an inner MTU of the underlay's minus this fits unfragmented. */
export const VXLAN_OVERHEAD_IPV4 = 14 + 20 + 8 + VXLAN_HLEN;
export const VXLAN_OVERHEAD_IPV6 = 14 + 40 + 8 + VXLAN_HLEN;
export const VNI_MAX = 0xff_ffff;

export const VXLAN_OK = 0;
export const VXLAN_BAD_FLAGS = 1;
export const VXLAN_BAD_VNI = 2;

/** VXLAN_OK, or why the header at buf[off, off+8) is not one for `vni`; the caller checked the length. */
export function checkVxlanHeader(buf: Uint8Array, off: number, vni: number): number {
  if (buf[off] !== VXLAN_FLAG_I || (buf[off + 1] | buf[off + 2] | buf[off + 3]) !== 0) return VXLAN_BAD_FLAGS;
  if (((buf[off + 4] << 16) | (buf[off + 5] << 8) | buf[off + 6]) !== vni) return VXLAN_BAD_VNI;
  return VXLAN_OK;
}

export function writeVxlanHeader(buf: Uint8Array, off: number, vni: number): void {
  buf[off] = VXLAN_FLAG_I;
  buf[off + 1] = 0;
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  buf[off + 4] = (vni >> 16) & 0xff;
  buf[off + 5] = (vni >> 8) & 0xff;
  buf[off + 6] = vni & 0xff;
  buf[off + 7] = 0;
}
