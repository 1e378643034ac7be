// Frame I/O on sockets: the VM ports (QEMU's -netdev stream and dgram) and
// the VXLAN port. Syscalls only; framing checks that decide what a frame is
// live here because they run once per byte range read, and everything else
// (what a frame means, counters, learning) is TypeScript's.
//
// StreamIo: a connected stream socket carrying frames each preceded by its
// length as a 32-bit big-endian number (QEMU's -netdev stream, passt).
// - Receive: one ring (an ArrayBuffer JS allocated once) read into with
//   read() until EAGAIN or kReadsPerWake reads; complete frames are parsed in
//   place and reported as [offset, length] pairs in `entries`, one
//   onBatch(count) call per full entries array or per read. After the call
//   the unparsed tail (less than one frame) moves to the ring's start, so the
//   ring must hold maxFrame + 4 bytes at least. A length above maxFrame ends
//   the connection (the stream cannot be resynchronised), after the frames
//   before it were delivered; a zero length is reported as an empty frame
//   for JS to count.
// - Send: JS copies length-prefixed frames into `tx` and calls send(len):
//   one send() for the batch. What the kernel does not take (a full socket
//   buffer) goes into a backlog written when the socket becomes writable;
//   while there is a backlog new batches join it, up to kBacklogCap, and
//   beyond that the whole batch is refused (-ENOBUFS) so a frame is never
//   half-written.
// - End: EOF, an error or a bad length stop polling and call
//   onClose(kind, value) once; JS then calls close() (closes the fd).
//
// DatagramIo: a datagram socket (unix SOCK_DGRAM for QEMU's -netdev dgram,
// UDP for VXLAN), one frame per datagram.
// - Receive: recvmmsg into fixed slots; meta[2i] = length, meta[2i+1] = the
//   source address length | kTruncated if the datagram did not fit; the
//   source address at addrs[i * kAddrStride]. One recvmmsg per wake-up
//   (level-triggered: more waiting wakes us again after other handles ran).
// - Send: sendmmsg of messages described as [txOffset, length, destOffset,
//   destLength] over `tx` and `dests`; returns how many went, the errno of a
//   failure in lastError.
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <vector>

#include "usernet.h"

namespace usernet {

namespace {

// Reads per wake-up before the event loop gets a turn: 8 ring-fulls (2 MiB
// with the 256 KiB ring JS allocates) keeps a bulk transfer from starving
// the other ports while amortising the JS call.
constexpr int kReadsPerWake = 8;
// A stalled reader (a paused VM) may leave this much unsent before batches
// are refused; 4 MiB is about 3,000 full-size frames, a few ms at line rate.
constexpr size_t kBacklogCap = 4u << 20;
constexpr size_t kMaxDgramBatch = 64;
constexpr size_t kAddrStride = 128;  // sizeof(struct sockaddr_storage)
constexpr uint32_t kTruncated = 0x10000;

bool GetBuffer(napi_env env, const Napi::Reference<Napi::ArrayBuffer>& ref, uint8_t** data, size_t* len) {
  void* d = nullptr;
  size_t l = 0;
  if (ref.IsEmpty() || napi_get_arraybuffer_info(env, ref.Value(), &d, &l) != napi_ok || d == nullptr) return false;
  *data = static_cast<uint8_t*>(d);
  *len = l;
  return true;
}

bool GetU32(napi_env env, const Napi::Reference<Napi::Uint32Array>& ref, uint32_t** data, size_t* len) {
  void* d = nullptr;
  size_t l = 0;
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  if (ref.IsEmpty() || napi_get_typedarray_info(env, ref.Value(), &t, &l, &d, &ab, &off) != napi_ok || d == nullptr) return false;
  *data = static_cast<uint32_t*>(d);
  *len = l;
  return true;
}

void ReportPending(napi_env raw) {
  Napi::Env env(raw);
  if (!env.IsExceptionPending()) return;
  Napi::Error e = env.GetAndClearPendingException();
  napi_fatal_exception(raw, e.Value());
}

class StreamIo : public Napi::ObjectWrap<StreamIo> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "StreamIo",
                       {
                           InstanceMethod<&StreamIo::Start>("start"),
                           InstanceMethod<&StreamIo::Send>("send"),
                           InstanceMethod<&StreamIo::Close>("close"),
                           InstanceAccessor<&StreamIo::Backlog>("backlog"),
                       });
  }

  explicit StreamIo(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StreamIo>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      Napi::TypeError::New(env, "StreamIo options must be an object").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value fd = o.Get("fd"), rx = o.Get("rx"), tx = o.Get("tx"), max_frame = o.Get("maxFrame"),
                entries = o.Get("entries"), on_batch = o.Get("onBatch"), on_close = o.Get("onClose");
    if (!fd.IsNumber() || !rx.IsArrayBuffer() || !tx.IsArrayBuffer() || !max_frame.IsNumber() ||
        !entries.IsTypedArray() || entries.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
        !on_batch.IsFunction() || !on_close.IsFunction()) {
      Napi::TypeError::New(env, "StreamIo options: fd, rx, tx, maxFrame, entries, onBatch, onClose").ThrowAsJavaScriptException();
      return;
    }
    max_frame_ = max_frame.As<Napi::Number>().Uint32Value();
    if (rx.As<Napi::ArrayBuffer>().ByteLength() < max_frame_ + 4 || entries.As<Napi::Uint32Array>().ElementLength() < 2) {
      Napi::TypeError::New(env, "StreamIo: rx must hold maxFrame + 4 bytes, entries at least one pair").ThrowAsJavaScriptException();
      return;
    }
    rx_ = Napi::Persistent(rx.As<Napi::ArrayBuffer>());
    tx_ = Napi::Persistent(tx.As<Napi::ArrayBuffer>());
    entries_ = Napi::Persistent(entries.As<Napi::Uint32Array>());
    on_batch_ = Napi::Persistent(on_batch.As<Napi::Function>());
    on_close_ = Napi::Persistent(on_close.As<Napi::Function>());
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    fd_ = fd.As<Napi::Number>().Int32Value();
    poll_ = new uv_poll_t;
    int rc = uv_poll_init(loop, poll_, fd_);
    if (rc < 0) {
      delete poll_;
      poll_ = nullptr;
      fd_ = -1;
      closed_ = true;
      ErrnoError(env, -rc, "uv_poll_init").ThrowAsJavaScriptException();
      return;
    }
    poll_->data = this;
    ctx_ = new Napi::AsyncContext(env, "UsernetStreamIo");
    napi_add_env_cleanup_hook(env, &StreamIo::OnEnvTeardown, this);
    hook_ = true;
  }

  ~StreamIo() override {
    Shutdown();
    delete ctx_;
  }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (!closed_ && !ended_ && !polling_) Arm(info.Env());
    return info.Env().Undefined();
  }

  void Arm(Napi::Env env) {
    int events = UV_READABLE | (backlog_.empty() ? 0 : UV_WRITABLE);
    int rc = uv_poll_start(poll_, events, &StreamIo::OnPoll);
    if (rc < 0) {
      ErrnoError(env, -rc, "uv_poll_start").ThrowAsJavaScriptException();
      return;
    }
    if (!polling_) Ref();
    polling_ = true;
  }

  void StopPolling() {
    if (!polling_) return;
    uv_poll_stop(poll_);
    polling_ = false;
    Unref();
  }

  Napi::Value Backlog(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(backlog_.size())); }

  // send(len): writes tx[0, len); returns len (taken, maybe into the backlog) or -errno.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t len = info[0].As<Napi::Number>().Uint32Value();
    uint8_t* tx = nullptr;
    size_t txlen = 0;
    if (closed_ || ended_) return Napi::Number::New(env, -EPIPE);
    if (!GetBuffer(env_, tx_, &tx, &txlen) || len > txlen) {
      Napi::RangeError::New(env, "send: length beyond tx").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!backlog_.empty()) {
      if (backlog_.size() + len > kBacklogCap) return Napi::Number::New(env, -ENOBUFS);
      backlog_.insert(backlog_.end(), tx, tx + len);
      return Napi::Number::New(env, len);
    }
    ssize_t n;
    do n = send(fd_, tx, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) return Napi::Number::New(env, -errno);
      n = 0;
    }
    if (static_cast<size_t>(n) < len) {
      if (backlog_.capacity() == 0) backlog_.reserve(kBacklogCap);
      backlog_.insert(backlog_.end(), tx + n, tx + len);
      if (polling_) Arm(env);
    }
    return Napi::Number::New(env, len);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  void Shutdown() {
    if (closed_) return;
    closed_ = true;
    StopPolling();
    ClosePolledFd(&poll_, &fd_);
    if (hook_ && !in_teardown_) napi_remove_env_cleanup_hook(env_, &StreamIo::OnEnvTeardown, this);
    hook_ = false;
    rx_.Reset();
    tx_.Reset();
    entries_.Reset();
    on_batch_.Reset();
    on_close_.Reset();
    std::vector<uint8_t>().swap(backlog_);
  }

  static void OnEnvTeardown(void* arg) {
    StreamIo* self = static_cast<StreamIo*>(arg);
    self->in_teardown_ = true;
    self->Shutdown();
  }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    StreamIo* self = static_cast<StreamIo*>(h->data);
    Napi::Env env(self->env_);
    Napi::HandleScope scope(env);
    if (status < 0) {
      self->End(1, -status);
      return;
    }
    if ((events & UV_WRITABLE) != 0) self->WriteBacklog();
    if (!self->closed_ && !self->ended_ && (events & UV_READABLE) != 0) self->ReadSome();
  }

  void WriteBacklog() {
    while (!backlog_.empty()) {
      ssize_t n = send(fd_, backlog_.data(), backlog_.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        End(1, errno);
        return;
      }
      backlog_.erase(backlog_.begin(), backlog_.begin() + n);
    }
    if (polling_) Arm(Napi::Env(env_));
  }

  void ReadSome() {
    uint8_t* rx = nullptr;
    size_t cap = 0;
    if (!GetBuffer(env_, rx_, &rx, &cap) || cap < max_frame_ + 4) {
      End(1, EFAULT);
      return;
    }
    for (int reads = 0; reads < kReadsPerWake; reads++) {
      ssize_t n = read(fd_, rx + end_, cap - end_);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) End(1, errno);
        return;
      }
      if (n == 0) {
        // A frame cut off by the peer's close is counted by JS ("truncated").
        End(end_ > start_ ? 3 : 0, static_cast<uint32_t>(end_ - start_));
        return;
      }
      end_ += static_cast<size_t>(n);
      if (!Parse(rx)) return;
      if (start_ == end_) {
        start_ = end_ = 0;
      } else if (start_ > 0) {
        memmove(rx, rx + start_, end_ - start_);
        end_ -= start_;
        start_ = 0;
      }
      // JS may have closed us from onBatch, or the rx area may have been taken.
      if (closed_ || ended_ || !GetBuffer(env_, rx_, &rx, &cap)) return;
    }
  }

  // Delivers every complete frame in [start_, end_); false once the connection ended.
  bool Parse(uint8_t* rx) {
    uint32_t* ent = nullptr;
    size_t ent_len = 0;
    if (!GetU32(env_, entries_, &ent, &ent_len)) {
      End(1, EFAULT);
      return false;
    }
    size_t max_pairs = ent_len / 2;
    size_t count = 0;
    while (end_ - start_ >= 4) {
      const uint8_t* p = rx + start_;
      uint32_t len = (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
      if (len > max_frame_) {
        if (count > 0 && !Deliver(count)) return false;
        End(2, len);
        return false;
      }
      if (end_ - start_ - 4 < len) break;
      ent[2 * count] = static_cast<uint32_t>(start_ + 4);
      ent[2 * count + 1] = len;
      count++;
      start_ += 4 + len;
      if (count == max_pairs) {
        if (!Deliver(count)) return false;
        count = 0;
        if (!GetU32(env_, entries_, &ent, &ent_len)) return false;
      }
    }
    if (count > 0 && !Deliver(count)) return false;
    return true;
  }

  bool Deliver(size_t count) {
    Napi::Env env(env_);
    on_batch_.MakeCallback(Value(), {Napi::Number::New(env, static_cast<double>(count))}, *ctx_);
    ReportPending(env_);
    return !closed_ && !ended_;
  }

  // kind: 0 EOF, 1 errno, 2 bad length, 3 EOF inside a frame.
  void End(int kind, uint32_t value) {
    if (closed_ || ended_) return;
    ended_ = true;
    StopPolling();
    Napi::Env env(env_);
    Napi::Object self = Value();
    on_close_.MakeCallback(self, {Napi::Number::New(env, kind), Napi::Number::New(env, value)}, *ctx_);
    ReportPending(env_);
  }

  napi_env env_;
  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  Napi::AsyncContext* ctx_ = nullptr;
  bool polling_ = false, closed_ = false, ended_ = false, hook_ = false, in_teardown_ = false;
  uint32_t max_frame_ = 0;
  size_t start_ = 0, end_ = 0;
  std::vector<uint8_t> backlog_;
  Napi::Reference<Napi::ArrayBuffer> rx_, tx_;
  Napi::Reference<Napi::Uint32Array> entries_;
  Napi::FunctionReference on_batch_, on_close_;
};

class DatagramIo : public Napi::ObjectWrap<DatagramIo> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "DatagramIo",
                       {
                           InstanceMethod<&DatagramIo::Start>("start"),
                           InstanceMethod<&DatagramIo::Send>("send"),
                           InstanceMethod<&DatagramIo::Close>("close"),
                           InstanceAccessor<&DatagramIo::LastError>("lastError"),
                       });
  }

  explicit DatagramIo(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DatagramIo>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      Napi::TypeError::New(env, "DatagramIo options must be an object").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value fd = o.Get("fd"), rx = o.Get("rx"), slot_size = o.Get("slotSize"), slot_count = o.Get("slotCount"),
                meta = o.Get("meta"), addrs = o.Get("addrs"), tx = o.Get("tx"), dests = o.Get("dests"),
                on_batch = o.Get("onBatch"), on_error = o.Get("onError");
    if (!fd.IsNumber() || !rx.IsArrayBuffer() || !slot_size.IsNumber() || !slot_count.IsNumber() ||
        !meta.IsTypedArray() || meta.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array || !addrs.IsArrayBuffer() ||
        !tx.IsArrayBuffer() || !dests.IsArrayBuffer() || !on_batch.IsFunction() || !on_error.IsFunction()) {
      Napi::TypeError::New(env, "DatagramIo options: fd, rx, slotSize, slotCount, meta, addrs, tx, dests, onBatch, onError")
          .ThrowAsJavaScriptException();
      return;
    }
    slot_size_ = slot_size.As<Napi::Number>().Uint32Value();
    slot_count_ = slot_count.As<Napi::Number>().Uint32Value();
    if (slot_size_ == 0 || slot_count_ == 0 || slot_count_ > kMaxDgramBatch ||
        rx.As<Napi::ArrayBuffer>().ByteLength() / slot_size_ < slot_count_ ||
        meta.As<Napi::Uint32Array>().ElementLength() < 2 * slot_count_ ||
        addrs.As<Napi::ArrayBuffer>().ByteLength() < kAddrStride * slot_count_) {
      Napi::TypeError::New(env, "DatagramIo: rx, meta or addrs too small for slotCount (at most 64)").ThrowAsJavaScriptException();
      return;
    }
    rx_ = Napi::Persistent(rx.As<Napi::ArrayBuffer>());
    addrs_ = Napi::Persistent(addrs.As<Napi::ArrayBuffer>());
    tx_ = Napi::Persistent(tx.As<Napi::ArrayBuffer>());
    dests_ = Napi::Persistent(dests.As<Napi::ArrayBuffer>());
    meta_ = Napi::Persistent(meta.As<Napi::Uint32Array>());
    on_batch_ = Napi::Persistent(on_batch.As<Napi::Function>());
    on_error_ = Napi::Persistent(on_error.As<Napi::Function>());
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    fd_ = fd.As<Napi::Number>().Int32Value();
    poll_ = new uv_poll_t;
    int rc = uv_poll_init(loop, poll_, fd_);
    if (rc < 0) {
      delete poll_;
      poll_ = nullptr;
      fd_ = -1;
      closed_ = true;
      ErrnoError(env, -rc, "uv_poll_init").ThrowAsJavaScriptException();
      return;
    }
    poll_->data = this;
    ctx_ = new Napi::AsyncContext(env, "UsernetDatagramIo");
    napi_add_env_cleanup_hook(env, &DatagramIo::OnEnvTeardown, this);
    hook_ = true;
  }

  ~DatagramIo() override {
    Shutdown();
    delete ctx_;
  }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_ || failed_ || polling_) return env.Undefined();
    int rc = uv_poll_start(poll_, UV_READABLE, &DatagramIo::OnPoll);
    if (rc < 0) {
      ErrnoError(env, -rc, "uv_poll_start").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    polling_ = true;
    Ref();
    return env.Undefined();
  }

  void StopPolling() {
    if (!polling_) return;
    uv_poll_stop(poll_);
    polling_ = false;
    Unref();
  }

  Napi::Value LastError(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), last_error_); }

  // send(desc, count): desc holds [txOffset, length, destOffset, destLength] per message.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array || !info[1].IsNumber()) {
      Napi::TypeError::New(env, "send(desc: Uint32Array, count: number)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    last_error_ = 0;
    if (closed_) {
      last_error_ = EBADF;
      return Napi::Number::New(env, 0);
    }
    Napi::Uint32Array desc = info[0].As<Napi::Uint32Array>();
    const uint32_t* d = desc.Data();
    size_t count = info[1].As<Napi::Number>().Uint32Value();
    if (count * 4 > desc.ElementLength()) {
      Napi::RangeError::New(env, "send: count beyond desc").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    uint8_t *tx = nullptr, *dests = nullptr;
    size_t txlen = 0, dlen = 0;
    if (!GetBuffer(env_, tx_, &tx, &txlen) || !GetBuffer(env_, dests_, &dests, &dlen)) {
      last_error_ = EFAULT;
      return Napi::Number::New(env, 0);
    }
    size_t sent = 0;
    while (sent < count) {
      size_t n = count - sent < kMaxDgramBatch ? count - sent : kMaxDgramBatch;
      for (size_t i = 0; i < n; i++) {
        const uint32_t* m = d + 4 * (sent + i);
        if (uint64_t(m[0]) + m[1] > txlen || uint64_t(m[2]) + m[3] > dlen || m[3] > kAddrStride) {
          Napi::RangeError::New(env, "send: descriptor out of bounds").ThrowAsJavaScriptException();
          return env.Undefined();
        }
        iov_[i].iov_base = tx + m[0];
        iov_[i].iov_len = m[1];
        memset(&msgs_[i], 0, sizeof msgs_[i]);
        msgs_[i].msg_hdr.msg_iov = &iov_[i];
        msgs_[i].msg_hdr.msg_iovlen = 1;
        msgs_[i].msg_hdr.msg_name = dests + m[2];
        msgs_[i].msg_hdr.msg_namelen = m[3];
      }
      int r = sendmmsg(fd_, msgs_, static_cast<unsigned>(n), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (r < 0) {
        if (errno == EINTR) continue;
        last_error_ = errno;
        break;
      }
      sent += static_cast<size_t>(r);
      if (static_cast<size_t>(r) < n) {
        // The next message failed: learn why with a send of it alone.
        const uint32_t* m = d + 4 * sent;
        ssize_t s = sendto(fd_, tx + m[0], m[1], MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(dests + m[2]), m[3]);
        if (s >= 0) {
          sent++;
          continue;
        }
        last_error_ = errno;
        break;
      }
    }
    return Napi::Number::New(env, static_cast<double>(sent));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  void Shutdown() {
    if (closed_) return;
    closed_ = true;
    StopPolling();
    ClosePolledFd(&poll_, &fd_);
    if (hook_ && !in_teardown_) napi_remove_env_cleanup_hook(env_, &DatagramIo::OnEnvTeardown, this);
    hook_ = false;
    rx_.Reset();
    addrs_.Reset();
    tx_.Reset();
    dests_.Reset();
    meta_.Reset();
    on_batch_.Reset();
    on_error_.Reset();
  }

  static void OnEnvTeardown(void* arg) {
    DatagramIo* self = static_cast<DatagramIo*>(arg);
    self->in_teardown_ = true;
    self->Shutdown();
  }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    DatagramIo* self = static_cast<DatagramIo*>(h->data);
    Napi::Env env(self->env_);
    Napi::HandleScope scope(env);
    if (status < 0) {
      self->Fail(-status, "uv_poll");
      return;
    }
    if ((events & UV_READABLE) != 0) self->ReadBatch();
  }

  void ReadBatch() {
    uint8_t *rx = nullptr, *addrs = nullptr;
    size_t rxlen = 0, alen = 0, mlen = 0;
    uint32_t* meta = nullptr;
    if (!GetBuffer(env_, rx_, &rx, &rxlen) || !GetBuffer(env_, addrs_, &addrs, &alen) || !GetU32(env_, meta_, &meta, &mlen) ||
        rxlen / slot_size_ < slot_count_ || alen < kAddrStride * slot_count_ || mlen < 2 * slot_count_) {
      Fail(EFAULT, "recvmmsg");
      return;
    }
    for (size_t i = 0; i < slot_count_; i++) {
      iov_[i].iov_base = rx + i * slot_size_;
      iov_[i].iov_len = slot_size_;
      memset(&msgs_[i], 0, sizeof msgs_[i]);
      msgs_[i].msg_hdr.msg_iov = &iov_[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
      msgs_[i].msg_hdr.msg_name = addrs + i * kAddrStride;
      msgs_[i].msg_hdr.msg_namelen = kAddrStride;
    }
    int n;
    do n = recvmmsg(fd_, msgs_, static_cast<unsigned>(slot_count_), MSG_DONTWAIT, nullptr);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      // A UDP socket may carry an ICMP error for an earlier send: not fatal.
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNREFUSED || errno == EHOSTUNREACH ||
          errno == ENETUNREACH || errno == EMSGSIZE)
        return;
      Fail(errno, "recvmmsg");
      return;
    }
    for (int i = 0; i < n; i++) {
      meta[2 * i] = msgs_[i].msg_len;
      meta[2 * i + 1] = msgs_[i].msg_hdr.msg_namelen | ((msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0 ? kTruncated : 0);
    }
    if (n == 0) return;
    Napi::Env env(env_);
    on_batch_.MakeCallback(Value(), {Napi::Number::New(env, n)}, *ctx_);
    ReportPending(env_);
  }

  void Fail(int err, const char* syscall) {
    if (closed_ || failed_) return;
    failed_ = true;
    StopPolling();
    Napi::Env env(env_);
    Napi::Object self = Value();
    Napi::Error e = ErrnoError(env, err, syscall);
    on_error_.MakeCallback(self, {e.Value()}, *ctx_);
    ReportPending(env_);
  }

  napi_env env_;
  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  Napi::AsyncContext* ctx_ = nullptr;
  bool polling_ = false, closed_ = false, failed_ = false, hook_ = false, in_teardown_ = false;
  size_t slot_size_ = 0, slot_count_ = 0;
  int last_error_ = 0;
  Napi::Reference<Napi::ArrayBuffer> rx_, addrs_, tx_, dests_;
  Napi::Reference<Napi::Uint32Array> meta_;
  Napi::FunctionReference on_batch_, on_error_;
  struct mmsghdr msgs_[kMaxDgramBatch];
  struct iovec iov_[kMaxDgramBatch];
};

void SetBufferSizes(int fd) {
  // Best effort: a burst of frames from a VM or a remote VTEP should wait in
  // the kernel, not be dropped, while JS handles the previous batch.
  int size = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

// bindDatagram(sockaddr: Uint8Array): a non-blocking datagram socket of the
// address's family bound to it; returns [fd, boundPort] (port 0 for unix).
Napi::Value BindDatagram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(env, "bindDatagram(sockaddr: Uint8Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array a = info[0].As<Napi::Uint8Array>();
  sockaddr_storage ss;
  if (a.ElementLength() < sizeof(sa_family_t) || a.ElementLength() > sizeof ss) {
    Napi::TypeError::New(env, "bindDatagram: bad sockaddr length").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  memset(&ss, 0, sizeof ss);
  memcpy(&ss, a.Data(), a.ElementLength());
  socklen_t len = static_cast<socklen_t>(a.ElementLength());
  int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ErrnoError(env, errno, "socket").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  SetBufferSizes(fd);
  if (ss.ss_family == AF_INET) {
    // Outer packets above the path MTU are fragmented, as the kernel's vxlan does by default.
    int v = IP_PMTUDISC_DONT;
    setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof v);
  } else if (ss.ss_family == AF_INET6) {
    int v = IPV6_PMTUDISC_DONT;
    setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v, sizeof v);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    int e = errno;
    close(fd);
    ErrnoError(env, e, "bind").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int port = 0;
  sockaddr_storage got;
  socklen_t glen = sizeof got;
  if (ss.ss_family != AF_UNIX && getsockname(fd, reinterpret_cast<sockaddr*>(&got), &glen) == 0) {
    port = ntohs(got.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&got)->sin_port
                                          : reinterpret_cast<sockaddr_in6*>(&got)->sin6_port);
  }
  Napi::Array r = Napi::Array::New(env, 2);
  r.Set(0u, Napi::Number::New(env, fd));
  r.Set(1u, Napi::Number::New(env, port));
  return r;
}

// dupNonBlocking(fd): a close-on-exec, non-blocking duplicate (a connection
// Node accepted, taken over by a StreamIo).
Napi::Value DupNonBlocking(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = fcntl(info[0].As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 3);
  if (fd < 0) {
    ErrnoError(env, errno, "fcntl(F_DUPFD_CLOEXEC)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    int e = errno;
    close(fd);
    ErrnoError(env, e, "fcntl(F_SETFL)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitSocketIo(Napi::Env env, Napi::Object exports) {
  exports.Set("StreamIo", StreamIo::Define(env));
  exports.Set("DatagramIo", DatagramIo::Define(env));
  exports.Set("bindDatagram", Napi::Function::New(env, BindDatagram, "bindDatagram"));
  exports.Set("dupNonBlocking", Napi::Function::New(env, DupNonBlocking, "dupNonBlocking"));
}

}  // namespace usernet
