// Host UDP sockets for the NAT's flows, without Node's dgram.
//
// How it works: every flow's socket is connected (so only its peer answers,
// and an ICMP port unreachable comes back as ECONNREFUSED) and sits in one
// epoll set, level-triggered for input, with a 32-bit token JS chose. A
// uv_poll_t on the Node loop watches the epoll fd; on a wake-up we take up to
// kMaxEvents ready sockets and recvmmsg from each into the free slots of the
// receive area JS registered, then call onBatch(count) once with
// [token, offset, length, segment size] per message in `meta`. When the
// slots run out JS gets the batch and the slots are reused (JS is done with
// them when the call returns); at most kRoundsPerWake batches per wake-up,
// and what is left waits for the next one (level-triggered: it wakes us).
// An error on a socket (ECONNREFUSED after an ICMP unreachable) is reported
// as a message of length 0 whose segment-size word is kErrorFlag | errno.
//
// UDP_GRO is asked for on every socket: a burst of equal-size datagrams the
// kernel coalesced (a GSO sender, or a NIC's GRO) arrives as one message
// with its segment size in a cmsg. Without a cmsg the segment size is the
// message length. A slot must hold 64 KiB for that.
//
// send(desc, count): desc holds [fd, txOffset, length, gsoSize] per message
// over the registered tx area. Consecutive messages to the same fd go in one
// sendmmsg; a message with gsoSize > 0 and length > gsoSize carries
// UDP_SEGMENT, so the kernel cuts it into datagrams (one syscall per burst).
// If the kernel refuses UDP_SEGMENT (EINVAL/EIO/ENOPROTOOPT: old kernel, no
// checksum offload on the route), that message and every later one is sent
// as plain datagrams cut at gsoSize, and `gsoOff` reports it. A message that
// fails is dropped (UDP's loss), its errno counted in `errors` by JS through
// lastError; the others go on. Returns the number of messages sent.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "usernet.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

namespace usernet {

namespace {

// Ready sockets per epoll_wait: as many as TcpSockets takes.
constexpr int kMaxEvents = 256;
// Messages per batch (the receive area's slots, and one sendmmsg): 64
// datagrams of 1400 bytes are 90 KB, a few tens of microseconds of JS per
// call, and Linux's UIO_MAXIOV-style limits are far above it.
constexpr size_t kMaxMsgs = 64;
// Batches per wake-up before the event loop (the taps) gets a turn.
constexpr int kRoundsPerWake = 4;
constexpr uint32_t kErrorFlag = 0x80000000u;
constexpr int kSocketBuffer = 2 << 20;
// Room for one int cmsg (UDP_GRO / UDP_SEGMENT), 8-aligned.
constexpr size_t kCmsgSpace = 32;

union SockAddr {
  struct sockaddr sa;
  struct sockaddr_in in4;
  struct sockaddr_in6 in6;
};

bool ParseAddr(Napi::Env env, Napi::Value v, int family, int port, SockAddr* out, socklen_t* len) {
  char text[INET6_ADDRSTRLEN + 1];
  if (!ReadFixedString(env, v, text, sizeof text, "address")) return false;
  memset(out, 0, sizeof *out);
  if (family == 6) {
    out->in6.sin6_family = AF_INET6;
    out->in6.sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof out->in6;
    if (inet_pton(AF_INET6, text, &out->in6.sin6_addr) == 1) return true;
  } else {
    out->in4.sin_family = AF_INET;
    out->in4.sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof out->in4;
    if (inet_pton(AF_INET, text, &out->in4.sin_addr) == 1) return true;
  }
  Napi::TypeError::New(env, std::string("not an IPv") + (family == 6 ? "6" : "4") + " address: " + text)
      .ThrowAsJavaScriptException();
  return false;
}

bool RefusesGso(int err) { return err == EINVAL || err == EIO || err == ENOPROTOOPT || err == EOPNOTSUPP; }

class UdpSockets : public Napi::ObjectWrap<UdpSockets> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "UdpSockets",
                       {
                           InstanceMethod<&UdpSockets::Start>("start"),
                           InstanceMethod<&UdpSockets::Open>("open"),
                           InstanceMethod<&UdpSockets::CloseSocket>("closeSocket"),
                           InstanceMethod<&UdpSockets::Send>("send"),
                           InstanceMethod<&UdpSockets::Close>("close"),
                           InstanceAccessor<&UdpSockets::LastError>("lastError"),
                           InstanceAccessor<&UdpSockets::GsoOff>("gsoOff"),
                           InstanceAccessor<&UdpSockets::GroSockets>("groSockets"),
                       });
  }

  explicit UdpSockets(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpSockets>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      Napi::TypeError::New(env, "UdpSockets options must be an object").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value rx = o.Get("rx"), slot_size = o.Get("slotSize"), meta = o.Get("meta"), tx = o.Get("tx"),
                on_batch = o.Get("onBatch");
    if (!rx.IsArrayBuffer() || !slot_size.IsNumber() || !meta.IsTypedArray() ||
        meta.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array || !tx.IsArrayBuffer() ||
        !on_batch.IsFunction()) {
      Napi::TypeError::New(env, "UdpSockets options: rx, slotSize, meta, tx, onBatch").ThrowAsJavaScriptException();
      return;
    }
    slot_size_ = slot_size.As<Napi::Number>().Uint32Value();
    if (slot_size_ == 0 || rx.As<Napi::ArrayBuffer>().ByteLength() < slot_size_ * kMaxMsgs ||
        meta.As<Napi::Uint32Array>().ElementLength() < 4 * kMaxMsgs) {
      Napi::TypeError::New(env, "UdpSockets: rx must hold 64 slots, meta 256 words").ThrowAsJavaScriptException();
      return;
    }
    rx_ = Napi::Persistent(rx.As<Napi::ArrayBuffer>());
    tx_ = Napi::Persistent(tx.As<Napi::ArrayBuffer>());
    meta_ = Napi::Persistent(meta.As<Napi::Uint32Array>());
    on_batch_ = Napi::Persistent(on_batch.As<Napi::Function>());
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) {
      ErrnoError(env, errno, "epoll_create1").ThrowAsJavaScriptException();
      return;
    }
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    int rc = uv_poll_init(loop, poll_, epfd_);
    if (rc < 0) {
      delete poll_;
      poll_ = nullptr;
      close(epfd_);
      epfd_ = -1;
      ErrnoError(env, -rc, "uv_poll_init").ThrowAsJavaScriptException();
      return;
    }
    poll_->data = this;
    ctx_ = new Napi::AsyncContext(env, "UsernetUdpSockets");
    napi_add_env_cleanup_hook(env, &UdpSockets::OnEnvTeardown, this);
    hook_ = true;
  }

  ~UdpSockets() override {
    Teardown();
    delete ctx_;
  }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_ || polling_) return env.Undefined();
    int rc = uv_poll_start(poll_, UV_READABLE, &UdpSockets::OnPoll);
    if (rc < 0) {
      ErrnoError(env, -rc, "uv_poll_start").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    polling_ = true;
    Ref();
    return env.Undefined();
  }

  Napi::Value LastError(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), last_error_); }
  Napi::Value GsoOff(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), gso_off_errno_); }
  Napi::Value GroSockets(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), gro_sockets_); }

  // open(token, family, host, port, localHost | null) -> fd | -errno: a connected UDP socket in the set.
  Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !info[1].IsNumber() || !info[3].IsNumber()) {
      Napi::TypeError::New(env, "open(token, family, host, port, local)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    uint32_t token = info[0].As<Napi::Number>().Uint32Value();
    int family = info[1].As<Napi::Number>().Int32Value();
    int port = info[3].As<Napi::Number>().Int32Value();
    if (port < 0 || port > 65535) {
      Napi::RangeError::New(env, "port out of range").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    SockAddr to, from;
    socklen_t to_len = 0, from_len = 0;
    if (!ParseAddr(env, info[2], family, port, &to, &to_len)) return env.Undefined();
    bool bind_local = !info[4].IsNull() && !info[4].IsUndefined();
    if (bind_local && !ParseAddr(env, info[4], family, 0, &from, &from_len)) return env.Undefined();
    if (closed_) return Napi::Number::New(env, -EBADF);
    int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Napi::Number::New(env, -errno);
    int one = 1;
    if (setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0) gro_sockets_++;
    // A burst from the host (a sender at line rate) waits in the kernel while JS
    // handles the previous batch or the thread is descheduled, instead of being
    // dropped at the default ~200 KiB: 2 MiB is ~5 ms at 3 Gbit/s. Charged only
    // while used. FORCE works for root (above rmem_max); else the plain option, capped.
    int size = kSocketBuffer;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    if ((bind_local && bind(fd, &from.sa, from_len) < 0) || connect(fd, &to.sa, to_len) < 0) {
      int e = errno;
      close(fd);
      return Napi::Number::New(env, -e);
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    // The fd rides along with JS's token, so a wake-up needs no lookup.
    ev.data.u64 = (static_cast<uint64_t>(fd) << 32) | token;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
      int e = errno;
      close(fd);
      return Napi::Number::New(env, -e);
    }
    return Napi::Number::New(env, fd);
  }

  // closeSocket(fd) -> 0 | -errno (close takes it out of the set).
  Napi::Value CloseSocket(const Napi::CallbackInfo& info) {
    int fd = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
    int rc = close(fd);
    return Napi::Number::New(info.Env(), rc < 0 ? -errno : 0);
  }

  // Fills msgs_[i] for a message of len bytes at p; with UDP_SEGMENT when gso is set.
  void Prepare(size_t i, uint8_t* p, uint32_t len, uint32_t gso) {
    iov_[i].iov_base = p;
    iov_[i].iov_len = len;
    memset(&msgs_[i], 0, sizeof msgs_[i]);
    msgs_[i].msg_hdr.msg_iov = &iov_[i];
    msgs_[i].msg_hdr.msg_iovlen = 1;
    if (gso > 0 && len > gso) {
      uint8_t* c = cmsg_ + i * kCmsgSpace;
      memset(c, 0, kCmsgSpace);
      msgs_[i].msg_hdr.msg_control = c;
      msgs_[i].msg_hdr.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      struct cmsghdr* cm = CMSG_FIRSTHDR(&msgs_[i].msg_hdr);
      cm->cmsg_level = SOL_UDP;
      cm->cmsg_type = UDP_SEGMENT;
      cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t g = static_cast<uint16_t>(gso);
      memcpy(CMSG_DATA(cm), &g, sizeof g);
    }
  }

  // Sends len bytes at p as datagrams of gso bytes (the last one shorter); false on a failure (last_error_ set).
  bool SendCut(int fd, uint8_t* p, uint32_t len, uint32_t gso) {
    uint32_t at = 0;
    while (at < len) {
      size_t n = 0;
      for (; n < kMaxMsgs && at < len; n++) {
        uint32_t l = len - at < gso ? len - at : gso;
        Prepare(n, p + at, l, 0);
        at += l;
      }
      size_t done = 0;
      while (done < n) {
        int r = sendmmsg(fd, msgs_ + done, static_cast<unsigned>(n - done), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0) {
          if (errno == EINTR) continue;
          last_error_ = errno;
          return false;
        }
        done += static_cast<size_t>(r);
      }
    }
    return true;
  }

  // send(desc: Uint32Array, count) -> messages sent.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
        !info[1].IsNumber()) {
      Napi::TypeError::New(env, "send(desc: Uint32Array, count: number)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint32Array desc = info[0].As<Napi::Uint32Array>();
    const uint32_t* d = desc.Data();
    size_t count = info[1].As<Napi::Number>().Uint32Value();
    last_error_ = 0;
    if (count * 4 > desc.ElementLength()) {
      Napi::RangeError::New(env, "send: count beyond desc").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (closed_) {
      last_error_ = EBADF;
      return Napi::Number::New(env, 0);
    }
    uint8_t* tx = static_cast<uint8_t*>(tx_.Value().Data());
    size_t txlen = tx_.Value().ByteLength();
    for (size_t i = 0; i < count; i++) {
      const uint32_t* m = d + 4 * i;
      if (uint64_t(m[1]) + m[2] > txlen) {
        Napi::RangeError::New(env, "send: descriptor out of bounds").ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
    size_t sent = 0;
    size_t i = 0;
    while (i < count) {
      int fd = static_cast<int>(d[4 * i]);
      // The run of messages to this fd, at most one sendmmsg long.
      size_t n = 0;
      while (i + n < count && n < kMaxMsgs && static_cast<int>(d[4 * (i + n)]) == fd) n++;
      if (gso_off_errno_ != 0) {
        for (size_t k = 0; k < n; k++) {
          const uint32_t* m = d + 4 * (i + k);
          if (SendPlain(fd, tx + m[1], m[2], m[3])) sent++;
        }
        i += n;
        continue;
      }
      for (size_t k = 0; k < n; k++) {
        const uint32_t* m = d + 4 * (i + k);
        Prepare(k, tx + m[1], m[2], m[3]);
      }
      size_t done = 0;
      while (done < n) {
        int r = sendmmsg(fd, msgs_ + done, static_cast<unsigned>(n - done), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0) {
          if (errno == EINTR) continue;
          int e = errno;
          const uint32_t* m = d + 4 * (i + done);
          if (m[3] > 0 && m[2] > m[3] && RefusesGso(e)) {
            // The kernel will not segment for us: cut this one and every later one here.
            gso_off_errno_ = e;
            if (SendPlain(fd, tx + m[1], m[2], m[3])) sent++;
            for (done++; done < n; done++) {
              const uint32_t* mm = d + 4 * (i + done);
              if (SendPlain(fd, tx + mm[1], mm[2], mm[3])) sent++;
            }
          } else {
            last_error_ = e;
            done++;  // this message is lost; go on with the next
          }
          continue;
        }
        done += static_cast<size_t>(r);
        sent += static_cast<size_t>(r);
      }
      i += n;
    }
    return Napi::Number::New(env, static_cast<double>(sent));
  }

  // One message without UDP_SEGMENT: cut at gso when it is a burst.
  bool SendPlain(int fd, uint8_t* p, uint32_t len, uint32_t gso) {
    if (len == 0) return SendZero(fd);
    return SendCut(fd, p, len, gso > 0 && len > gso ? gso : len);
  }

  bool SendZero(int fd) {
    ssize_t r;
    do r = send(fd, "", 0, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0) last_error_ = errno;
    return r >= 0;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Teardown();
    return info.Env().Undefined();
  }

  void Teardown() {
    if (closed_) return;
    closed_ = true;
    if (polling_) {
      uv_poll_stop(poll_);
      polling_ = false;
      Unref();
    }
    ClosePolledFd(&poll_, &epfd_);
    if (hook_ && !in_teardown_) napi_remove_env_cleanup_hook(env_, &UdpSockets::OnEnvTeardown, this);
    hook_ = false;
    rx_.Reset();
    tx_.Reset();
    meta_.Reset();
    on_batch_.Reset();
  }

  static void OnEnvTeardown(void* arg) {
    UdpSockets* self = static_cast<UdpSockets*>(arg);
    self->in_teardown_ = true;
    self->Teardown();
  }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    UdpSockets* self = static_cast<UdpSockets*>(h->data);
    Napi::Env env(self->env_);
    Napi::HandleScope scope(env);
    if (status < 0 || self->closed_) return;
    self->ReadReady();
  }

  // Calls JS with the `count` messages in meta; false when we were closed meanwhile.
  bool Deliver(size_t count) {
    Napi::Env env(env_);
    on_batch_.MakeCallback(Value(), {Napi::Number::New(env, static_cast<double>(count))}, *ctx_);
    if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
    return !closed_;
  }

  void ReadReady() {
    struct epoll_event evs[kMaxEvents];
    int n;
    do n = epoll_wait(epfd_, evs, kMaxEvents, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return;
    uint8_t* rx = static_cast<uint8_t*>(rx_.Value().Data());
    uint32_t* meta = meta_.Value().Data();
    size_t used = 0;
    int rounds = 0;
    for (int e = 0; e < n; e++) {
      uint32_t token = static_cast<uint32_t>(evs[e].data.u64);
      int fd = static_cast<int>(evs[e].data.u64 >> 32);
      for (;;) {
        if (used == kMaxMsgs) {
          if (!Deliver(used) || ++rounds == kRoundsPerWake) return;
          used = 0;
          rx = static_cast<uint8_t*>(rx_.Value().Data());
          meta = meta_.Value().Data();
        }
        size_t room = kMaxMsgs - used;
        for (size_t k = 0; k < room; k++) {
          size_t slot = used + k;
          iov_[k].iov_base = rx + slot * slot_size_;
          iov_[k].iov_len = slot_size_;
          memset(&msgs_[k], 0, sizeof msgs_[k]);
          msgs_[k].msg_hdr.msg_iov = &iov_[k];
          msgs_[k].msg_hdr.msg_iovlen = 1;
          msgs_[k].msg_hdr.msg_control = cmsg_ + k * kCmsgSpace;
          msgs_[k].msg_hdr.msg_controllen = kCmsgSpace;
        }
        int r;
        do r = recvmmsg(fd, msgs_, static_cast<unsigned>(room), MSG_DONTWAIT, nullptr);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
          if (errno != EAGAIN && errno != EWOULDBLOCK) {
            uint32_t* q = meta + 4 * used;
            q[0] = token;
            q[1] = static_cast<uint32_t>(used * slot_size_);
            q[2] = 0;
            q[3] = kErrorFlag | static_cast<uint32_t>(errno);
            used++;
          }
          break;
        }
        for (int k = 0; k < r; k++) {
          uint32_t* q = meta + 4 * (used + k);
          uint32_t len = msgs_[k].msg_len;
          uint32_t seg = len;
          for (struct cmsghdr* cm = CMSG_FIRSTHDR(&msgs_[k].msg_hdr); cm != nullptr;
               cm = CMSG_NXTHDR(&msgs_[k].msg_hdr, cm)) {
            if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
              int g = 0;
              memcpy(&g, CMSG_DATA(cm), sizeof g);
              if (g > 0) seg = static_cast<uint32_t>(g);
            }
          }
          q[0] = token;
          q[1] = static_cast<uint32_t>((used + k) * slot_size_);
          q[2] = len;
          q[3] = seg;
        }
        used += static_cast<size_t>(r);
        if (static_cast<size_t>(r) < room) break;  // drained this socket
      }
    }
    if (used > 0) Deliver(used);
  }

  napi_env env_;
  int epfd_ = -1;
  uv_poll_t* poll_ = nullptr;
  Napi::AsyncContext* ctx_ = nullptr;
  bool polling_ = false, closed_ = false, hook_ = false, in_teardown_ = false;
  uint32_t slot_size_ = 0;
  int last_error_ = 0;
  int gso_off_errno_ = 0;
  double gro_sockets_ = 0;
  Napi::Reference<Napi::ArrayBuffer> rx_, tx_;
  Napi::Reference<Napi::Uint32Array> meta_;
  Napi::FunctionReference on_batch_;
  struct mmsghdr msgs_[kMaxMsgs];
  struct iovec iov_[kMaxMsgs];
  alignas(8) uint8_t cmsg_[kMaxMsgs * kCmsgSpace];
};

}  // namespace

void InitUdpSockets(Napi::Env env, Napi::Object exports) { exports.Set("UdpSockets", UdpSockets::Define(env)); }

}  // namespace usernet
