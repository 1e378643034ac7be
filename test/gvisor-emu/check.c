/*
 * Checks the gVisor emulation library from the inside: run under
 * LD_PRELOAD in a fresh network namespace (unshare -n), it prints one line
 * "name=ERRNO" (or "name=0") per call, which test/gvisor-emu/gvisor-emu.test.ts
 * compares with what gVisor answers and with what must pass through.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

static void report(const char *name, int rc) { printf("%s=%d\n", name, rc < 0 ? errno : 0); }

int main(void) {
  struct ifreq ifr;
  int tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "emu0");
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  report("tunsetiff_vnet", ioctl(tun, TUNSETIFF, &ifr));
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  report("tunsetiff_plain", ioctl(tun, TUNSETIFF, &ifr));
  int hdr = 10;
  report("tunsetvnethdrsz", ioctl(tun, TUNSETVNETHDRSZ, &hdr));
  report("tunsetoffload", ioctl(tun, TUNSETOFFLOAD, (unsigned long)TUN_F_CSUM));

  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "emu0");
  report("siocgifflags", ioctl(s, SIOCGIFFLAGS, &ifr));
  ifr.ifr_flags |= IFF_UP;
  report("siocsifflags", ioctl(s, SIOCSIFFLAGS, &ifr));
  report("siocgifmtu", ioctl(s, SIOCGIFMTU, &ifr));
  ifr.ifr_mtu = 1400;
  report("siocsifmtu", ioctl(s, SIOCSIFMTU, &ifr));
  report("siocgifhwaddr", ioctl(s, SIOCGIFHWADDR, &ifr));
  report("siocsifhwaddr", ioctl(s, SIOCSIFHWADDR, &ifr));
  report("siocgifindex", ioctl(s, SIOCGIFINDEX, &ifr));
  int nonblock = 1;
  report("fionbio", ioctl(s, FIONBIO, &nonblock));

  struct sockaddr_nl nl;
  int n1 = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  memset(&nl, 0, sizeof nl);
  nl.nl_family = AF_NETLINK;
  nl.nl_groups = 1; /* RTMGRP_LINK */
  report("bind_netlink_groups", bind(n1, (struct sockaddr *)&nl, sizeof nl));
  nl.nl_groups = 0;
  report("bind_netlink_nogroups", bind(n1, (struct sockaddr *)&nl, sizeof nl));
  int group = 1;
  report("netlink_add_membership", setsockopt(n1, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group));
  int size = 65536;
  report("so_rcvbuf", setsockopt(n1, SOL_SOCKET, SO_RCVBUF, &size, sizeof size));
  close(n1);
  close(s);
  close(tun);
  return 0;
}
