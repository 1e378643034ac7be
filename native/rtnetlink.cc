// Interface configuration by rtnetlink request/response, for where the SIOCS*
// ioctls are missing (gVisor implements only the SIOCG* family).
//
// How it works: one NETLINK_ROUTE socket bound with nl_groups = 0 (never a
// multicast subscription: gVisor refuses those with EPERM, and we only want
// answers to our own requests). Each request goes out with NLM_F_ACK and its
// own sequence number; we read until the NLMSG_ERROR carrying that number
// (error 0 is the ack). Messages are built in a fixed buffer on the stack and
// nothing allocates, because this runs in the forked child of
// openTapInNamespace too (async-signal-safe calls only).
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "usernet.h"

namespace usernet {

namespace {

// The largest request: nlmsghdr + ifinfomsg + three small attributes.
constexpr size_t kReqBytes = 256;
// Acks are an nlmsghdr + nlmsgerr quoting our request: well under this.
constexpr size_t kAckBytes = 1024;
// The kernel answers synchronously; a peer that never answers (a broken
// sandbox) must not hang the helper forever.
constexpr int kAckTimeoutSec = 5;

struct Req {
  alignas(NLMSG_ALIGNTO) char buf[kReqBytes];
  struct nlmsghdr* hdr() { return reinterpret_cast<struct nlmsghdr*>(buf); }
};

void req_init(Req* r, uint16_t type, uint16_t flags, const void* body, size_t body_len) {
  memset(r->buf, 0, sizeof r->buf);
  struct nlmsghdr* h = r->hdr();
  h->nlmsg_len = NLMSG_LENGTH(body_len);
  h->nlmsg_type = type;
  h->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
  memcpy(NLMSG_DATA(h), body, body_len);
}

// False when the attribute would not fit (a programming error: the buffer is
// sized for the largest request we build).
bool add_attr(Req* r, uint16_t type, const void* data, size_t len) {
  struct nlmsghdr* h = r->hdr();
  size_t off = NLMSG_ALIGN(h->nlmsg_len);
  size_t total = RTA_LENGTH(len);
  if (off + RTA_ALIGN(total) > sizeof r->buf) return false;
  struct rtattr* a = reinterpret_cast<struct rtattr*>(r->buf + off);
  a->rta_type = type;
  a->rta_len = static_cast<uint16_t>(total);
  memcpy(RTA_DATA(a), data, len);
  h->nlmsg_len = static_cast<uint32_t>(off + RTA_ALIGN(total));
  return true;
}

// Sends the request and waits for its ack; 0 or a positive errno.
int transact(Rtnl* nl, Req* r) {
  struct nlmsghdr* h = r->hdr();
  h->nlmsg_seq = ++nl->seq;
  struct sockaddr_nl kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  ssize_t n;
  do n = sendto(nl->fd, r->buf, h->nlmsg_len, 0, reinterpret_cast<struct sockaddr*>(&kernel), sizeof kernel);
  while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  if (static_cast<size_t>(n) != h->nlmsg_len) return EIO;
  alignas(NLMSG_ALIGNTO) char ack[kAckBytes];
  for (;;) {
    do n = recv(nl->fd, ack, sizeof ack, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? ETIMEDOUT : errno;
    if (n == 0) return EPROTO;
    int len = static_cast<int>(n);
    for (struct nlmsghdr* m = reinterpret_cast<struct nlmsghdr*>(ack); NLMSG_OK(m, len); m = NLMSG_NEXT(m, len)) {
      if (m->nlmsg_seq != nl->seq) continue;  // a late answer to an earlier request
      if (m->nlmsg_type != NLMSG_ERROR) continue;
      if (m->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) return EPROTO;
      const struct nlmsgerr* e = reinterpret_cast<const struct nlmsgerr*>(NLMSG_DATA(m));
      return e->error < 0 ? -e->error : 0;
    }
  }
}

int new_link(Rtnl* nl, int ifindex, unsigned flags, unsigned change, const int* mtu, const uint8_t* mac,
             const int* txqlen = nullptr) {
  struct ifinfomsg ifi;
  memset(&ifi, 0, sizeof ifi);
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  ifi.ifi_flags = flags;
  ifi.ifi_change = change;
  Req r;
  req_init(&r, RTM_NEWLINK, 0, &ifi, sizeof ifi);
  if (mtu != nullptr) {
    uint32_t v = static_cast<uint32_t>(*mtu);
    if (!add_attr(&r, IFLA_MTU, &v, sizeof v)) return EMSGSIZE;
  }
  if (mac != nullptr && !add_attr(&r, IFLA_ADDRESS, mac, 6)) return EMSGSIZE;
  if (txqlen != nullptr) {
    uint32_t v = static_cast<uint32_t>(*txqlen);
    if (!add_attr(&r, IFLA_TXQLEN, &v, sizeof v)) return EMSGSIZE;
  }
  return transact(nl, &r);
}

}  // namespace

int rtnl_open(Rtnl* nl) {
  nl->fd = -1;
  nl->seq = 0;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return errno;
  struct sockaddr_nl local;
  memset(&local, 0, sizeof local);
  local.nl_family = AF_NETLINK;
  local.nl_groups = 0;  // requests and their answers only, no multicast
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&local), sizeof local) < 0) {
    int e = errno;
    close(fd);
    return e;
  }
  struct timeval tv = {kAckTimeoutSec, 0};
  // Best effort: without it a silent peer would block, which is all we lose.
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  nl->fd = fd;
  return 0;
}

void rtnl_close(Rtnl* nl) {
  if (nl->fd >= 0) close(nl->fd);
  nl->fd = -1;
}

int rtnl_set_up(Rtnl* nl, int ifindex, bool up) { return new_link(nl, ifindex, up ? IFF_UP : 0, IFF_UP, nullptr, nullptr); }

int rtnl_set_mtu(Rtnl* nl, int ifindex, int mtu) { return new_link(nl, ifindex, 0, 0, &mtu, nullptr); }

int rtnl_set_mac(Rtnl* nl, int ifindex, const uint8_t mac[6]) { return new_link(nl, ifindex, 0, 0, nullptr, mac); }

int rtnl_set_txqlen(Rtnl* nl, int ifindex, int txqlen) {
  return new_link(nl, ifindex, 0, 0, nullptr, nullptr, &txqlen);
}

int rtnl_add_addr(Rtnl* nl, int family, int ifindex, const void* addr, int prefix) {
  struct ifaddrmsg ifa;
  memset(&ifa, 0, sizeof ifa);
  ifa.ifa_family = static_cast<uint8_t>(family);
  ifa.ifa_prefixlen = static_cast<uint8_t>(prefix);
  ifa.ifa_scope = RT_SCOPE_UNIVERSE;
  ifa.ifa_index = static_cast<uint32_t>(ifindex);
  // The address is ours to give (the gateway behind the tap is usernet's):
  // duplicate address detection would only keep it tentative for a second.
  if (family == AF_INET6) ifa.ifa_flags = IFA_F_NODAD;
  Req r;
  req_init(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof ifa);
  size_t len = family == AF_INET ? 4 : 16;
  if (!add_attr(&r, IFA_LOCAL, addr, len) || !add_attr(&r, IFA_ADDRESS, addr, len)) return EMSGSIZE;
  if (family == AF_INET && prefix < 31) {
    // As SIOCSIFNETMASK does: the subnet's broadcast address.
    uint32_t a;
    memcpy(&a, addr, 4);
    uint32_t host_mask = prefix == 0 ? ~0u : (~0u >> prefix);
    uint32_t brd = a | htonl(host_mask);
    if (!add_attr(&r, IFA_BROADCAST, &brd, 4)) return EMSGSIZE;
  }
  return transact(nl, &r);
}

int rtnl_add_default_route(Rtnl* nl, int family, int ifindex, const void* gateway) {
  struct rtmsg rtm;
  memset(&rtm, 0, sizeof rtm);
  rtm.rtm_family = static_cast<uint8_t>(family);
  rtm.rtm_dst_len = 0;
  rtm.rtm_table = RT_TABLE_MAIN;
  rtm.rtm_protocol = RTPROT_BOOT;
  rtm.rtm_scope = RT_SCOPE_UNIVERSE;
  rtm.rtm_type = RTN_UNICAST;
  Req r;
  req_init(&r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rtm, sizeof rtm);
  uint32_t oif = static_cast<uint32_t>(ifindex);
  if (!add_attr(&r, RTA_GATEWAY, gateway, family == AF_INET ? 4 : 16) || !add_attr(&r, RTA_OIF, &oif, sizeof oif))
    return EMSGSIZE;
  return transact(nl, &r);
}

}  // namespace usernet
