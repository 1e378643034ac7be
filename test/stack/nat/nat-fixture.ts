/**
 * A whole stack (gateway, IPv4/IPv6 layers, NAT) on 10.0.2.0/24 with small
 * tables, for the NAT unit tests; `over` replaces any option. Frames the
 * gateway and the NAT send go to `sink`.
 */
import type { FrameSink } from '../../../stack/frame.js';
import type { Gateway } from '../../../stack/gateway.js';
import type { Nat } from '../../../stack/nat/nat.js';
import { Stack, type StackOptions } from '../../../stack/stack.js';

export const NET = 0x0a00_0200; // 10.0.2.0
export const GW_MAC = 0x5255_0a00_0202;

export function makeNat(sink: FrameSink, over: Partial<StackOptions> = {}): { gw: Gateway; nat: Nat; stack: Stack } {
  const stack = new Stack(
    {
      mac: GW_MAC,
      network: NET,
      prefix: 24,
      mtu: 1500,
      hostLoopback: true,
      dhcp: false,
      dnsUpstreams: [],
      dnsTimeoutMs: 1000,
      tcpMaxFlows: 16,
      tcpIdleTimeoutMs: 60_000,
      udpMaxFlows: 16,
      udpIdleTimeoutMs: 60_000,
      udpDnsIdleTimeoutMs: 10_000,
      icmpMaxFlows: 16,
      icmpIdleTimeoutMs: 30_000,
      ...over,
    },
    sink,
    () => undefined,
  );
  return { gw: stack.gateway, nat: stack.nat, stack };
}
