import { defaults } from '../../stack/config.js';
import { helpText, limitHelp, limits } from '../../stack/limits.js';

const commonOptions = `
Network:
  --cidr CIDR            network the gateway serves (default ${defaults.cidr});
                         gateway N+2 (host 127.0.0.1), DNS N+3, guest N+100
  --disable-host-loopback
                         N+2 (and P::2) no longer reach the host's loopback
  --dns HOST[:PORT]      upstream resolver for N+3 (repeatable, tried in order;
                         [::1]:53 for IPv6); default: /etc/resolv.conf
  --disable-dns          no DNS forwarder
  --no-dhcp              no DHCP server
  --mtu N                interface MTU, 68..65521 (default ${defaults.mtu})
  --no-offload           open taps without a virtio-net header (no TSO/checksum offload)
  -p, --publish [HOST_ADDR:]HOST_PORT:[GUEST_ADDR:]GUEST_PORT[/tcp|udp]
                         forward a host port to the guest (repeatable); host address
                         default 0.0.0.0, guest default N+100; the guest sees N+2.
                         IPv6 in brackets: -p [::1]:8080:80 (run: to the guest's SLAAC
                         address; --tap: give it, -p [::1]:8080:[fd00::5054:ff:fe12:3456]:80)

IPv6 (on by default when the MTU is at least 1280):
  --ipv6-prefix P        the /64 on the link (default ${defaults.ipv6Prefix}); router
                         advertisements (SLAAC, MTU, RDNSS), gateway P::2 (host ::1),
                         DNS P::3; usernet run waits for the guest's SLAAC address
  --disable-ipv6         no IPv6: no router advertisements, no IPv6 NAT

Bridge:
  --mac-table-size N     ${helpText(limits.macTableSize, 25)}
  --mac-aging SECONDS    ${helpText(limits.macAgingMs, 25)}

Limits (repeatable --limit NAME=N; what happens at each: README, Reliability):
${limitHelp()}

ICMP: pings to hosts beyond the gateway use unprivileged ping sockets, which need the
  group in net.ipv4.ping_group_range. Run as root, usernet widens that range to include
  its own group when the kernel refuses (and logs it); otherwise run
  sysctl -w net.ipv4.ping_group_range='0 2147483647'.

Cores:
  --workers N            engine shards on N worker threads, one per queue of a
                         multi-queue tap (1..16; default 1: one thread). One
                         tap only, without --pcap, VM sockets, VXLAN or --metrics

Latency:
  --busy-poll MICROS     after a small batch, poll for the answer this long before
                         sleeping; the answer then carries the guest's ACK
                         (default ${defaults.busyPollMicros}; 0: never)
  --no-warm-up           skip the start-up warm-up (about a second of loopback
                         transactions through a private copy of the stack, so that
                         the first real connections run compiled code)

VMs and other hosts (repeatable; plain Ethernet frames):
  --listen-qemu unix:PATH|tcp:HOST:PORT
                         accept QEMU -netdev stream connections (each a 32-bit
                         big-endian length before every frame); one bridge port
                         per connected VM, removed when it disconnects
  --listen-dgram unix:PATH
                         one VM on QEMU -netdev dgram (one frame per datagram;
                         the peer is learned from its datagrams)
  --vxlan REMOTE[:PORT][,vni=N][,local=ADDR:PORT]
                         extend the segment over VXLAN (RFC 7348; port 4789,
                         flannel 8472; VNI 1); same local address: one endpoint,
                         several remotes. Outer packets are 50 bytes over the MTU

Diagnostics:
  --pcap FILE            write every frame crossing the bridge to FILE (tcpdump -r FILE):
                         pcapng with one interface per bridge port (the tap's name,
                         "gateway" for the gateway's own frames, VM and VXLAN ports)
  --pcap-format FORMAT   pcapng (default) or pcap (classic, no interfaces)
  --stats-interval S     log counters every S seconds (SIGUSR1 logs them once): one
                         JSON object with time and uptimeSeconds; in text format after
                         TIME usernet: stats
  --stats-mac-table      include the MAC table's entries in those (size and capacity
                         are always there)
  --metrics unix:PATH|tcp:HOST:PORT
                         serve GET /metrics (Prometheus text, as the daemon's API does)
                         and GET /stats (JSON; ?macTable=1 adds the MAC table) there;
                         TCP on a loopback address only (no authentication)
  --metrics-allow-remote let --metrics tcp: listen on any address
  --log-level LEVEL      error, warn, info or debug
  --log-format FORMAT    text (default): TIME usernet: LEVEL: MESSAGE, the time in
                         ISO 8601 UTC; json: one object per line, {time, level, msg, ...}
  --log-file FILE        append log lines (and stats) to FILE instead of stderr
  -h, --help             show this help
  -V, --version          show the version
`;

export const mainHelp = `usernet: a user-mode network for containers and VMs

Usage:
  usernet --tap NAME [--tap NAME ...] [OPTIONS]
      Attach to taps in this network namespace (creating missing ones) and bridge them
      with a virtual gateway until SIGINT or SIGTERM.
  usernet --listen-qemu unix:PATH [--listen-dgram unix:PATH] [--vxlan ...] [OPTIONS]
      The same for VMs (and hosts over VXLAN) without any tap.
  usernet run [OPTIONS] [--] CMD [ARGS...]
      Run CMD in a new network namespace whose tap is bridged to the gateway.
      Exits with CMD's status. See usernet run --help.
  usernet slirp4netns [OPTION]... PID|PATH TAPNAME
      Behave as slirp4netns 1.2.0 (also when invoked as slirp4netns).
      See usernet slirp4netns --help.
  usernet daemon [OPTIONS]
      One network for many namespaces, attached at run time through an API:
      usernet attach|detach|ls|publish|unpublish|port|stats. See usernet daemon --help.
  usernet check [--no-offload] [--disable-ipv6] [--log-level LEVEL]
      Prove that usernet works on this machine: what the kernel grants, then TCP,
      UDP, DNS, ICMP echo and IPv6 from a new namespace through the gateway.
      See usernet check --help.
  usernet docker-plugin [OPTIONS] | usernet docker [OPTIONS]
      Docker containers on a daemon's network: as Docker's network driver "usernet",
      or attached by label as they start. See usernet docker --help.

Options:
  -t, --tap NAME         a tap to attach to (repeatable)
${commonOptions}
Exit status: 0 on a clean stop, 1 on a runtime error, 2 on bad usage.
`;

export const runHelp = `usernet run: run a command in a new network namespace behind usernet

Usage:
  usernet run [OPTIONS] [--] CMD [ARGS...]

Creates a network namespace (and, when not root, a user namespace mapping your
uid to root, plus your /etc/subuid and /etc/subgid range through newuidmap and
newgidmap when you have one), a tap inside it with the guest address
N+100/prefix, a default route via the gateway N+2, lo up, and runs CMD there
with your stdio. CMD sees an /etc/resolv.conf naming usernet's DNS forwarder
(N+3, and P::3 with IPv6), bound over the host's file in a private mount
namespace (not with --disable-dns). usernet exits with CMD's exit status
(128+N when CMD was killed by signal N) and removes what it created.

Options:
  --tap-name NAME        name of the tap inside the namespace (default tap0)
  --mac MAC              MAC address of that tap (default: chosen by the kernel)
${commonOptions}`;

export const checkHelp = `usernet check: prove that usernet works on this machine

Usage:
  usernet check [--no-offload] [--disable-ipv6] [--log-level LEVEL]

First reports what the kernel grants, each by trying it: /dev/net/tun, a
network namespace with a tap configured by ioctls, the virtio-net header and
each offload (checksum, TSO, USO), user namespaces, ping sockets and
net.ipv4.ping_group_range, IPv6 on the host. Then runs the real path, as
usernet run does: a new namespace whose tap is bridged to usernet's gateway,
and inside it a probe (this same Node binary) doing TCP and UDP to echo
servers the check runs on 127.0.0.1 and ::1 (through N+2 and P::2), DNS to a
resolver the check runs on 127.0.0.1 (through N+3 and P::3), ICMP echo to the
gateway, and SLAAC. Nothing leaves the machine. Needs nothing but Node and
usernet (and nsenter, as usernet run does).

Prints one row per item: PASS, FAIL (with what to do), WARN (works, slower or
limited: with what to do) or SKIP (not tried, and why).

Options:
  --no-offload           run the guest without the virtio-net header
  --disable-ipv6         probe IPv4 only
  --log-level LEVEL      what usernet logs while the guest runs, printed under
                         the table (default warn)
  -h, --help             show this help

Exit status: 0 when no row failed, 1 otherwise, 2 on bad usage.
`;
