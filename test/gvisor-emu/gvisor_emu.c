/*
 * gVisor's answers on a Linux host, for tests: an LD_PRELOAD library that
 * interposes ioctl, bind and setsockopt and refuses what gVisor's sentry
 * refuses (ENGINES.md, gVisor section):
 *   - TUNSETIFF with IFF_VNET_HDR: EINVAL (pkg/sentry/devices/tundev);
 *   - TUNSETVNETHDRSZ, TUNSETOFFLOAD: ENOTTY;
 *   - the "set" interface ioctls (SIOCSIFFLAGS, SIOCSIFMTU, SIOCSIFADDR,
 *     SIOCSIFNETMASK, SIOCSIFBRDADDR, SIOCSIFHWADDR, SIOCSIFTXQLEN) and
 *     SIOCADDRT/SIOCDELRT: ENOTTY (only the SIOCGIF* family exists there);
 *   - bind() of an AF_NETLINK socket with nl_groups != 0, and
 *     setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP): EPERM (no multicast).
 * Everything else goes to libc. rtnetlink request/response passes through, as
 * a gVisor that takes link and route requests would answer it; with
 * GVISOR_EMU_NETLINK=old in the environment, as older gVisor (RTM_NEWADDR,
 * RTM_DELADDR and GET requests only), every other rtnetlink request is
 * refused with EOPNOTSUPP when it is sent (gVisor answers with an NLMSG_ERROR
 * of that errno; the caller sees the same errno).
 *
 * The real functions are looked up once in a constructor, so the
 * interposers themselves only make the call: they stay async-signal-safe and
 * work in a child forked from a multithreaded process (the addon's
 * openTapInNamespace helper).
 *
 * Build: cc -shared -fPIC -o gvisor_emu.so gvisor_emu.c -ldl
 * (test/gvisor-emu/build.ts does this for the tests).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <linux/rtnetlink.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_bind)(int, const struct sockaddr *, socklen_t);
static int (*real_setsockopt)(int, int, int, const void *, socklen_t);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static int old_netlink;

static int refuse(int err) {
  errno = err;
  return -1;
}

__attribute__((constructor)) static void gvisor_emu_init(void) {
  real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
  real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
  real_setsockopt = (int (*)(int, int, int, const void *, socklen_t))dlsym(RTLD_NEXT, "setsockopt");
  real_sendto = (ssize_t(*)(int, const void *, size_t, int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "sendto");
  real_sendmsg = (ssize_t(*)(int, const struct msghdr *, int))dlsym(RTLD_NEXT, "sendmsg");
  const char *mode = getenv("GVISOR_EMU_NETLINK");
  old_netlink = mode != NULL && strcmp(mode, "old") == 0;
}

/* Whether an old gVisor refuses this message: on a NETLINK_ROUTE socket, a
 * request other than RTM_NEWADDR, RTM_DELADDR and the GET family. */
static int old_refuses(int fd, const void *buf, size_t len) {
  if (!old_netlink || len < sizeof(struct nlmsghdr)) return 0;
  int proto = -1;
  socklen_t plen = sizeof proto;
  int domain = -1;
  socklen_t dlen = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) < 0 || domain != AF_NETLINK) return 0;
  if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &plen) < 0 || proto != NETLINK_ROUTE) return 0;
  const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
  unsigned type = h->nlmsg_type;
  if (type == RTM_NEWADDR || type == RTM_DELADDR) return 0;
  if (type >= RTM_BASE && type <= RTM_MAX && (type & 3) == 2) return 0; /* RTM_GET*: type % 4 == 2 */
  return type >= RTM_BASE;
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen) {
  if (old_refuses(fd, buf, len)) return refuse(EOPNOTSUPP);
  if (real_sendto == NULL) return refuse(ENOSYS);
  return real_sendto(fd, buf, len, flags, to, tolen);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  if (msg != NULL && msg->msg_iovlen > 0 && old_refuses(fd, msg->msg_iov[0].iov_base, msg->msg_iov[0].iov_len))
    return refuse(EOPNOTSUPP);
  if (real_sendmsg == NULL) return refuse(ENOSYS);
  return real_sendmsg(fd, msg, flags);
}


int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  switch (request) {
    case TUNSETIFF: {
      const struct ifreq *ifr = (const struct ifreq *)arg;
      if (ifr != NULL && (ifr->ifr_flags & IFF_VNET_HDR) != 0) return refuse(EINVAL);
      break;
    }
    case TUNSETVNETHDRSZ:
    case TUNSETOFFLOAD:
    case SIOCSIFFLAGS:
    case SIOCSIFMTU:
    case SIOCSIFADDR:
    case SIOCSIFNETMASK:
    case SIOCSIFBRDADDR:
    case SIOCSIFHWADDR:
    case SIOCSIFTXQLEN:
    case SIOCADDRT:
    case SIOCDELRT:
      return refuse(ENOTTY);
    default:
      break;
  }
  if (real_ioctl == NULL) return refuse(ENOSYS);
  return real_ioctl(fd, request, arg);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  if (addr != NULL && len >= sizeof(struct sockaddr_nl) && addr->sa_family == AF_NETLINK &&
      ((const struct sockaddr_nl *)addr)->nl_groups != 0)
    return refuse(EPERM);
  if (real_bind == NULL) return refuse(ENOSYS);
  return real_bind(fd, addr, len);
}

int setsockopt(int fd, int level, int name, const void *value, socklen_t len) {
  if (level == SOL_NETLINK && name == NETLINK_ADD_MEMBERSHIP) return refuse(EPERM);
  if (real_setsockopt == NULL) return refuse(ENOSYS);
  return real_setsockopt(fd, level, name, value, len);
}
