/**
 * `usernet slirp4netns --help`. Clients (rootlesskit, podman) search this
 * text for option names to decide what they may pass, so an option is
 * spelled with its leading dashes only when it really works.
 */
export function slirpUsage(prog: string): string {
  return `Usage: ${prog} [OPTION]... PID|PATH [TAPNAME]
User-mode networking for unprivileged network namespaces (usernet's slirp4netns-compatible front end).

-c, --configure          bring up the interface: lo up, TAPNAME up with the MTU,
                         address N+100/prefix, default route via N+2 (ioctls only)
-e, --exit-fd=FD         exit when FD reports hang-up (its writer closed)
-r, --ready-fd=FD        write "1" to FD and close it once the network is up
-m, --mtu=MTU            MTU (default 1500, max 65521)
-a, --api-socket=PATH    JSON API socket path (add_hostfwd, list_hostfwd, remove_hostfwd)
--cidr=CIDR              network (default 10.0.2.0/24; prefix 1..25)
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host through N+2
--netns-type=TYPE        the first argument is a "pid" (default) or a netns "path"
--userns-path=PATH       join this user namespace before the network namespace
--outbound-addr=IPv4|IFNAME
                         bind outbound sockets to this address (or the interface's)
--outbound-addr6=IPv6|IFNAME
                         the same for IPv6 destinations
-6, --enable-ipv6        IPv6: router advertisements for fd00::/64 (the guest takes
                         an address by SLAAC), host ::1 at fd00::2, DNS at fd00::3
--disable-dns            no DNS at N+3
--enable-sandbox         after start-up: a new mount namespace whose root holds only
                         /etc and /run (read-only), every capability dropped but
                         CAP_NET_BIND_SERVICE
--enable-seccomp         after start-up: a syscall filter on every thread (mount,
                         namespaces, exec, ptrace, modules, bpf, ... fail with EPERM)
--macaddress=MAC         MAC address of TAPNAME (with --configure)
--target-type=netns      what the first argument names (only netns)
-h, --help               show this help and exit
-v, --version            show the version and exit

Addresses: gateway and host N+2 (10.0.2.2), DNS N+3, DHCP N+15..N+30, guest N+100.

Environment (usernet's own switches, which slirp4netns' command line has no room for):
USERNET_LOG_LEVEL=LEVEL  error, warn (default), info or debug
USERNET_LOG_FORMAT=FMT   text (default; lines start with the time) or json (one
                         object per line: time, level, msg)
USERNET_LOG_FILE=PATH    append log lines to PATH instead of stderr
USERNET_PCAP=PATH        write every frame crossing the bridge to PATH (pcapng: one
                         interface per port, the tap and "gateway")
USERNET_PCAP_FORMAT=FMT  pcapng (default) or pcap
`;
}
