// Interface configuration with the classic SIOC* ioctls on an AF_INET socket.
// Not netlink: these ioctls need no message building or parsing, so the same
// code runs unchanged in the forked child of openTapInNamespace, where only
// async-signal-safe calls are allowed (no allocation, no exceptions).
#include <arpa/inet.h>
#include <errno.h>
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

int set_up(int s, const char* name, bool up, SysStatus* st, const char* get_step, const char* set_step) {
  struct ifreq ifr;
  ifr_init(&ifr, name);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) return st->Fail(errno, get_step);
  short want = up ? (ifr.ifr_flags | IFF_UP) : (ifr.ifr_flags & ~IFF_UP);
  if (want == ifr.ifr_flags) return 0;
  ifr.ifr_flags = want;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) return st->Fail(errno, set_step);
  return 0;
}

int set_mac(int s, const IfPlan& p, SysStatus* st) {
  struct ifreq ifr;
  ifr_init(&ifr, p.name);
  ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  memcpy(ifr.ifr_hwaddr.sa_data, p.mac, 6);
  if (ioctl(s, SIOCSIFHWADDR, &ifr) == 0) return 0;
  if (errno != EBUSY) return st->Fail(errno, "ioctl(SIOCSIFHWADDR)");
  // Some drivers refuse a MAC change while up (taps do not): take it down
  // for the change and bring it back up.
  if (set_up(s, p.name, false, st, "ioctl(SIOCGIFFLAGS)", "ioctl(SIOCSIFFLAGS)") < 0) return -1;
  int rc = ioctl(s, SIOCSIFHWADDR, &ifr);
  int e = errno;
  if (set_up(s, p.name, true, st, "ioctl(SIOCGIFFLAGS)", "ioctl(SIOCSIFFLAGS)") < 0) return -1;
  if (rc < 0) return st->Fail(e, "ioctl(SIOCSIFHWADDR)");
  return 0;
}

int add_default_route(int s, const IfPlan& p, SysStatus* st) {
  struct rtentry rt;
  memset(&rt, 0, sizeof rt);
  sin_init(&rt.rt_dst, 0);
  sin_init(&rt.rt_genmask, 0);
  sin_init(&rt.rt_gateway, p.gateway);
  rt.rt_flags = RTF_UP | RTF_GATEWAY;
  // The kernel copies the name in; it never writes through this pointer.
  rt.rt_dev = const_cast<char*>(p.name);
  if (ioctl(s, SIOCADDRT, &rt) < 0) return st->Fail(errno, "ioctl(SIOCADDRT)");
  return 0;
}

int apply(int s, const IfPlan& p, SysStatus* st) {
  struct ifreq ifr;
  // Order matters: the MAC may need the link down, the netmask needs an
  // address, and the route needs the link up with an address on it.
  if (p.loopback_up && set_up(s, "lo", true, st, "ioctl(SIOCGIFFLAGS,lo)", "ioctl(SIOCSIFFLAGS,lo)") < 0) return -1;
  if (p.has_mtu) {
    ifr_init(&ifr, p.name);
    ifr.ifr_mtu = p.mtu;
    if (ioctl(s, SIOCSIFMTU, &ifr) < 0) return st->Fail(errno, "ioctl(SIOCSIFMTU)");
  }
  if (p.has_mac && set_mac(s, p, st) < 0) return -1;
  if (p.has_addr) {
    ifr_init(&ifr, p.name);
    sin_init(&ifr.ifr_addr, p.addr);
    if (ioctl(s, SIOCSIFADDR, &ifr) < 0) return st->Fail(errno, "ioctl(SIOCSIFADDR)");
  }
  if (p.has_mask) {
    ifr_init(&ifr, p.name);
    sin_init(&ifr.ifr_netmask, p.mask);
    if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0) return st->Fail(errno, "ioctl(SIOCSIFNETMASK)");
  }
  if (p.has_txqlen) {
    ifr_init(&ifr, p.name);
    ifr.ifr_qlen = p.txqlen;
    if (ioctl(s, SIOCSIFTXQLEN, &ifr) < 0) return st->Fail(errno, "ioctl(SIOCSIFTXQLEN)");
  }
  if (p.has_up && set_up(s, p.name, p.up, st, "ioctl(SIOCGIFFLAGS)", "ioctl(SIOCSIFFLAGS)") < 0) return -1;
  if (p.has_gateway && add_default_route(s, p, st) < 0) return -1;
  return 0;
}

}  // namespace

int iface_apply(const IfPlan& plan, SysStatus* st) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return st->Fail(errno, "socket");
  int rc = apply(s, plan, st);
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
  return !env.IsExceptionPending();
}

static Napi::Value ConfigureInterface(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IfPlan plan;
  if (!ReadIfPlan(env, info[0], &plan)) return env.Undefined();
  SysStatus st;
  if (iface_apply(plan, &st) < 0) ErrnoError(env, st.err, st.step).ThrowAsJavaScriptException();
  return env.Undefined();
}

void InitIfconfig(Napi::Env env, Napi::Object exports) {
  exports.Set("configureInterface", Napi::Function::New(env, ConfigureInterface, "configureInterface"));
}

}  // namespace usernet
