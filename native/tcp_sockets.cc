// Host TCP sockets for the NAT, without Node's net.Socket.
//
// How it works: one epoll set holds every host TCP socket of the NAT, each
// registered once, edge-triggered, for input, output and peer shutdown, with
// a 32-bit token JS chose (epoll_ctl ADD is the only epoll_ctl a connection
// costs; close(2) takes it out). A uv_poll_t on the Node loop watches the
// epoll fd itself; when it is readable we collect up to kMaxEvents ready
// sockets with one epoll_wait(0), write [token, events] pairs into the
// Uint32Array JS registered, and call onEvents(count) once: a wake-up costs
// one JS call however many sockets it concerns.
//
// Everything else is a plain synchronous syscall JS calls with an fd:
// connect (non-blocking), status (is that connect done? loopback connects
// usually are by the time connect returns, which saves a loop turn), read
// into / write from a typed array JS owns (the connection's rings, so no
// copy and no Buffer per read), shutdown, close (abort: RST via SO_LINGER 0),
// listen and accept. Results are a count or -errno, never an exception, since
// a failing socket is a network event. Edge-triggered means JS reads (writes)
// until EAGAIN or until it has no room (nothing more to write), and asks again
// when it has: a new edge comes only with new data or new room.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "usernet.h"

namespace usernet {

namespace {

constexpr int kMaxEvents = 256;
constexpr uint32_t kWatch = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

union SockAddr {
  struct sockaddr sa;
  struct sockaddr_in in4;
  struct sockaddr_in6 in6;
};

// Parses a numeric address of `family` (4 or 6) into `out`; false if it is not one.
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

// The bytes of a typed array argument between off and off + len, or nullptr (TypeError pending).
uint8_t* Span(Napi::Env env, const Napi::CallbackInfo& info, size_t at, size_t* len) {
  if (!info[at].IsTypedArray() || !info[at + 1].IsNumber() || !info[at + 2].IsNumber()) {
    Napi::TypeError::New(env, "expected (fd, bytes: Uint8Array, offset, length)").ThrowAsJavaScriptException();
    return nullptr;
  }
  Napi::TypedArray ta = info[at].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(env, "bytes must be a Uint8Array").ThrowAsJavaScriptException();
    return nullptr;
  }
  double off = info[at + 1].As<Napi::Number>().DoubleValue();
  double n = info[at + 2].As<Napi::Number>().DoubleValue();
  size_t size = ta.ByteLength();
  if (!(off >= 0) || !(n >= 0) || off + n > static_cast<double>(size)) {
    Napi::RangeError::New(env, "offset/length outside the array").ThrowAsJavaScriptException();
    return nullptr;
  }
  *len = static_cast<size_t>(n);
  uint8_t* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  return base + static_cast<size_t>(off);
}

int FdArg(const Napi::CallbackInfo& info) { return info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1; }

class TcpSockets : public Napi::ObjectWrap<TcpSockets> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TcpSockets",
                       {
                           InstanceMethod<&TcpSockets::Start>("start"),
                           InstanceMethod<&TcpSockets::Connect>("connect"),
                           InstanceMethod<&TcpSockets::Status>("status"),
                           InstanceMethod<&TcpSockets::Listen>("listen"),
                           InstanceMethod<&TcpSockets::Accept>("accept"),
                           InstanceMethod<&TcpSockets::LocalPort>("localPort"),
                           InstanceMethod<&TcpSockets::Read>("read"),
                           InstanceMethod<&TcpSockets::Write>("write"),
                           InstanceMethod<&TcpSockets::Shutdown>("shutdown"),
                           InstanceMethod<&TcpSockets::CloseSocket>("closeSocket"),
                           InstanceMethod<&TcpSockets::Close>("close"),
                           InstanceMethod<&TcpSockets::Spin>("spin"),
                           InstanceMethod<&TcpSockets::PollNow>("pollNow"),
                       });
  }

  explicit TcpSockets(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TcpSockets>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      Napi::TypeError::New(env, "TcpSockets options must be an object").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value events = o.Get("events"), on_events = o.Get("onEvents");
    if (!events.IsTypedArray() || events.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
        events.As<Napi::Uint32Array>().ElementLength() < 2 * kMaxEvents || !on_events.IsFunction()) {
      Napi::TypeError::New(env, "TcpSockets options: events (Uint32Array of 512), onEvents")
          .ThrowAsJavaScriptException();
      return;
    }
    events_ = Napi::Persistent(events.As<Napi::Uint32Array>());
    on_events_ = Napi::Persistent(on_events.As<Napi::Function>());
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
    ctx_ = new Napi::AsyncContext(env, "UsernetTcpSockets");
    napi_add_env_cleanup_hook(env, &TcpSockets::OnEnvTeardown, this);
    hook_ = true;
  }

  ~TcpSockets() override {
    Teardown();
    delete ctx_;
  }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_ || polling_) return env.Undefined();
    int rc = uv_poll_start(poll_, UV_READABLE, &TcpSockets::OnPoll);
    if (rc < 0) {
      ErrnoError(env, -rc, "uv_poll_start").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    polling_ = true;
    // While polling, the epoll set may hold sockets: keep ourselves alive.
    Ref();
    return env.Undefined();
  }

  // Makes a non-blocking TCP socket of `family` with `token`, registered in the set; -errno on failure.
  int NewSocket(int family, uint32_t token) {
    int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return Watch(fd, token, kWatch) < 0 ? CloseWith(fd, errno) : fd;
  }

  int Watch(int fd, uint32_t token, uint32_t events) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = token;
    return epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  }

  static int CloseWith(int fd, int err) {
    close(fd);
    return -err;
  }

  // The (token, family, host, port) every socket-making call starts with; false with a
  // pending JS exception when they are malformed (`usage` names the call).
  bool ReadEndpoint(const Napi::CallbackInfo& info, const char* usage, uint32_t* token, int* family, SockAddr* addr,
                    socklen_t* len) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !info[1].IsNumber() || !info[3].IsNumber()) {
      Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
      return false;
    }
    *token = info[0].As<Napi::Number>().Uint32Value();
    *family = info[1].As<Napi::Number>().Int32Value();
    int port = info[3].As<Napi::Number>().Int32Value();
    if (port < 0 || port > 65535) {
      Napi::RangeError::New(env, "port out of range").ThrowAsJavaScriptException();
      return false;
    }
    return ParseAddr(env, info[2], *family, port, addr, len);
  }

  // connect(token, family, host, port, localHost | null) -> fd | -errno
  Napi::Value Connect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t token = 0;
    int family = 0;
    SockAddr to, from;
    socklen_t to_len = 0, from_len = 0;
    if (!ReadEndpoint(info, "connect(token, family, host, port, local)", &token, &family, &to, &to_len))
      return env.Undefined();
    bool bind_local = !info[4].IsNull() && !info[4].IsUndefined();
    if (bind_local && !ParseAddr(env, info[4], family, 0, &from, &from_len)) return env.Undefined();
    if (closed_) return Napi::Number::New(env, -EBADF);
    int fd = NewSocket(family, token);
    if (fd < 0) return Napi::Number::New(env, fd);
    if (bind_local && bind(fd, &from.sa, from_len) < 0) return Napi::Number::New(env, CloseWith(fd, errno));
    if (connect(fd, &to.sa, to_len) < 0 && errno != EINPROGRESS) return Napi::Number::New(env, CloseWith(fd, errno));
    return Napi::Number::New(env, fd);
  }

  // status(fd) -> 0 connected | -EINPROGRESS | -errno (the connect failed)
  Napi::Value Status(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = FdArg(info);
    struct pollfd p = {fd, POLLOUT, 0};
    int rc = poll(&p, 1, 0);
    if (rc < 0) return Napi::Number::New(env, -errno);
    // Writable with no error or hang-up is a finished connect: no SO_ERROR to fetch.
    if (rc == 1 && (p.revents & (POLLOUT | POLLERR | POLLHUP)) == POLLOUT) return Napi::Number::New(env, 0);
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return Napi::Number::New(env, -errno);
    if (err != 0) return Napi::Number::New(env, -err);
    if (rc == 0 || (p.revents & POLLOUT) == 0) return Napi::Number::New(env, -EINPROGRESS);
    return Napi::Number::New(env, 0);
  }

  // listen(token, family, host, port, backlog) -> fd | -errno
  Napi::Value Listen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t token = 0;
    int family = 0;
    SockAddr at;
    socklen_t at_len = 0;
    const char* usage = "listen(token, family, host, port, backlog)";
    if (!ReadEndpoint(info, usage, &token, &family, &at, &at_len)) return env.Undefined();
    if (!info[4].IsNumber()) {
      Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (closed_) return Napi::Number::New(env, -EBADF);
    int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Napi::Number::New(env, -errno);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, &at.sa, at_len) < 0 || listen(fd, info[4].As<Napi::Number>().Int32Value()) < 0 ||
        Watch(fd, token, EPOLLIN | EPOLLET) < 0)
      return Napi::Number::New(env, CloseWith(fd, errno));
    return Napi::Number::New(env, fd);
  }

  // accept(listenFd, token) -> fd | -errno (-EAGAIN: none waiting)
  Napi::Value Accept(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int lfd = FdArg(info);
    uint32_t token = info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
    int fd;
    do fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) return Napi::Number::New(env, -errno);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (Watch(fd, token, kWatch) < 0) return Napi::Number::New(env, CloseWith(fd, errno));
    return Napi::Number::New(env, fd);
  }

  // localPort(fd) -> the bound port | -errno (listen on port 0)
  Napi::Value LocalPort(const Napi::CallbackInfo& info) {
    SockAddr a;
    socklen_t len = sizeof a;
    if (getsockname(FdArg(info), &a.sa, &len) < 0) return Napi::Number::New(info.Env(), -errno);
    int port = ntohs(a.sa.sa_family == AF_INET6 ? a.in6.sin6_port : a.in4.sin_port);
    return Napi::Number::New(info.Env(), port);
  }

  // read(fd, bytes, offset, length) -> n | 0 at EOF | -errno
  Napi::Value Read(const Napi::CallbackInfo& info) { return Transfer(info, false); }

  // write(fd, bytes, offset, length) -> n | -errno
  Napi::Value Write(const Napi::CallbackInfo& info) { return Transfer(info, true); }

  Napi::Value Transfer(const Napi::CallbackInfo& info, bool writing) {
    Napi::Env env = info.Env();
    size_t len = 0;
    uint8_t* p = Span(env, info, 1, &len);
    if (p == nullptr) return env.Undefined();
    int fd = FdArg(info);
    ssize_t n;
    do n = writing ? send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT) : read(fd, p, len);
    while (n < 0 && errno == EINTR);
    return Napi::Number::New(env, n < 0 ? -errno : static_cast<double>(n));
  }

  // shutdown(fd) -> 0 | -errno: ends our sending side (FIN after the queued bytes).
  Napi::Value Shutdown(const Napi::CallbackInfo& info) {
    int rc = shutdown(FdArg(info), SHUT_WR);
    return Napi::Number::New(info.Env(), rc < 0 ? -errno : 0);
  }

  // closeSocket(fd, abort) -> 0 | -errno; abort sends a RST instead of a FIN.
  Napi::Value CloseSocket(const Napi::CallbackInfo& info) {
    int fd = FdArg(info);
    if (info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value()) {
      struct linger l = {1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    int rc = close(fd);
    return Napi::Number::New(info.Env(), rc < 0 ? -errno : 0);
  }

  // spin(fds: Int32Array, count, maxMicros) -> 1 once our set or one of fds is readable, 0 after maxMicros.
  // Busy-polls without sleeping, so an answer expected within microseconds is picked up by
  // the next loop turn without waking an idle CPU (which costs tens of microseconds in a VM).
  Napi::Value Spin(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        !info[1].IsNumber() || !info[2].IsNumber()) {
      Napi::TypeError::New(env, "spin(fds: Int32Array, count, maxMicros)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Int32Array fds = info[0].As<Napi::Int32Array>();
    size_t count = info[1].As<Napi::Number>().Uint32Value();
    if (count > fds.ElementLength() || count > 15) {
      Napi::RangeError::New(env, "spin: count").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (closed_) return Napi::Number::New(env, 0);
    struct pollfd p[16];
    p[0] = {epfd_, POLLIN, 0};
    for (size_t i = 0; i < count; i++) p[i + 1] = {fds[i], POLLIN, 0};
    int64_t max_ns = static_cast<int64_t>(info[2].As<Napi::Number>().DoubleValue() * 1000);
    uint64_t start = uv_hrtime();
    do {
      if (poll(p, count + 1, 0) > 0) {
        // Bit 0: our sockets; bit i + 1: fds[i].
        uint32_t ready = 0;
        for (size_t i = 0; i <= count; i++)
          if ((p[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0) ready |= 1u << i;
        return Napi::Number::New(env, ready);
      }
    } while (static_cast<int64_t>(uv_hrtime() - start) < max_ns);
    return Napi::Number::New(env, 0);
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
    if (hook_ && !in_teardown_) napi_remove_env_cleanup_hook(env_, &TcpSockets::OnEnvTeardown, this);
    hook_ = false;
    // No callback after close: drop the strong references (see FrameIo::Shutdown).
    events_.Reset();
    on_events_.Reset();
  }

  static void OnEnvTeardown(void* arg) {
    TcpSockets* self = static_cast<TcpSockets*>(arg);
    self->in_teardown_ = true;
    self->Teardown();
  }

  /** Takes the ready sockets into the events array; returns how many. */
  int Collect() {
    struct epoll_event evs[kMaxEvents];
    int n;
    do n = epoll_wait(epfd_, evs, kMaxEvents, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return 0;
    uint32_t* d = events_.Value().Data();
    for (int i = 0; i < n; i++) {
      d[2 * i] = static_cast<uint32_t>(evs[i].data.u64);
      d[2 * i + 1] = evs[i].events;
    }
    return n;
  }

  /** JS asks (after a busy poll saw our sockets ready): the ready sockets now, as the event loop would hand them. */
  Napi::Value PollNow(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) return Napi::Number::New(env, 0);
    return Napi::Number::New(env, Collect());
  }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    TcpSockets* self = static_cast<TcpSockets*>(h->data);
    Napi::Env env(self->env_);
    Napi::HandleScope scope(env);
    if (status < 0 || self->closed_) return;
    int n = self->Collect();
    if (n <= 0) return;
    self->on_events_.MakeCallback(self->Value(), {Napi::Number::New(env, n)}, *self->ctx_);
    if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
  }

  napi_env env_;
  int epfd_ = -1;
  uv_poll_t* poll_ = nullptr;
  Napi::AsyncContext* ctx_ = nullptr;
  bool polling_ = false;
  bool closed_ = false;
  bool hook_ = false;
  bool in_teardown_ = false;
  Napi::Reference<Napi::Uint32Array> events_;
  Napi::FunctionReference on_events_;
};

// Whether epoll reports a TCP peer's FIN as EPOLLRDHUP. Linux always has;
// gVisor's netstack did not before its POLLRDHUP fix (release-20230717.0,
// gvisor #6015): there a FIN that arrives with or after the last bytes is only
// an EPOLLIN, so the reader cannot stop at a short read and wait for an edge
// that announces it. A loopback pair, the accepted end shuts down its sending
// side, and a level-triggered epoll_wait on the other end looks at the bits:
// nothing but that FIN can make it readable. Any failure answers false (read on
// to EAGAIN: correct everywhere, one read more per short read).
bool ProbeRdhup() {
  bool rdhup = false;
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int a = -1;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  SockAddr addr;
  memset(&addr, 0, sizeof addr);
  addr.in4.sin_family = AF_INET;
  addr.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr.in4;
  if (l >= 0 && c >= 0 && ep >= 0 && bind(l, &addr.sa, len) == 0 && listen(l, 1) == 0 &&
      getsockname(l, &addr.sa, &len) == 0 && (connect(c, &addr.sa, len) == 0 || errno == EINPROGRESS)) {
    struct pollfd p = {l, POLLIN, 0};
    // Bounded waits: loopback answers at once; a second covers a loaded machine.
    if (poll(&p, 1, 1000) == 1) a = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLRDHUP;
    if (a >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) == 0 && shutdown(a, SHUT_WR) == 0) {
      struct epoll_event got;
      int n;
      do n = epoll_wait(ep, &got, 1, 1000);
      while (n < 0 && errno == EINTR);
      rdhup = n == 1 && (got.events & EPOLLRDHUP) != 0;
    }
  }
  for (int fd : {l, c, a, ep}) {
    if (fd >= 0) close(fd);
  }
  return rdhup;
}

Napi::Value TcpReportsRdhup(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), ProbeRdhup()); }

}  // namespace

void InitTcpSockets(Napi::Env env, Napi::Object exports) {
  exports.Set("TcpSockets", TcpSockets::Define(env));
  exports.Set("tcpReportsRdhup", Napi::Function::New(env, TcpReportsRdhup, "tcpReportsRdhup"));
}

}  // namespace usernet
