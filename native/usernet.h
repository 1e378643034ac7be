// Shared declarations of the usernet addon.
//
// The syscall helpers here (tap_open, iface_apply, iface_index) run in two
// places: in the Node process, and in a child forked from a multithreaded
// process (netns.cc). In the child only async-signal-safe calls are allowed,
// so these helpers never allocate, never throw and never touch JS; they
// report failure as an errno plus a fixed step name, and the JS error is made
// later, in the parent, by ErrnoError (addon.cc), the one place that turns an
// errno into a JS error.
#pragma once

#include <napi.h>
#include <uv.h>
#include <net/if.h>
#include <stdint.h>

namespace usernet {

// Which syscall failed and why. `step` always points to a string literal, so
// filling it in a forked child costs nothing and allocates nothing.
struct SysStatus {
  int err = 0;
  const char* step = "";
  int Fail(int e, const char* s) {
    err = e;
    step = s;
    return -1;
  }
};

// What openTap asks for, prepared before any fork.
struct TapRequest {
  char name[IFNAMSIZ] = {0};
  bool vnet_hdr = false;
  unsigned offloads = 0;
};

struct TapResult {
  int fd = -1;
  bool attached = false;
  unsigned offloads = 0;
};

// Interface configuration with every value already parsed (addresses in
// network byte order), so applying it needs no parsing and no allocation.
struct IfPlan {
  char name[IFNAMSIZ] = {0};
  bool loopback_up = false;
  bool has_up = false, up = false;
  bool has_mtu = false;
  int mtu = 0;
  bool has_mac = false;
  uint8_t mac[6] = {0};
  bool has_addr = false;
  uint32_t addr = 0;
  bool has_mask = false;
  uint32_t mask = 0;
  bool has_gateway = false;
  uint32_t gateway = 0;
  bool has_txqlen = false;
  int txqlen = 0;
};

// Async-signal-safe: opens /dev/net/tun and attaches or creates the tap.
int tap_open(const TapRequest& req, TapResult* out, SysStatus* st);
// Async-signal-safe: applies the plan with ioctls on an AF_INET socket.
int iface_apply(const IfPlan& plan, SysStatus* st);

// JS side helpers (Node process only).
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall);
bool ReadTapRequest(Napi::Env env, Napi::Value v, TapRequest* out);
bool ReadIfPlan(Napi::Env env, Napi::Value v, IfPlan* out);
// Copies a JS string into a fixed buffer; false (with a pending TypeError) if
// it is not a string or does not fit.
bool ReadFixedString(Napi::Env env, Napi::Value v, char* out, size_t cap, const char* what);

// Stops watching and closes a polled fd (FrameIo, PingSocket): uv_close takes
// the fd out of epoll and frees the handle later, so closing the fd right
// after is safe. Sets *poll to nullptr and *fd to -1; safe to call twice.
void ClosePolledFd(uv_poll_t** poll, int* fd);

void InitTap(Napi::Env env, Napi::Object exports);
void InitIfconfig(Napi::Env env, Napi::Object exports);
void InitNetns(Napi::Env env, Napi::Object exports);
void InitFrameIo(Napi::Env env, Napi::Object exports);
void InitPing(Napi::Env env, Napi::Object exports);
void InitSandbox(Napi::Env env, Napi::Object exports);
void InitExec(Napi::Env env, Napi::Object exports);
void InitTcpSockets(Napi::Env env, Napi::Object exports);

}  // namespace usernet
