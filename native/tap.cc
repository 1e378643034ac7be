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

// Errnos with which a tap says "no virtio-net header here" rather than "no":
// gVisor answers TUNSETIFF|IFF_VNET_HDR with EINVAL and the header ioctls
// with ENOTTY; other sandboxes may say EOPNOTSUPP.
bool vnet_unsupported(int e) { return e == ENOTTY || e == EINVAL || e == EOPNOTSUPP; }

// Opens /dev/net/tun and attaches it with TUNSETIFF; the fd, or -1 with *st.
int attach(const TapRequest& req, bool vnet, SysStatus* st, bool multi = false) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return st->Fail(errno, "open(/dev/net/tun)");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, req.name, IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0) | (multi ? IFF_MULTI_QUEUE : 0);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    return st->Fail(e, "ioctl(TUNSETIFF)");
  }
  return fd;
}

// The header size and offloads of a tap opened with IFF_VNET_HDR; -1 with
// *st when one is refused (the caller decides whether that is a fallback).
int setup_vnet(int fd, const TapRequest& req, unsigned* granted, SysStatus* st) {
  // 10 bytes: struct virtio_net_hdr without num_buffers; the frame views
  // in stack/wire/vnet.ts assume exactly this size.
  int hdr = 10;
  if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) return st->Fail(errno, "ioctl(TUNSETVNETHDRSZ)");
  return set_offloads(fd, req.offloads, granted, st);
}

// Errnos with which TUNSETIFF says "no multi-queue here": EINVAL from an
// existing tap made without IFF_MULTI_QUEUE (the flags must match) or from a
// sandbox (gVisor) that knows no such flag; EOPNOTSUPP/ENOTTY elsewhere.
bool mq_unsupported(int e) { return e == EINVAL || e == EOPNOTSUPP || e == ENOTTY; }

void close_queues(TapResult* out) {
  for (int i = 0; i < out->nqueues; i++) close(out->fds[i]);
  out->nqueues = 0;
}

// req.queues fds on one IFF_MULTI_QUEUE tap, each with the same header size
// and offloads; all or nothing. The vnet header here is taken or refused as
// a whole: a refusal makes the caller fall back to the single-queue path,
// which has the header ladder.
int open_queues(const TapRequest& req, TapResult* out, SysStatus* st) {
  out->nqueues = 0;
  unsigned granted = 0;
  for (int q = 0; q < req.queues; q++) {
    int fd = attach(req, req.vnet_hdr, st, true);
    if (fd < 0) {
      close_queues(out);
      return -1;
    }
    out->fds[out->nqueues++] = fd;
    if (req.vnet_hdr && setup_vnet(fd, req, &granted, st) < 0) {
      close_queues(out);
      return -1;
    }
  }
  out->fd = out->fds[0];
  out->vnet_hdr = req.vnet_hdr;
  out->offloads = req.vnet_hdr ? granted : 0;
  return 0;
}

}  // namespace

int tap_open(const TapRequest& req, TapResult* out, SysStatus* st) {
  out->fd = -1;
  out->attached = iface_exists(req.name);
  out->offloads = 0;
  out->vnet_hdr = false;
  out->vnet_errno = 0;
  out->vnet_step = "";
  out->nqueues = 0;
  out->mq_errno = 0;
  out->mq_step = "";
  if (req.queues > 1) {
    SysStatus mq;
    if (open_queues(req, out, &mq) == 0) return 0;
    // Anything but "not supported" is the caller's error, as on the single path.
    if (!mq_unsupported(mq.err) && !vnet_unsupported(mq.err)) return st->Fail(mq.err, mq.step);
    out->mq_errno = mq.err;
    out->mq_step = strcmp(mq.step, "ioctl(TUNSETIFF)") == 0 ? "ioctl(TUNSETIFF,IFF_MULTI_QUEUE)" : mq.step;
    out->attached = iface_exists(req.name);
  }
  if (!req.vnet_hdr) {
    int fd = attach(req, false, st);
    if (fd < 0) return -1;
    out->fd = fd;
    out->fds[0] = fd;
    out->nqueues = 1;
    return 0;
  }
  // Best path first: the header with offloads. A refusal that means "not
  // supported here" falls back to a plain tap and is reported as such; any
  // other error is the caller's.
  SysStatus why;
  int fd = attach(req, true, &why);
  if (fd >= 0) {
    unsigned granted = 0;
    if (setup_vnet(fd, req, &granted, &why) == 0) {
      out->fd = fd;
      out->fds[0] = fd;
      out->nqueues = 1;
      out->vnet_hdr = true;
      out->offloads = granted;
      return 0;
    }
    // TUNSETIFF cannot be undone on this fd: close it (a tap we created
    // vanishes with it) and start over without the header.
    close(fd);
    if (!vnet_unsupported(why.err)) return st->Fail(why.err, why.step);
  } else if (why.err != EINVAL || strcmp(why.step, "ioctl(TUNSETIFF)") != 0) {
    return st->Fail(why.err, why.step);
  } else {
    why.step = "ioctl(TUNSETIFF,IFF_VNET_HDR)";
  }
  // If the plain attach fails too, the header was not the reason and this
  // error is the one to report.
  fd = attach(req, false, st);
  if (fd < 0) return -1;
  out->fd = fd;
  out->fds[0] = fd;
  out->nqueues = 1;
  out->vnet_errno = why.err;
  out->vnet_step = why.step;
  return 0;
}

void SetTapResult(Napi::Env env, Napi::Object o, const TapResult& r) {
  o.Set("vnetHdr", Napi::Boolean::New(env, r.vnet_hdr));
  o.Set("offloads", Napi::Number::New(env, r.offloads));
  // Queues past the first (fd); empty for a single-queue tap.
  int extra = r.nqueues > 1 ? r.nqueues - 1 : 0;
  Napi::Array q = Napi::Array::New(env, extra);
  for (int i = 0; i < extra; i++) q.Set(static_cast<uint32_t>(i), Napi::Number::New(env, r.fds[i + 1]));
  o.Set("queueFds", q);
  if (r.mq_errno == 0) {
    o.Set("multiqueueFallback", env.Null());
  } else {
    Napi::Object m = Napi::Object::New(env);
    m.Set("errno", Napi::Number::New(env, r.mq_errno));
    m.Set("syscall", Napi::String::New(env, r.mq_step));
    o.Set("multiqueueFallback", m);
  }
  if (r.vnet_errno == 0) {
    o.Set("vnetFallback", env.Null());
    return;
  }
  // Raw facts; src/native/addon.ts turns the errno into its name.
  Napi::Object f = Napi::Object::New(env);
  f.Set("errno", Napi::Number::New(env, r.vnet_errno));
  f.Set("syscall", Napi::String::New(env, r.vnet_step));
  o.Set("vnetFallback", f);
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
  Napi::Value q = o.Get("queues");
  out->queues = q.IsNumber() ? q.As<Napi::Number>().Int32Value() : 1;
  if (out->queues < 1 || out->queues > kMaxTapQueues) {
    Napi::RangeError::New(env, "tap queues must be 1..16").ThrowAsJavaScriptException();
    return false;
  }
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
  SetTapResult(env, r, res);
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
