// ICMP echo through unprivileged ping sockets (AF_INET, SOCK_DGRAM,
// IPPROTO_ICMP, or AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6): one socket per
// guest echo flow.
//
// How it works: the socket is bound to port 0 at creation, so the kernel picks
// its echo identifier at once (getsockname reports it as the port); the kernel
// rewrites the identifier of every request we send to it and delivers only the
// replies and ICMP errors that carry it. We never parse ICMP here: JS hands us
// an echo request (header + payload) and gets back what the kernel gives.
//
// Receive: a uv_poll_t watches the fd. IP_RECVERR queues ICMP errors about our
// requests (unreachable, time exceeded, ...) on the socket's error queue, and
// SO_SELECT_ERR_QUEUE makes a non-empty error queue raise POLLPRI beside
// POLLERR. That matters: libuv stops a poll and reports EBADF on a bare
// POLLERR, but treats POLLERR|POLLPRI as UV_PRIORITIZED. On each wakeup we
// drain the error queue first (the errors are about requests older than any
// reply still queued, and draining clears the socket's pending error), then
// the replies, each into the next fixed-size slot of the rx ArrayBuffer with
// 8 words of metadata per entry (layout in src/native/types.ts), until EAGAIN
// or the slots (at most 64) run out, and call onBatch(count) once. rx and the
// entry array may be shared by many sockets: a batch belongs to JS only during
// its onBatch call.
//
// IPv6: the same, with IPV6_RECVERR (origin SO_EE_ORIGIN_ICMP6) and
// IPV6_RECVHOPLIMIT. Addresses do not fit an entry word, so a v6 socket takes
// a second registered area, `addrs`, with 32 bytes per entry: the reply's
// source (or the errored request's destination) and then the offender. The
// destination of a send is read in place from the caller's bytes (the NAT's
// interned address table), so neither direction allocates.
//
// Send: one sendmsg from the caller's bytes, non-blocking; a TTL and a TOS for
// this packet only travel as cmsgs (traceroute probes share one identifier
// but not a TTL). For IPv6 the hop limit and traffic class are socket options
// set only when they change: a guest's echo flow keeps one hop limit, so that
// is one setsockopt per flow, and it needs no support for ancillary data in
// the kernel's ping_v6_sendmsg. With IP_RECVERR the kernel also stores every ICMP error as
// the socket's pending error, and the next send fails with it (and clears it)
// before anything is sent; the error itself is still in the error queue, so
// such a send is retried once.
//
// Lifetime: as in FrameIo. While polling the JS object holds a strong
// reference to itself; close() (idempotent), garbage collection and
// environment teardown all end in Shutdown().
#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "usernet.h"

namespace usernet {

namespace {

// Entry layout, mirrored by the PING_* constants in src/native/types.ts.
constexpr size_t kWords = 8;
constexpr size_t kLen = 0, kKind = 1, kAddr = 2, kOffender = 3, kTtl = 4, kTypeCode = 5, kInfo = 6, kErrno = 7;
constexpr uint32_t kReply = 0, kIcmpError = 1, kLocalError = 2, kTruncated = 0x100;
// Per entry in the IPv6 address area: the peer at +0, the offender at +16.
constexpr size_t kAddr6Stride = 32, kAddr6Offender = 16;
// One wakeup reads at most this many entries, so a flooded socket cannot hold
// the loop; the rest stays queued and the level-triggered poll fires again.
constexpr uint32_t kMaxBatch = 64;
// Room for IP_TTL (an int) on replies, or a sock_extended_err plus the
// offender's sockaddr_in on errors, with headers and alignment to spare.
constexpr size_t kControlLen = 256;

// Errors that say the socket itself is unusable, as opposed to a network event.
bool IsFatal(int err) { return err == EBADF || err == EFAULT || err == EINVAL || err == ENOTSOCK; }

class PingSocket : public Napi::ObjectWrap<PingSocket> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PingSocket",
                       {
                           InstanceMethod<&PingSocket::Send>("send"),
                           InstanceMethod<&PingSocket::Send6>("send6"),
                           InstanceMethod<&PingSocket::Close>("close"),
                           InstanceAccessor<&PingSocket::LocalId>("localId"),
                           InstanceAccessor<&PingSocket::Family>("family"),
                       });
  }

  explicit PingSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PingSocket>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      Napi::TypeError::New(env, "PingSocket options must be an object").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value rx = o.Get("rx"), slot_size = o.Get("slotSize"), slot_count = o.Get("slotCount"),
                entries = o.Get("entries"), on_batch = o.Get("onBatch"), on_error = o.Get("onError"), ttl = o.Get("ttl"),
                tos = o.Get("tos"), family = o.Get("family"), addrs = o.Get("addrs");
    if (!rx.IsArrayBuffer() || !slot_size.IsNumber() || !slot_count.IsNumber() || !entries.IsTypedArray() ||
        entries.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array || !on_batch.IsFunction() ||
        !on_error.IsFunction()) {
      Napi::TypeError::New(env, "PingSocket options: rx, slotSize, slotCount, entries, onBatch, onError")
          .ThrowAsJavaScriptException();
      return;
    }
    slot_size_ = slot_size.As<Napi::Number>().Uint32Value();
    slot_count_ = slot_count.As<Napi::Number>().Uint32Value();
    Napi::ArrayBuffer rxb = rx.As<Napi::ArrayBuffer>();
    if (slot_size_ == 0 || slot_count_ == 0 || slot_count_ > kMaxBatch || rxb.ByteLength() / slot_size_ < slot_count_ ||
        entries.As<Napi::Uint32Array>().ElementLength() / kWords < slot_count_) {
      Napi::TypeError::New(env, "PingSocket: slotCount above 64, or rx or entries too small for it")
          .ThrowAsJavaScriptException();
      return;
    }
    v6_ = family.IsNumber() && family.As<Napi::Number>().Uint32Value() == 6;
    if (v6_ && (!addrs.IsTypedArray() || addrs.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
                addrs.As<Napi::Uint8Array>().ElementLength() / kAddr6Stride < slot_count_)) {
      Napi::TypeError::New(env, "PingSocket: family 6 needs addrs, a Uint8Array of 32 bytes per slot")
          .ThrowAsJavaScriptException();
      return;
    }
    if (v6_) addrs_ = Napi::Persistent(addrs.As<Napi::Uint8Array>());
    rx_ = Napi::Persistent(rxb);
    entries_ = Napi::Persistent(entries.As<Napi::Uint32Array>());
    on_batch_ = Napi::Persistent(on_batch.As<Napi::Function>());
    on_error_ = Napi::Persistent(on_error.As<Napi::Function>());

    // One syscall name for both families: the EACCES of either means the
    // group is outside net.ipv4.ping_group_range, which governs both.
    fd_ = socket(v6_ ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, v6_ ? static_cast<int>(IPPROTO_ICMPV6) : static_cast<int>(IPPROTO_ICMP));
    if (fd_ < 0) {
      ErrnoError(env, errno, "socket(ICMP)").ThrowAsJavaScriptException();
      return;
    }
    int one = 1;
    if (v6_) {
      if (!SetOpt(env, SOL_IPV6, IPV6_RECVERR, one, "setsockopt(IPV6_RECVERR)") ||
          !SetOpt(env, SOL_SOCKET, SO_SELECT_ERR_QUEUE, one, "setsockopt(SO_SELECT_ERR_QUEUE)") ||
          !SetOpt(env, SOL_IPV6, IPV6_RECVHOPLIMIT, one, "setsockopt(IPV6_RECVHOPLIMIT)"))
        return;
      if (ttl.IsNumber()) {
        hops_ = ttl.As<Napi::Number>().Int32Value();
        if (!SetOpt(env, SOL_IPV6, IPV6_UNICAST_HOPS, hops_, "setsockopt(IPV6_UNICAST_HOPS)")) return;
      }
      base_hops_ = hops_;
      if (tos.IsNumber()) {
        tclass_ = tos.As<Napi::Number>().Int32Value();
        if (!SetOpt(env, SOL_IPV6, IPV6_TCLASS, tclass_, "setsockopt(IPV6_TCLASS)")) return;
      }
      base_tclass_ = tclass_;
    } else {
      if (!SetOpt(env, SOL_IP, IP_RECVERR, one, "setsockopt(IP_RECVERR)") ||
          !SetOpt(env, SOL_SOCKET, SO_SELECT_ERR_QUEUE, one, "setsockopt(SO_SELECT_ERR_QUEUE)") ||
          !SetOpt(env, SOL_IP, IP_RECVTTL, one, "setsockopt(IP_RECVTTL)"))
        return;
      if (ttl.IsNumber() && !SetOpt(env, SOL_IP, IP_TTL, ttl.As<Napi::Number>().Int32Value(), "setsockopt(IP_TTL)"))
        return;
      if (tos.IsNumber() && !SetOpt(env, SOL_IP, IP_TOS, tos.As<Napi::Number>().Int32Value(), "setsockopt(IP_TOS)"))
        return;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_family = v6_ ? AF_INET6 : AF_INET;
    socklen_t slen = v6_ ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd_, reinterpret_cast<struct sockaddr*>(&ss), slen) < 0) {
      ErrnoError(env, errno, "bind").ThrowAsJavaScriptException();
      return;
    }
    slen = sizeof ss;
    if (getsockname(fd_, reinterpret_cast<struct sockaddr*>(&ss), &slen) < 0) {
      ErrnoError(env, errno, "getsockname").ThrowAsJavaScriptException();
      return;
    }
    local_id_ = v6_ ? ntohs(reinterpret_cast<struct sockaddr_in6*>(&ss)->sin6_port)
                    : ntohs(reinterpret_cast<struct sockaddr_in*>(&ss)->sin_port);

    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    int rc = uv_poll_init_socket(loop, poll_, fd_);
    if (rc < 0) {
      delete poll_;
      poll_ = nullptr;
      ErrnoError(env, -rc, "uv_poll_init").ThrowAsJavaScriptException();
      return;
    }
    poll_->data = this;
    rc = uv_poll_start(poll_, UV_READABLE | UV_PRIORITIZED, &PingSocket::OnPoll);
    if (rc < 0) {
      ErrnoError(env, -rc, "uv_poll_start").ThrowAsJavaScriptException();
      return;
    }
    ctx_ = new Napi::AsyncContext(env, "UsernetPingSocket");
    napi_add_env_cleanup_hook(env, &PingSocket::OnEnvTeardown, this);
    hook_ = true;
    polling_ = true;
    Ref();
  }

  // Also runs when the constructor failed half way (node-addon-api deletes
  // the instance then), so Shutdown copes with any partial state.
  ~PingSocket() override {
    Shutdown();
    delete ctx_;
  }

 private:
  bool SetOpt(Napi::Env env, int level, int name, int value, const char* what) {
    if (setsockopt(fd_, level, name, &value, sizeof value) == 0) return true;
    ErrnoError(env, errno, what).ThrowAsJavaScriptException();
    return false;
  }

  Napi::Value LocalId(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), local_id_); }
  Napi::Value Family(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), v6_ ? 6 : 4); }

  // The bytes of a Uint8Array argument, or null (also for a detached buffer).
  static uint8_t* BytesOf(napi_env env, napi_value v, size_t* len) {
    napi_typedarray_type type;
    size_t elems = 0;
    void* data = nullptr;
    napi_value ab;
    size_t byte_off;
    if (napi_get_typedarray_info(env, v, &type, &elems, &data, &ab, &byte_off) != napi_ok) return nullptr;
    if (data == nullptr || (type != napi_uint8_array && type != napi_uint8_clamped_array)) return nullptr;
    *len = elems;
    return static_cast<uint8_t*>(data);
  }

  // Sets an int IPv6 socket option unless it already has that value; errno or 0.
  int SetCached(int name, int value, int* cache) {
    if (*cache == value) return 0;
    if (setsockopt(fd_, SOL_IPV6, name, &value, sizeof value) < 0) return errno;
    *cache = value;
    return 0;
  }

  // send6(buf, off, len, addr, addrOff, hopLimit?, tclass?): bytes sent or
  // -errno. The destination is addr[addrOff, +16). hopLimit 0 or absent and
  // tclass -1 or absent mean the socket's own values.
  Napi::Value Send6(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!v6_) {
      Napi::TypeError::New(env, "send6 needs a socket of family 6").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsTypedArray() ||
        !info[4].IsNumber()) {
      Napi::TypeError::New(env, "send6(buf: Uint8Array, off, len, addr: Uint8Array, addrOff, hopLimit?, tclass?)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    size_t bytes = 0, abytes = 0;
    uint8_t* base = BytesOf(env, info[0], &bytes);
    uint8_t* abase = BytesOf(env, info[3], &abytes);
    uint32_t off = info[1].As<Napi::Number>().Uint32Value();
    uint32_t len = info[2].As<Napi::Number>().Uint32Value();
    uint32_t aoff = info[4].As<Napi::Number>().Uint32Value();
    if (base == nullptr || abase == nullptr || static_cast<uint64_t>(off) + len > bytes ||
        static_cast<uint64_t>(aoff) + 16 > abytes) {
      Napi::RangeError::New(env, "send6: off + len or addrOff + 16 is outside its buffer").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (closed_) return Napi::Number::New(env, -EBADF);
    int hops = info[5].IsNumber() ? info[5].As<Napi::Number>().Int32Value() : 0;
    int tclass = info[6].IsNumber() ? info[6].As<Napi::Number>().Int32Value() : -1;
    int err = SetCached(IPV6_UNICAST_HOPS, hops > 0 ? hops : base_hops_, &hops_);
    if (err == 0) err = SetCached(IPV6_TCLASS, tclass >= 0 ? tclass : base_tclass_, &tclass_);
    if (err != 0) return Napi::Number::New(env, -err);
    struct sockaddr_in6 dst;
    memset(&dst, 0, sizeof dst);
    dst.sin6_family = AF_INET6;
    memcpy(&dst.sin6_addr, abase + aoff, 16);
    struct iovec iov = {base + off, len};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = &dst;
    msg.msg_namelen = sizeof dst;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n = SendOnce(&msg);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS && errno != ENOMEM && !IsFatal(errno))
      n = SendOnce(&msg);
    return Napi::Number::New(env, n < 0 ? -errno : static_cast<double>(n));
  }

  // send(buf, off, len, dst, ttl?, tos?): bytes sent or -errno. ttl 0 or
  // absent and tos -1 or absent mean the socket's own values.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber()) {
      Napi::TypeError::New(env, "send(buf: Uint8Array, off: number, len: number, dst: number, ttl?, tos?)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    // One call for the address and size, read afresh on every send so a
    // detached buffer shows up as empty instead of as freed memory.
    napi_typedarray_type type;
    size_t elems = 0;
    void* data = nullptr;
    napi_value ab;
    size_t byte_off;
    if (napi_get_typedarray_info(env, info[0], &type, &elems, &data, &ab, &byte_off) != napi_ok) data = nullptr;
    if (data != nullptr && type != napi_uint8_array && type != napi_uint8_clamped_array) {
      Napi::TypeError::New(env, "send: buf must be a Uint8Array").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    size_t bytes = data == nullptr ? 0 : elems;
    uint32_t off = info[1].As<Napi::Number>().Uint32Value();
    uint32_t len = info[2].As<Napi::Number>().Uint32Value();
    if (data == nullptr || static_cast<uint64_t>(off) + len > bytes) {
      Napi::RangeError::New(env, "send: off + len is outside the buffer").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (closed_) return Napi::Number::New(env, -EBADF);
    if (v6_) {
      Napi::TypeError::New(env, "send needs a socket of family 4; use send6").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int ttl = info[4].IsNumber() ? info[4].As<Napi::Number>().Int32Value() : 0;
    int tos = info[5].IsNumber() ? info[5].As<Napi::Number>().Int32Value() : -1;

    uint8_t* base = static_cast<uint8_t*>(data);
    struct sockaddr_in dst;
    memset(&dst, 0, sizeof dst);
    dst.sin_family = AF_INET;
    dst.sin_addr.s_addr = htonl(info[3].As<Napi::Number>().Uint32Value());
    struct iovec iov = {base + off, len};
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int)) * 2];
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = &dst;
    msg.msg_namelen = sizeof dst;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    size_t clen = 0;
    if (ttl > 0) clen += AddCmsg(control + clen, IP_TTL, ttl);
    if (tos >= 0) clen += AddCmsg(control + clen, IP_TOS, tos);
    if (clen > 0) {
      msg.msg_control = control;
      msg.msg_controllen = clen;
    }
    ssize_t n = SendOnce(&msg);
    // A failure here may be the pending error of an earlier ICMP error, which
    // the failed attempt has just cleared: try once more (see the top).
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS && errno != ENOMEM && !IsFatal(errno))
      n = SendOnce(&msg);
    return Napi::Number::New(env, n < 0 ? -errno : static_cast<double>(n));
  }

  static size_t AddCmsg(char* at, int type, int value) {
    struct cmsghdr* c = reinterpret_cast<struct cmsghdr*>(at);
    c->cmsg_level = SOL_IP;
    c->cmsg_type = type;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &value, sizeof value);
    return CMSG_SPACE(sizeof(int));
  }

  ssize_t SendOnce(struct msghdr* msg) {
    ssize_t n;
    do n = sendmsg(fd_, msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  void Shutdown() {
    if (closed_) return;
    closed_ = true;
    if (polling_) {
      polling_ = false;
      Unref();
    }
    ClosePolledFd(&poll_, &fd_);
    if (hook_ && !in_teardown_) napi_remove_env_cleanup_hook(env_, &PingSocket::OnEnvTeardown, this);
    hook_ = false;
    // No callback after close: drop the strong references (see FrameIo::Shutdown).
    rx_.Reset();
    entries_.Reset();
    addrs_.Reset();
    on_batch_.Reset();
    on_error_.Reset();
  }

  static void OnEnvTeardown(void* arg) {
    PingSocket* self = static_cast<PingSocket*>(arg);
    self->in_teardown_ = true;
    self->Shutdown();
  }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    PingSocket* self = static_cast<PingSocket*>(h->data);
    Napi::Env env(self->env_);
    Napi::HandleScope scope(env);
    if (status < 0) {
      self->Fail(-status, "uv_poll");
      return;
    }
    self->ReadBatch((events & UV_PRIORITIZED) != 0);
  }

  void ReadBatch(bool errors_pending) {
    void* rdata = nullptr;
    size_t rlen = 0;
    if (napi_get_arraybuffer_info(env_, rx_.Value(), &rdata, &rlen) != napi_ok) rdata = nullptr;
    void* edata = nullptr;
    size_t elen = 0;
    napi_typedarray_type etype;
    napi_value eab;
    size_t eoff;
    if (napi_get_typedarray_info(env_, entries_.Value(), &etype, &elen, &edata, &eab, &eoff) != napi_ok)
      edata = nullptr;
    uint8_t* adata = nullptr;
    if (v6_) {
      size_t alen = 0;
      adata = BytesOf(env_, addrs_.Value(), &alen);
      if (adata != nullptr && alen / kAddr6Stride < slot_count_) adata = nullptr;
    }
    if (rdata == nullptr || rlen / slot_size_ < slot_count_ || edata == nullptr || elen / kWords < slot_count_ ||
        (v6_ && adata == nullptr)) {
      // JS transferred the memory it promised us: stop rather than write into freed memory.
      Fail(EFAULT, "recvmsg");
      return;
    }
    uint8_t* rx = static_cast<uint8_t*>(rdata);
    uint32_t* e = static_cast<uint32_t*>(edata);
    uint32_t count = 0;
    int err = 0;
    if (errors_pending) {
      while (count < slot_count_) {
        int r = RecvOne(rx + count * slot_size_, e + count * kWords, AddrAt(adata, count), true);
        if (r == 0) count++;
        else if (r != EINTR) break;
      }
    }
    // A failed read that is neither EAGAIN nor fatal consumed the socket's
    // pending error (its detail is in the error queue); allow a few of those
    // so a burst of them cannot keep us here.
    uint32_t spurious = 0;
    while (count < slot_count_) {
      int r = RecvOne(rx + count * slot_size_, e + count * kWords, AddrAt(adata, count), false);
      if (r == 0) {
        count++;
        continue;
      }
      if (r == EINTR) continue;
      if (r == EAGAIN || r == EWOULDBLOCK || r == ENOMEM || r == ENOBUFS) break;
      if (IsFatal(r)) {
        err = r;
        break;
      }
      if (++spurious > kMaxBatch) break;
    }
    if (count > 0) {
      Napi::Object self = Value();
      Napi::Value arg = Napi::Number::New(env_, static_cast<double>(count));
      on_batch_.MakeCallback(self, {arg}, *ctx_);
      ReportPendingException();
    }
    if (err != 0) Fail(err, "recvmsg");
  }

  static uint8_t* AddrAt(uint8_t* adata, uint32_t i) { return adata == nullptr ? nullptr : adata + i * kAddr6Stride; }

  // Stores a peer or offender address: an IPv4 one as the u32 in entry[word],
  // an IPv6 one as 16 bytes at addr6 + off with entry[word] = 1 ("present").
  static void StoreAddress(const struct sockaddr_storage& a, socklen_t len, uint32_t* entry, size_t word, uint8_t* addr6, size_t off) {
    if (a.ss_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
      entry[word] = ntohl(reinterpret_cast<const struct sockaddr_in*>(&a)->sin_addr.s_addr);
    } else if (a.ss_family == AF_INET6 && len >= sizeof(struct sockaddr_in6) && addr6 != nullptr) {
      memcpy(addr6 + off, &reinterpret_cast<const struct sockaddr_in6*>(&a)->sin6_addr, 16);
      entry[word] = 1;
    }
  }

  // Reads one datagram (or one queued error) into a slot and its entry (and
  // for IPv6 its 32 address bytes). Returns 0 or the errno. The two families
  // differ only in the cmsg level and types and in how addresses are stored.
  int RecvOne(uint8_t* slot, uint32_t* entry, uint8_t* addr6, bool errqueue) {
    const int level = v6_ ? SOL_IPV6 : SOL_IP;
    const int hops_type = v6_ ? IPV6_HOPLIMIT : IP_TTL;
    const int err_type = v6_ ? IPV6_RECVERR : IP_RECVERR;
    const uint8_t icmp_origin = v6_ ? SO_EE_ORIGIN_ICMP6 : SO_EE_ORIGIN_ICMP;
    struct sockaddr_storage from;
    memset(&from, 0, sizeof from);
    struct iovec iov = {slot, slot_size_};
    alignas(struct cmsghdr) char control[kControlLen];
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fd_, &msg, MSG_DONTWAIT | (errqueue ? MSG_ERRQUEUE : 0));
    if (n < 0) return errno;
    for (size_t w = 0; w < kWords; w++) entry[w] = 0;
    if (addr6 != nullptr) memset(addr6, 0, kAddr6Stride);
    entry[kLen] = static_cast<uint32_t>(n);
    StoreAddress(from, msg.msg_namelen, entry, kAddr, addr6, 0);
    uint32_t kind = errqueue ? kLocalError : kReply;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != level) continue;
      if (c->cmsg_type == hops_type && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
        int hops;
        memcpy(&hops, CMSG_DATA(c), sizeof hops);
        entry[kTtl] = static_cast<uint32_t>(hops);
      } else if (c->cmsg_type == err_type && c->cmsg_len >= CMSG_LEN(sizeof(struct sock_extended_err))) {
        struct sock_extended_err ee;
        memcpy(&ee, CMSG_DATA(c), sizeof ee);
        if (ee.ee_origin == icmp_origin) kind = kIcmpError;
        entry[kTypeCode] = (static_cast<uint32_t>(ee.ee_type) << 8) | ee.ee_code;
        entry[kInfo] = ee.ee_info;
        entry[kErrno] = ee.ee_errno;
        // The offender's address follows the struct in the same cmsg.
        size_t room = c->cmsg_len - CMSG_LEN(sizeof ee);
        if (room > 0) {
          struct sockaddr_storage off;
          memset(&off, 0, sizeof off);
          size_t take = room < sizeof off ? room : sizeof off;
          memcpy(&off, CMSG_DATA(c) + sizeof ee, take);
          StoreAddress(off, static_cast<socklen_t>(take), entry, kOffender, addr6, kAddr6Offender);
        }
      }
    }
    if ((msg.msg_flags & MSG_TRUNC) != 0) kind |= kTruncated;
    entry[kKind] = kind;
    return 0;
  }

  void Fail(int err, const char* syscall) {
    if (closed_ || failed_) return;
    failed_ = true;
    Napi::Env env(env_);
    Napi::Object self = Value();
    if (polling_) {
      uv_poll_stop(poll_);
      polling_ = false;
      Unref();
    }
    Napi::Error e = ErrnoError(env, err, syscall);
    on_error_.MakeCallback(self, {e.Value()}, *ctx_);
    ReportPendingException();
  }

  // Called from the event loop, not from JS: an exception the callback threw
  // has nobody to catch it, so raise it as uncaught, as Node does.
  void ReportPendingException() {
    Napi::Env env(env_);
    if (!env.IsExceptionPending()) return;
    Napi::Error e = env.GetAndClearPendingException();
    napi_fatal_exception(env_, e.Value());
  }

  napi_env env_;
  int fd_ = -1;
  uint32_t local_id_ = 0;
  bool v6_ = false;
  // IPv6 hop limit and traffic class: the socket's current values (-1: the
  // system default) and what a send without its own value restores.
  int hops_ = -1, base_hops_ = -1, tclass_ = -1, base_tclass_ = -1;
  uv_poll_t* poll_ = nullptr;
  Napi::AsyncContext* ctx_ = nullptr;
  bool polling_ = false;
  bool closed_ = false;
  bool failed_ = false;
  bool hook_ = false;
  bool in_teardown_ = false;
  size_t slot_size_ = 0;
  size_t slot_count_ = 0;
  Napi::Reference<Napi::ArrayBuffer> rx_;
  Napi::Reference<Napi::Uint32Array> entries_;
  Napi::Reference<Napi::Uint8Array> addrs_;
  Napi::FunctionReference on_batch_;
  Napi::FunctionReference on_error_;
};

}  // namespace

void InitPing(Napi::Env env, Napi::Object exports) { exports.Set("PingSocket", PingSocket::Define(env)); }

}  // namespace usernet
