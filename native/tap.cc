// Opening a tap: /dev/net/tun, TUNSETIFF, and the virtio-net header offloads.
// tap_open is shared by openTap (this process's namespace) and by the forked
// child of openTapInNamespace, so it is async-signal-safe: plain syscalls,
// fixed-size stack data, no allocation.
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "usernet.h"

// UDP segmentation offload bits arrived in Linux 6.2; older userspace headers
// lack them, but the values are ABI.
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

namespace usernet {

namespace {

// Whether an interface of that name exists already, so we can tell "attached
// to an existing tap" from "created a new one". Checked before TUNSETIFF
// because afterwards it exists either way.
bool iface_exists(const char* name) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  bool found = ioctl(s, SIOCGIFINDEX, &ifr) == 0;
  close(s);
  return found;
}

// TUNSETOFFLOAD is all-or-nothing: an unknown or unsupported bit makes the
// whole request fail with EINVAL. Older kernels lack USO (added in 6.2), and
// TSO needs CSUM, so fall back step by step to what the kernel takes.
int set_offloads(int fd, unsigned want, unsigned* granted, SysStatus* st) {
  const unsigned ladder[] = {
      want,
      want & ~static_cast<unsigned>(TUN_F_USO4 | TUN_F_USO6),
      want & static_cast<unsigned>(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6),
      want & static_cast<unsigned>(TUN_F_CSUM),
      0,
  };
  int last = 0;
  for (size_t i = 0; i < sizeof ladder / sizeof ladder[0]; i++) {
    unsigned bits = ladder[i];
    if (i > 0 && bits == ladder[i - 1]) continue;
    if (ioctl(fd, TUNSETOFFLOAD, static_cast<unsigned long>(bits)) == 0) {
      *granted = bits;
      return 0;
    }
    last = errno;
    if (last != EINVAL) break;
  }
  return st->Fail(last, "ioctl(TUNSETOFFLOAD)");
}

}  // namespace

int tap_open(const TapRequest& req, TapResult* out, SysStatus* st) {
  out->fd = -1;
  out->attached = iface_exists(req.name);
  out->offloads = 0;
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return st->Fail(errno, "open(/dev/net/tun)");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, req.name, IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (req.vnet_hdr ? IFF_VNET_HDR : 0);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    return st->Fail(e, "ioctl(TUNSETIFF)");
  }
  if (req.vnet_hdr) {
    // 10 bytes: struct virtio_net_hdr without num_buffers; the frame views
    // in stack/wire/vnet.ts assume exactly this size.
    int hdr = 10;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
      int e = errno;
      close(fd);
      return st->Fail(e, "ioctl(TUNSETVNETHDRSZ)");
    }
    if (set_offloads(fd, req.offloads, &out->offloads, st) < 0) {
      close(fd);
      return -1;
    }
  }
  out->fd = fd;
  return 0;
}

bool ReadTapRequest(Napi::Env env, Napi::Value v, TapRequest* out) {
  if (!v.IsObject()) {
    Napi::TypeError::New(env, "tap options must be an object").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Object o = v.As<Napi::Object>();
  if (!ReadFixedString(env, o.Get("name"), out->name, IFNAMSIZ, "tap name")) return false;
  out->vnet_hdr = o.Get("vnetHdr").ToBoolean().Value();
  Napi::Value off = o.Get("offloads");
  out->offloads = off.IsNumber() ? off.As<Napi::Number>().Uint32Value() : 0;
  return !env.IsExceptionPending();
}

static Napi::Value OpenTap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TapRequest req;
  if (!ReadTapRequest(env, info[0], &req)) return env.Undefined();
  TapResult res;
  SysStatus st;
  if (tap_open(req, &res, &st) < 0) {
    ErrnoError(env, st.err, st.step).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("fd", Napi::Number::New(env, res.fd));
  r.Set("name", Napi::String::New(env, req.name));
  r.Set("attached", Napi::Boolean::New(env, res.attached));
  r.Set("vnetHdr", Napi::Boolean::New(env, req.vnet_hdr));
  r.Set("offloads", Napi::Number::New(env, res.offloads));
  return r;
}

static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) {
    Napi::TypeError::New(env, "fd must be a number").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  // No retry on EINTR: on Linux the fd is released even then, and a retry
  // could close an fd another thread just got.
  if (close(fd) < 0 && errno != EINTR) {
    ErrnoError(env, errno, "close").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// Two connected, non-blocking SOCK_SEQPACKET sockets: each read and write
// carries one whole record, as a tap carries one frame. The start-up warm-up
// (src/warm-up.ts) puts a FrameIo on each end, standing in for a tap.
static Napi::Value FramePair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
    ErrnoError(env, errno, "socketpair").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, sv[0]));
  out.Set(1u, Napi::Number::New(env, sv[1]));
  return out;
}

void InitTap(Napi::Env env, Napi::Object exports) {
  exports.Set("framePair", Napi::Function::New(env, FramePair, "framePair"));
  exports.Set("openTap", Napi::Function::New(env, OpenTap, "openTap"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
}

}  // namespace usernet
