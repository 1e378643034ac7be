// Interface configuration: the classic SIOC* ioctls on an AF_INET socket,
// and for each setting whose ioctl is unsupported (gVisor has only the SIOCG*
// family), the same change as an rtnetlink request (rtnetlink.cc).
//
// How it works: each setting is tried with its ioctl. ENOTTY, EOPNOTSUPP,
// ENOSYS and EINVAL count as "unsupported here" and lead to rtnetlink; any
// other error (EPERM, EACCES, EBUSY...) is the answer. EINVAL from both ways
// means the value itself is refused (an MTU out of range) and is an error.
// When neither way can apply a setting, we look at whether the interface
// works as it is (SIOCGIF* and /proc/net/route, which gVisor has; rtnetlink's
// EEXIST leads there too): an MTU it
// keeps, a MAC it has, a link already up, the address or route already there
// go on and are reported as "unchanged" with both errnos; a missing address,
// route or link-up is an error. Everything is fixed-size stack data and plain
// syscalls, so the same code runs in the forked child of openTapInNamespace.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "usernet.h"

namespace usernet {

namespace {

void ifr_init(struct ifreq* ifr, const char* name) {
  memset(ifr, 0, sizeof *ifr);
  memcpy(ifr->ifr_name, name, IFNAMSIZ - 1);
}

void sin_init(struct sockaddr* sa, uint32_t addr_be) {
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = addr_be;
  memcpy(sa, &sin, sizeof sin);
}

uint32_t sin_addr_of(const struct sockaddr* sa) {
  struct sockaddr_in sin;
  memcpy(&sin, sa, sizeof sin);
  return sin.sin_addr.s_addr;
}

bool ioctl_unsupported(int e) { return e == ENOTTY || e == EOPNOTSUPP || e == ENOSYS || e == EINVAL; }
bool rtnl_unsupported(int e) {
  return e == EOPNOTSUPP || e == ENOSYS || e == ENOTTY || e == EINVAL || e == EPROTONOSUPPORT || e == EAFNOSUPPORT;
}

// 0 or errno.
int get_flags(int s, const char* name, short* flags) {
  struct ifreq ifr;
  ifr_init(&ifr, name);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) return errno;
  *flags = ifr.ifr_flags;
  return 0;
}

int get_index(int s, const char* name, int* index) {
  struct ifreq ifr;
  ifr_init(&ifr, name);
  if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) return errno;
  *index = ifr.ifr_ifindex;
  return 0;
}

// SIOCSIFFLAGS after reading the flags; *already is set when nothing needed changing.
int ioctl_set_up(int s, const char* name, bool up, bool* already) {
  struct ifreq ifr;
  ifr_init(&ifr, name);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) return errno;
  short want = up ? (ifr.ifr_flags | IFF_UP) : (ifr.ifr_flags & ~IFF_UP);
  *already = want == ifr.ifr_flags;
  if (*already) return 0;
  ifr.ifr_flags = want;
  return ioctl(s, SIOCSIFFLAGS, &ifr) < 0 ? errno : 0;
}

int ioctl_set_mac(int s, const IfPlan& p) {
  struct ifreq ifr;
  ifr_init(&ifr, p.name);
  ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  memcpy(ifr.ifr_hwaddr.sa_data, p.mac, 6);
  if (ioctl(s, SIOCSIFHWADDR, &ifr) == 0) return 0;
  if (errno != EBUSY) return errno;
  // Some drivers refuse a MAC change while up (taps do not): take it down
  // for the change and bring it back up.
  bool already = false;
  int e = ioctl_set_up(s, p.name, false, &already);
  if (e != 0) return e;
  int rc = ioctl(s, SIOCSIFHWADDR, &ifr);
  int mac_err = errno;
  e = ioctl_set_up(s, p.name, true, &already);
  if (e != 0) return e;
  return rc < 0 ? mac_err : 0;
}

int ioctl_add_default_route(int s, const IfPlan& p) {
  struct rtentry rt;
  memset(&rt, 0, sizeof rt);
  sin_init(&rt.rt_dst, 0);
  sin_init(&rt.rt_genmask, 0);
  sin_init(&rt.rt_gateway, p.gateway);
  rt.rt_flags = RTF_UP | RTF_GATEWAY;
  // The kernel copies the name in; it never writes through this pointer.
  rt.rt_dev = const_cast<char*>(p.name);
  return ioctl(s, SIOCADDRT, &rt) < 0 ? errno : 0;
}

// Whether /proc/net/route (this thread's namespace) has "default via gateway
// dev name". Its columns are hex of the address as stored (network order read
// as a host-order u32), e.g. 10.0.2.2 is 0202000A on x86.
bool has_default_route4(const char* name, uint32_t gateway_be) {
  char want[9];
  const char* hex = "0123456789ABCDEF";
  for (int i = 0; i < 8; i++) want[i] = hex[(gateway_be >> (28 - 4 * i)) & 0xf];
  want[8] = '\0';
  int fd = open("/proc/net/route", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[8192];
  size_t len = 0;
  ssize_t n;
  while (len < sizeof buf - 1 && ((n = read(fd, buf + len, sizeof buf - 1 - len)) > 0 || (n < 0 && errno == EINTR)))
    if (n > 0) len += static_cast<size_t>(n);
  close(fd);
  buf[len] = '\0';
  // Each line: Iface Destination Gateway Flags RefCnt Use Metric Mask ...
  for (char* line = buf; *line != '\0';) {
    char* end = strchr(line, '\n');
    if (end != nullptr) *end = '\0';
    const char* f[8];
    int k = 0;
    for (char* c = line; *c != '\0' && k < 8;) {
      while (*c == '\t' || *c == ' ') c++;
      if (*c == '\0') break;
      f[k++] = c;
      while (*c != '\0' && *c != '\t' && *c != ' ') c++;
      if (*c != '\0') *c++ = '\0';
    }
    if (k == 8 && strcmp(f[0], name) == 0 && strcmp(f[1], "00000000") == 0 && strcmp(f[2], want) == 0 &&
        strcmp(f[7], "00000000") == 0)
      return true;
    if (end == nullptr) break;
    line = end + 1;
  }
  return false;
}

struct Ctx {
  int s;
  const IfPlan& p;
  Rtnl nl;
  bool nl_tried = false;
  int nl_err = 0;
  int index = 0;  // of p.name, looked up on first need

  Ctx(int sock, const IfPlan& plan) : s(sock), p(plan) {}
  ~Ctx() { rtnl_close(&nl); }

  // The socket on first use; 0 or the errno that keeps it from opening.
  int nl_ready() {
    if (!nl_tried) {
      nl_tried = true;
      nl_err = rtnl_open(&nl);
    }
    return nl_err;
  }
  int ifindex(int* out) {
    if (index == 0) {
      int e = get_index(s, p.name, &index);
      if (e != 0) return e;
    }
    *out = index;
    return 0;
  }
};

// After the ioctl for one setting answered ioctl_err: done, or rtnetlink, or
// "works as it is", or an error in *st. nl_fn(index) makes the rtnetlink
// request; works() says whether the interface can do without the setting.
template <class NlFn, class Works>
int settle(Ctx* c, IfStep* step, int ioctl_err, const char* ioctl_step, const char* nl_step, NlFn nl_fn, Works works,
           SysStatus* st) {
  if (ioctl_err == 0) {
    step->way = kWayIoctl;
    return 0;
  }
  step->ioctl_errno = ioctl_err;
  if (!ioctl_unsupported(ioctl_err)) return st->Fail(ioctl_err, ioctl_step);
  int e = c->nl_ready();
  if (e == 0) e = nl_fn();
  if (e == 0) {
    step->way = kWayRtnetlink;
    return 0;
  }
  step->nl_errno = e;
  // EINVAL from both: the value is refused, not the way of setting it.
  if (ioctl_err == EINVAL && e == EINVAL) return st->Fail(ioctl_err, ioctl_step);
  // EEXIST: an address or route that is there already (the ioctls replace or refuse alike).
  if ((rtnl_unsupported(e) || e == EEXIST) && works()) {
    step->way = kWayUnchanged;
    return 0;
  }
  return st->Fail(e, nl_step);
}

int apply_up(Ctx* c, const char* name, bool up, IfStep* step, const char* get_step, const char* set_step,
             SysStatus* st) {
  short flags = 0;
  int e = get_flags(c->s, name, &flags);
  if (e != 0) return st->Fail(e, get_step);
  short want = up ? (flags | IFF_UP) : (flags & ~IFF_UP);
  if (want == flags) {
    step->way = kWayUnchanged;
    return 0;
  }
  struct ifreq ifr;
  ifr_init(&ifr, name);
  ifr.ifr_flags = want;
  e = ioctl(c->s, SIOCSIFFLAGS, &ifr) < 0 ? errno : 0;
  return settle(
      c, step, e, set_step, "rtnetlink(RTM_NEWLINK,flags)",
      [&]() {
        int index = 0;
        int ie = strcmp(name, c->p.name) == 0 ? c->ifindex(&index) : get_index(c->s, name, &index);
        return ie != 0 ? ie : rtnl_set_up(&c->nl, index, up);
      },
      [&]() {
        short flags = 0;
        return get_flags(c->s, name, &flags) == 0 && ((flags & IFF_UP) != 0) == up;
      },
      st);
}

int apply(Ctx* c, IfReport* r, SysStatus* st) {
  const IfPlan& p = c->p;
  int s = c->s;
  struct ifreq ifr;
  // Order matters: the MAC may need the link down, the netmask needs an
  // address, and the route needs the link up with an address on it.
  if (p.loopback_up &&
      apply_up(c, "lo", true, &r->loopback_up, "ioctl(SIOCGIFFLAGS,lo)", "ioctl(SIOCSIFFLAGS,lo)", st) < 0)
    return -1;
  if (p.has_mtu) {
    ifr_init(&ifr, p.name);
    ifr.ifr_mtu = p.mtu;
    int e = ioctl(s, SIOCSIFMTU, &ifr) < 0 ? errno : 0;
    if (settle(
            c, &r->mtu, e, "ioctl(SIOCSIFMTU)", "rtnetlink(RTM_NEWLINK,mtu)",
            [&]() {
              int index = 0;
              int ie = c->ifindex(&index);
              return ie != 0 ? ie : rtnl_set_mtu(&c->nl, index, p.mtu);
            },
            [&]() {
              struct ifreq g;
              ifr_init(&g, p.name);
              // Any MTU an IPv4 link may have will do: the runtime adopts it.
              return ioctl(s, SIOCGIFMTU, &g) == 0 && g.ifr_mtu >= 68;
            },
            st) < 0)
      return -1;
  }
  if (p.has_mac) {
    int e = ioctl_set_mac(s, p);
    if (settle(
            c, &r->mac, e, "ioctl(SIOCSIFHWADDR)", "rtnetlink(RTM_NEWLINK,address)",
            [&]() {
              int index = 0;
              int ie = c->ifindex(&index);
              return ie != 0 ? ie : rtnl_set_mac(&c->nl, index, p.mac);
            },
            // The bridge learns whatever MAC the interface has.
            [&]() {
              struct ifreq g;
              ifr_init(&g, p.name);
              return ioctl(s, SIOCGIFHWADDR, &g) == 0;
            },
            st) < 0)
      return -1;
  }
  if (p.has_addr) {
    ifr_init(&ifr, p.name);
    sin_init(&ifr.ifr_addr, p.addr);
    int e = ioctl(s, SIOCSIFADDR, &ifr) < 0 ? errno : 0;
    const char* step = "ioctl(SIOCSIFADDR)";
    if (e == 0 && p.has_mask) {
      ifr_init(&ifr, p.name);
      sin_init(&ifr.ifr_netmask, p.mask);
      e = ioctl(s, SIOCSIFNETMASK, &ifr) < 0 ? errno : 0;
      step = "ioctl(SIOCSIFNETMASK)";
    }
    int prefix = p.has_mask ? __builtin_popcount(p.mask) : 32;
    if (settle(
            c, &r->addr, e, step, "rtnetlink(RTM_NEWADDR)",
            [&]() {
              int index = 0;
              int ie = c->ifindex(&index);
              return ie != 0 ? ie : rtnl_add_addr(&c->nl, AF_INET, index, &p.addr, prefix);
            },
            [&]() {
              struct ifreq g;
              ifr_init(&g, p.name);
              if (ioctl(s, SIOCGIFADDR, &g) < 0 || sin_addr_of(&g.ifr_addr) != p.addr) return false;
              ifr_init(&g, p.name);
              return !p.has_mask || (ioctl(s, SIOCGIFNETMASK, &g) == 0 && sin_addr_of(&g.ifr_netmask) == p.mask);
            },
            st) < 0)
      return -1;
  } else if (p.has_mask) {
    ifr_init(&ifr, p.name);
    sin_init(&ifr.ifr_netmask, p.mask);
    if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0) return st->Fail(errno, "ioctl(SIOCSIFNETMASK)");
  }
  if (p.has_txqlen) {
    ifr_init(&ifr, p.name);
    ifr.ifr_qlen = p.txqlen;
    int e = ioctl(s, SIOCSIFTXQLEN, &ifr) < 0 ? errno : 0;
    if (settle(
            c, &r->txqlen, e, "ioctl(SIOCSIFTXQLEN)", "rtnetlink(RTM_NEWLINK,txqlen)",
            [&]() {
              int index = 0;
              int ie = c->ifindex(&index);
              return ie != 0 ? ie : rtnl_set_txqlen(&c->nl, index, p.txqlen);
            },
            // A queue length only shapes bursts; any works.
            [&]() { return true; }, st) < 0)
      return -1;
  }
  if (p.has_up && apply_up(c, p.name, p.up, &r->up, "ioctl(SIOCGIFFLAGS)", "ioctl(SIOCSIFFLAGS)", st) < 0) return -1;
  if (p.has_gateway) {
    int e = ioctl_add_default_route(s, p);
    if (settle(
            c, &r->gateway, e, "ioctl(SIOCADDRT)", "rtnetlink(RTM_NEWROUTE)",
            [&]() {
              int index = 0;
              int ie = c->ifindex(&index);
              return ie != 0 ? ie : rtnl_add_default_route(&c->nl, AF_INET, index, &p.gateway);
            },
            [&]() { return has_default_route4(p.name, p.gateway); }, st) < 0)
      return -1;
  }
  // IPv6: rtnetlink is the only way; nothing to fall back to.
  if (p.has_addr6) {
    int index = 0;
    int e = c->nl_ready();
    if (e == 0) e = c->ifindex(&index);
    if (e == 0) e = rtnl_add_addr(&c->nl, AF_INET6, index, p.addr6, p.prefix6);
    if (e != 0) {
      r->addr6.nl_errno = e;
      return st->Fail(e, "rtnetlink(RTM_NEWADDR,inet6)");
    }
    r->addr6.way = kWayRtnetlink;
  }
  if (p.has_gateway6) {
    int index = 0;
    int e = c->nl_ready();
    if (e == 0) e = c->ifindex(&index);
    if (e == 0) e = rtnl_add_default_route(&c->nl, AF_INET6, index, p.gateway6);
    if (e != 0) {
      r->gateway6.nl_errno = e;
      return st->Fail(e, "rtnetlink(RTM_NEWROUTE,inet6)");
    }
    r->gateway6.way = kWayRtnetlink;
  }
  return 0;
}

// What the interface has now, for the report (best effort: a failed read leaves have_state false).
void read_state(int s, const char* name, IfReport* r) {
  struct ifreq ifr;
  ifr_init(&ifr, name);
  if (ioctl(s, SIOCGIFMTU, &ifr) < 0) return;
  r->mtu_now = ifr.ifr_mtu;
  ifr_init(&ifr, name);
  if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) return;
  memcpy(r->mac_now, ifr.ifr_hwaddr.sa_data, 6);
  short flags = 0;
  if (get_flags(s, name, &flags) != 0) return;
  r->up_now = (flags & IFF_UP) != 0;
  r->have_state = true;
}

}  // namespace

int iface_apply(const IfPlan& plan, IfReport* report, SysStatus* st) {
  *report = IfReport();
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return st->Fail(errno, "socket");
  int rc;
  {
    Ctx c(s, plan);
    rc = apply(&c, report, st);
  }
  read_state(s, plan.name, report);
  close(s);
  return rc;
}

namespace {

bool read_ipv4(Napi::Env env, Napi::Value v, uint32_t* out, const char* what) {
  char text[INET_ADDRSTRLEN];
  if (!ReadFixedString(env, v, text, sizeof text, what)) return false;
  struct in_addr a;
  if (inet_pton(AF_INET, text, &a) != 1) {
    Napi::TypeError::New(env, std::string(what) + " is not a dotted quad").ThrowAsJavaScriptException();
    return false;
  }
  *out = a.s_addr;
  return true;
}

bool read_ipv6(Napi::Env env, Napi::Value v, uint8_t* out, const char* what) {
  char text[INET6_ADDRSTRLEN];
  if (!ReadFixedString(env, v, text, sizeof text, what)) return false;
  if (inet_pton(AF_INET6, text, out) != 1) {
    Napi::TypeError::New(env, std::string(what) + " is not an IPv6 address").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

bool read_int(Napi::Env env, Napi::Value v, int lo, int hi, int* out, const char* what) {
  if (!v.IsNumber()) {
    Napi::TypeError::New(env, std::string(what) + " must be a number").ThrowAsJavaScriptException();
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || d != static_cast<int>(d)) {
    Napi::TypeError::New(env, std::string(what) + " is out of range").ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<int>(d);
  return true;
}

}  // namespace

// The TypeScript layer validates first with friendly errors; these checks only
// keep bad calls from reaching the kernel with garbage.
bool ReadIfPlan(Napi::Env env, Napi::Value v, IfPlan* p) {
  if (!v.IsObject()) {
    Napi::TypeError::New(env, "interface config must be an object").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Object o = v.As<Napi::Object>();
  if (!ReadFixedString(env, o.Get("name"), p->name, IFNAMSIZ, "interface name")) return false;
  Napi::Value x = o.Get("up");
  if (x.IsBoolean()) {
    p->has_up = true;
    p->up = x.As<Napi::Boolean>().Value();
  }
  p->loopback_up = o.Get("loopbackUp").ToBoolean().Value();
  x = o.Get("mtu");
  if (!x.IsUndefined()) {
    if (!read_int(env, x, 68, 65535, &p->mtu, "mtu")) return false;
    p->has_mtu = true;
  }
  x = o.Get("mac");
  if (!x.IsUndefined()) {
    if (!x.IsTypedArray() || x.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        x.As<Napi::Uint8Array>().ElementLength() != 6) {
      Napi::TypeError::New(env, "mac must be a 6-byte Uint8Array").ThrowAsJavaScriptException();
      return false;
    }
    memcpy(p->mac, x.As<Napi::Uint8Array>().Data(), 6);
    p->has_mac = true;
  }
  x = o.Get("ipv4");
  if (!x.IsUndefined()) {
    if (!read_ipv4(env, x, &p->addr, "ipv4")) return false;
    p->has_addr = true;
  }
  x = o.Get("prefixLength");
  if (!x.IsUndefined()) {
    int prefix = 0;
    if (!read_int(env, x, 0, 32, &prefix, "prefixLength")) return false;
    p->mask = prefix == 0 ? 0 : htonl(~0u << (32 - prefix));
    p->has_mask = true;
  }
  x = o.Get("defaultGateway");
  if (!x.IsUndefined()) {
    if (!read_ipv4(env, x, &p->gateway, "defaultGateway")) return false;
    p->has_gateway = true;
  }
  x = o.Get("txQueueLen");
  if (!x.IsUndefined()) {
    if (!read_int(env, x, 0, 0x7fffffff, &p->txqlen, "txQueueLen")) return false;
    p->has_txqlen = true;
  }
  x = o.Get("ipv6");
  if (!x.IsUndefined()) {
    if (!read_ipv6(env, x, p->addr6, "ipv6")) return false;
    p->prefix6 = 64;
    Napi::Value len = o.Get("prefixLength6");
    if (!len.IsUndefined() && !read_int(env, len, 1, 128, &p->prefix6, "prefixLength6")) return false;
    p->has_addr6 = true;
  }
  x = o.Get("defaultGateway6");
  if (!x.IsUndefined()) {
    if (!read_ipv6(env, x, p->gateway6, "defaultGateway6")) return false;
    p->has_gateway6 = true;
  }
  return !env.IsExceptionPending();
}

namespace {

const char* way_name(uint8_t way) {
  switch (way) {
    case kWayIoctl:
      return "ioctl";
    case kWayRtnetlink:
      return "rtnetlink";
    default:
      return "unchanged";
  }
}

// A setting that was asked for; `asked` false leaves it out of the report.
void set_step(Napi::Env env, Napi::Object steps, const char* key, bool asked, const IfStep& st) {
  if (!asked) return;
  Napi::Object o = Napi::Object::New(env);
  // A step the failure stopped before has no way yet.
  o.Set("way", st.way == kWayNone ? env.Null() : Napi::String::New(env, way_name(st.way)));
  o.Set("ioctlErrno", Napi::Number::New(env, st.ioctl_errno));
  o.Set("rtnetlinkErrno", Napi::Number::New(env, st.nl_errno));
  steps.Set(key, o);
}

}  // namespace

// Raw numbers (positive errnos); src/native/addon.ts names them.
Napi::Object IfReportToJs(Napi::Env env, const IfPlan& p, const IfReport& r) {
  Napi::Object steps = Napi::Object::New(env);
  set_step(env, steps, "loopbackUp", p.loopback_up, r.loopback_up);
  set_step(env, steps, "mtu", p.has_mtu, r.mtu);
  set_step(env, steps, "mac", p.has_mac, r.mac);
  set_step(env, steps, "ipv4", p.has_addr, r.addr);
  set_step(env, steps, "txQueueLen", p.has_txqlen, r.txqlen);
  set_step(env, steps, "up", p.has_up, r.up);
  set_step(env, steps, "defaultGateway", p.has_gateway, r.gateway);
  set_step(env, steps, "ipv6", p.has_addr6, r.addr6);
  set_step(env, steps, "defaultGateway6", p.has_gateway6, r.gateway6);
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", Napi::String::New(env, p.name));
  o.Set("steps", steps);
  if (r.have_state) {
    o.Set("mtu", Napi::Number::New(env, r.mtu_now));
    Napi::Uint8Array mac = Napi::Uint8Array::New(env, 6);
    memcpy(mac.Data(), r.mac_now, 6);
    o.Set("mac", mac);
    o.Set("up", Napi::Boolean::New(env, r.up_now));
  } else {
    o.Set("mtu", env.Null());
    o.Set("mac", env.Null());
    o.Set("up", env.Null());
  }
  return o;
}

static Napi::Value ConfigureInterface(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IfPlan plan;
  if (!ReadIfPlan(env, info[0], &plan)) return env.Undefined();
  SysStatus st;
  IfReport report;
  if (iface_apply(plan, &report, &st) < 0) {
    Napi::Error e = ErrnoError(env, st.err, st.step);
    // What was done before the failure, and the errnos of both ways.
    e.Value().Set("report", IfReportToJs(env, plan, report));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return IfReportToJs(env, plan, report);
}

void InitIfconfig(Napi::Env env, Napi::Object exports) {
  exports.Set("configureInterface", Napi::Function::New(env, ConfigureInterface, "configureInterface"));
}

}  // namespace usernet
