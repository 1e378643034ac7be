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
  // More than 1: IFF_MULTI_QUEUE with this many queue fds (engine shards,
  // one per worker thread), at most kMaxTapQueues.
  int queues = 1;
};

// Queue fds one open hands back; the kernel allows 256 (MAX_TAP_QUEUES), a
// worker per core needs no more than this.
constexpr int kMaxTapQueues = 16;

struct TapResult {
  int fd = -1;
  // With queues > 1: every queue's fd (fds[0] == fd), and how many there are;
  // 1 when the multi-queue open was refused (then mq_errno/mq_step say why).
  int fds[kMaxTapQueues] = {-1};
  int nqueues = 0;
  int mq_errno = 0;
  const char* mq_step = "";
  bool attached = false;
  // What the tap actually does: false when the vnet header was not asked for,
  // or was asked for and refused (then vnet_errno/vnet_step say why).
  bool vnet_hdr = false;
  unsigned offloads = 0;
  int vnet_errno = 0;
  const char* vnet_step = "";
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
  // IPv6 goes by rtnetlink only (there is no portable ioctl for routes).
  bool has_addr6 = false;
  uint8_t addr6[16] = {0};
  int prefix6 = 0;
  bool has_gateway6 = false;
  uint8_t gateway6[16] = {0};
};

// How one setting of an IfPlan was applied. Plain data, so that it can travel
// in the forked child's reply as it is.
enum IfWay : uint8_t {
  kWayNone = 0,       // not asked for
  kWayIoctl = 1,      // the SIOCS* ioctl did it
  kWayRtnetlink = 2,  // the ioctl was refused as unsupported; an rtnetlink request did it
  kWayUnchanged = 3,  // nothing to do (already so), or neither way could and the interface works as it is
};

struct IfStep {
  uint8_t way = kWayNone;
  int32_t ioctl_errno = 0;  // the refused ioctl's errno, 0 if it worked or was not tried
  int32_t nl_errno = 0;     // the refused rtnetlink request's errno, 0 if it worked or was not tried
};

struct IfReport {
  IfStep loopback_up, mtu, mac, addr, txqlen, up, gateway, addr6, gateway6;
  // The interface as it is afterwards (read with SIOCGIF*, which gVisor has).
  bool have_state = false;
  int32_t mtu_now = 0;
  uint8_t mac_now[6] = {0};
  bool up_now = false;
};

// A NETLINK_ROUTE socket for request/response (nl_groups = 0). Every
// function returns 0 or a positive errno; all are async-signal-safe.
struct Rtnl {
  int fd = -1;
  uint32_t seq = 0;
};
int rtnl_open(Rtnl* nl);
void rtnl_close(Rtnl* nl);
int rtnl_set_up(Rtnl* nl, int ifindex, bool up);
int rtnl_set_mtu(Rtnl* nl, int ifindex, int mtu);
int rtnl_set_mac(Rtnl* nl, int ifindex, const uint8_t mac[6]);
int rtnl_set_txqlen(Rtnl* nl, int ifindex, int txqlen);
// family AF_INET (addr: 4 bytes, network order) or AF_INET6 (16 bytes).
int rtnl_add_addr(Rtnl* nl, int family, int ifindex, const void* addr, int prefix);
int rtnl_add_default_route(Rtnl* nl, int family, int ifindex, const void* gateway);

// Async-signal-safe: opens /dev/net/tun and attaches or creates the tap.
int tap_open(const TapRequest& req, TapResult* out, SysStatus* st);
// Async-signal-safe: applies the plan with ioctls on an AF_INET socket, each
// setting falling back to rtnetlink where the ioctl is unsupported; fills
// *report also when it fails.
int iface_apply(const IfPlan& plan, IfReport* report, SysStatus* st);

// JS side helpers (Node process only).
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall);
bool ReadTapRequest(Napi::Env env, Napi::Value v, TapRequest* out);
bool ReadIfPlan(Napi::Env env, Napi::Value v, IfPlan* out);
Napi::Object IfReportToJs(Napi::Env env, const IfPlan& plan, const IfReport& r);
// The vnet-header facts of an opened tap: vnetHdr, offloads, vnetFallback.
void SetTapResult(Napi::Env env, Napi::Object o, const TapResult& r);
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
void InitSocketIo(Napi::Env env, Napi::Object exports);
void InitUdpSockets(Napi::Env env, Napi::Object exports);

}  // namespace usernet
