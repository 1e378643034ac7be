// Batched frame I/O on one tap fd: the only code on the per-frame path.
//
// How it works: a uv_poll_t on the Node loop watches the fd. When it is
// readable we read() frames into consecutive fixed-size slots of the rx
// ArrayBuffer until EAGAIN, the slots run out or kMaxBatchBytes were read,
// write each length into the lengths array, and call onBatch(count) once, so
// a burst costs one JS call instead of one per frame. uv_poll is level-triggered: frames left in the
// kernel queue after a full batch make the next loop iteration fire again,
// which lets other handles run in between.
//
// Sending is synchronous: JS describes frames as [buffer, offset, length,
// more] descriptors over registered ArrayBuffers, and each frame goes out
// with one writev (a virtio-net header and a payload from different buffers
// need no copy). A tap write never blocks (O_NONBLOCK) and takes a frame whole
// or not at all, so the first failure ends the batch and the caller decides.
//
// Lifetime: while polling, the JS object holds a strong reference to itself so
// it cannot be collected with a live poll. close() (idempotent), garbage
// collection and environment teardown all end in Shutdown(): stop the poll,
// uv_close the handle (freed in its close callback, since this object may be
// gone by then) and close the fd.
#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include <vector>

#include "usernet.h"

namespace usernet {

namespace {

// Registered buffers are few (rx, the gateway's tx arena, a few per port);
// the cap keeps the per-send "already checked" set in one 64-bit mask.
constexpr size_t kMaxBuffers = 64;
// A frame is a header plus a few payload pieces; 64 leaves room to spare
// while keeping the iovec array on the object instead of the heap.
constexpr size_t kMaxIov = 64;
// A batch also ends after 1 MiB (16 GSO super-frames): the guest's payload
// is read here and written to the host socket from these slots at the end of
// the batch (stack/tcp/receive-buffer.ts), and a 1 MiB batch is still in the
// core's L2 cache then, where 64 super-frames (4 MiB) had left it. Small
// frames never reach it (64 full 1500-byte frames are 96 KiB). A/B at MTU
// 65520 ns->host (bench/PROFILE.md §10): CPU per GB -2 to -12 %, throughput
// within the spread.
constexpr size_t kMaxBatchBytes = 1024 * 1024;

struct Registered {
  Napi::Reference<Napi::ArrayBuffer> ref;
  uint8_t* data = nullptr;
  size_t len = 0;
};

class FrameIo : public Napi::ObjectWrap<FrameIo> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FrameIo",
                       {
                           InstanceMethod<&FrameIo::RegisterBuffer>("registerBuffer"),
                           InstanceMethod<&FrameIo::UnregisterBuffer>("unregisterBuffer"),
                           InstanceMethod<&FrameIo::Start>("start"),
                           InstanceMethod<&FrameIo::Pause>("pause"),
                           InstanceMethod<&FrameIo::Resume>("resume"),
                           InstanceMethod<&FrameIo::Send>("send"),
                           InstanceMethod<&FrameIo::ReadNow>("readNow"),
                           InstanceMethod<&FrameIo::Close>("close"),
                           InstanceAccessor<&FrameIo::LastError>("lastError"),
                       });
  }

  explicit FrameIo(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FrameIo>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) {
      Napi::TypeError::New(env, "FrameIo options must be an object").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value fd = o.Get("fd"), rx = o.Get("rx"), slot_size = o.Get("slotSize"), slot_count = o.Get("slotCount"),
                lengths = o.Get("lengths"), on_batch = o.Get("onBatch"), on_error = o.Get("onError");
    if (!fd.IsNumber() || !rx.IsArrayBuffer() || !slot_size.IsNumber() || !slot_count.IsNumber() ||
        !lengths.IsTypedArray() || lengths.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
        !on_batch.IsFunction() || !on_error.IsFunction()) {
      Napi::TypeError::New(env, "FrameIo options: fd, rx, slotSize, slotCount, lengths, onBatch, onError")
          .ThrowAsJavaScriptException();
      return;
    }
    slot_size_ = slot_size.As<Napi::Number>().Uint32Value();
    slot_count_ = slot_count.As<Napi::Number>().Uint32Value();
    Napi::ArrayBuffer rxb = rx.As<Napi::ArrayBuffer>();
    if (slot_size_ == 0 || slot_count_ == 0 || rxb.ByteLength() / slot_size_ < slot_count_ ||
        lengths.As<Napi::Uint32Array>().ElementLength() < slot_count_) {
      Napi::TypeError::New(env, "FrameIo: rx or lengths too small for slotSize * slotCount")
          .ThrowAsJavaScriptException();
      return;
    }
    bufs_.reserve(kMaxBuffers);
    AddBuffer(rxb);
    lengths_ = Napi::Persistent(lengths.As<Napi::Uint32Array>());
    on_batch_ = Napi::Persistent(on_batch.As<Napi::Function>());
    on_error_ = Napi::Persistent(on_error.As<Napi::Function>());

    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    int rc = uv_poll_init(loop, poll_, fd.As<Napi::Number>().Int32Value());
    if (rc < 0) {
      delete poll_;
      poll_ = nullptr;
      closed_ = true;
      ErrnoError(env, -rc, "uv_poll_init").ThrowAsJavaScriptException();
      return;
    }
    poll_->data = this;
    fd_ = fd.As<Napi::Number>().Int32Value();
    ctx_ = new Napi::AsyncContext(env, "UsernetFrameIo");
    napi_add_env_cleanup_hook(env, &FrameIo::OnEnvTeardown, this);
    hook_ = true;
  }

  ~FrameIo() override {
    Shutdown();
    delete ctx_;
  }

 private:
  void AddBuffer(Napi::ArrayBuffer ab) {
    Registered r;
    r.ref = Napi::Persistent(ab);
    r.data = static_cast<uint8_t*>(ab.Data());
    r.len = ab.ByteLength();
    bufs_.push_back(std::move(r));
  }

  // Re-reads a buffer's address and size: a transferred (detached) buffer
  // reports length 0, so it fails the bounds checks instead of being used.
  void Refresh(Registered& r) {
    void* data = nullptr;
    size_t len = 0;
    if (r.ref.IsEmpty() || napi_get_arraybuffer_info(env_, r.ref.Value(), &data, &len) != napi_ok) {
      data = nullptr;
      len = 0;
    }
    r.data = static_cast<uint8_t*>(data);
    r.len = data == nullptr ? 0 : len;
  }

  Napi::Value RegisterBuffer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArrayBuffer()) {
      Napi::TypeError::New(env, "registerBuffer takes an ArrayBuffer").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (closed_) return Napi::Number::New(env, -1);
    for (size_t i = 1; i < bufs_.size(); i++) {
      if (!bufs_[i].ref.IsEmpty()) continue;
      Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
      bufs_[i].ref = Napi::Persistent(ab);
      bufs_[i].data = static_cast<uint8_t*>(ab.Data());
      bufs_[i].len = ab.ByteLength();
      return Napi::Number::New(env, static_cast<double>(i));
    }
    if (bufs_.size() >= kMaxBuffers) {
      Napi::RangeError::New(env, "too many registered buffers (max 64)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    AddBuffer(info[0].As<Napi::ArrayBuffer>());
    return Napi::Number::New(env, static_cast<double>(bufs_.size() - 1));
  }

  // Drops a registration (not the receive area, index 0): descriptors naming
  // it fail from now on, and the ArrayBuffer is no longer held from here.
  // The index is reused by a later registerBuffer, so a bridge whose ports
  // come and go keeps within kMaxBuffers.
  Napi::Value UnregisterBuffer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) {
      Napi::TypeError::New(env, "unregisterBuffer takes a buffer index").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    double idx = info[0].As<Napi::Number>().DoubleValue();
    if (!(idx >= 1 && idx < static_cast<double>(bufs_.size())) || idx != static_cast<double>(static_cast<size_t>(idx))) {
      Napi::RangeError::New(env, "unregisterBuffer: no such buffer index").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Registered& r = bufs_[static_cast<size_t>(idx)];
    r.ref.Reset();
    r.data = nullptr;
    r.len = 0;
    return env.Undefined();
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    StartPolling(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Resume(const Napi::CallbackInfo& info) {
    StartPolling(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Pause(const Napi::CallbackInfo& info) {
    StopPolling();
    return info.Env().Undefined();
  }

  // After close() or a reported error there is nothing to resume: no-op.
  void StartPolling(Napi::Env env) {
    if (closed_ || failed_ || polling_) return;
    int rc = uv_poll_start(poll_, UV_READABLE, &FrameIo::OnPoll);
    if (rc < 0) {
      ErrnoError(env, -rc, "uv_poll_start").ThrowAsJavaScriptException();
      return;
    }
    polling_ = true;
    Ref();
  }

  void StopPolling() {
    if (!polling_) return;
    uv_poll_stop(poll_);
    polling_ = false;
    Unref();
  }

  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
        !info[1].IsNumber()) {
      Napi::TypeError::New(env, "send(desc: Uint32Array, count: number)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint32Array desc = info[0].As<Napi::Uint32Array>();
    const uint32_t* d = desc.Data();
    size_t words = desc.ElementLength();
    uint32_t count = info[1].As<Napi::Number>().Uint32Value();
    last_error_ = 0;
    if (closed_) {
      last_error_ = EBADF;
      return Napi::Number::New(env, 0);
    }
    uint64_t refreshed = 0;
    size_t w = 0;
    uint32_t sent = 0;
    for (; sent < count; sent++) {
      // Gather one frame; every descriptor is checked before anything of the
      // frame is written, so a bad one never sends a partial frame.
      int niov = 0;
      for (;;) {
        if (w + 4 > words) return BadDescriptor(env, "descriptors end inside a frame");
        uint32_t idx = d[w], off = d[w + 1], len = d[w + 2], more = d[w + 3];
        w += 4;
        if (idx >= bufs_.size()) return BadDescriptor(env, "unknown buffer index");
        Registered& r = bufs_[idx];
        if ((refreshed & (1ull << idx)) == 0) {
          Refresh(r);
          refreshed |= 1ull << idx;
        }
        if (static_cast<uint64_t>(off) + len > r.len) return BadDescriptor(env, "descriptor out of buffer bounds");
        if (niov == static_cast<int>(kMaxIov)) return BadDescriptor(env, "too many descriptors in one frame");
        iov_[niov].iov_base = r.data + off;
        iov_[niov].iov_len = len;
        niov++;
        if (more == 0) break;
      }
      ssize_t n;
      do n = writev(fd_, iov_, niov);
      while (n < 0 && errno == EINTR);
      if (n < 0) {
        last_error_ = errno;
        break;
      }
    }
    return Napi::Number::New(env, sent);
  }

  // A malformed descriptor is a bug in the caller, not a network event.
  Napi::Value BadDescriptor(Napi::Env env, const char* why) {
    Napi::TypeError::New(env, std::string("send: ") + why).ThrowAsJavaScriptException();
    return env.Undefined();
  }

  Napi::Value LastError(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), last_error_); }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  void Shutdown() {
    if (closed_) return;
    closed_ = true;
    StopPolling();
    ClosePolledFd(&poll_, &fd_);
    if (hook_ && !in_teardown_) napi_remove_env_cleanup_hook(env_, &FrameIo::OnEnvTeardown, this);
    hook_ = false;
    // Nothing is called or touched after close: drop the strong references. The callbacks
    // close over the JS object that wraps this one, so while they are held that cycle (and
    // every buffer in it) can never be collected.
    bufs_.clear();
    lengths_.Reset();
    on_batch_.Reset();
    on_error_.Reset();
  }

  static void OnEnvTeardown(void* arg) {
    FrameIo* self = static_cast<FrameIo*>(arg);
    self->in_teardown_ = true;
    self->Shutdown();
  }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    FrameIo* self = static_cast<FrameIo*>(h->data);
    Napi::Env env(self->env_);
    Napi::HandleScope scope(env);
    if (status < 0) {
      self->Fail(-status, "uv_poll");
      return;
    }
    if ((events & UV_READABLE) != 0) self->ReadBatch(false);
  }

  /**
   * JS asks (after a busy poll saw the tap readable): reads a batch now and returns its
   * frame count without calling onBatch; JS handles it as it would the callback's.
   */
  Napi::Value ReadNow(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_ || failed_ || !polling_) return Napi::Number::New(env, 0);
    return Napi::Number::New(env, static_cast<double>(ReadBatch(true)));
  }

  /** Reads up to slot_count_ frames; `direct`: return the count instead of calling onBatch. */
  size_t ReadBatch(bool direct) {
    Registered& rx = bufs_[0];
    Refresh(rx);
    void* ldata = nullptr;
    size_t llen = 0;
    napi_typedarray_type ltype;
    napi_value lab;
    size_t loff;
    if (napi_get_typedarray_info(env_, lengths_.Value(), &ltype, &llen, &ldata, &lab, &loff) != napi_ok) ldata = nullptr;
    if (rx.data == nullptr || rx.len / slot_size_ < slot_count_ || ldata == nullptr || llen < slot_count_) {
      // JS transferred the memory it promised us: stop rather than write into freed memory.
      Fail(EFAULT, "read");
      return 0;
    }
    uint32_t* lengths = static_cast<uint32_t*>(ldata);
    size_t count = 0;
    size_t bytes = 0;
    int err = 0;
    while (count < slot_count_ && bytes < kMaxBatchBytes) {
      ssize_t n = read(fd_, rx.data + count * slot_size_, slot_size_);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
        break;
      }
      if (n == 0) {
        // A tap never returns 0 for a frame; treat it as the device going away
        // so a level-triggered poll does not spin on it.
        err = ENODEV;
        break;
      }
      lengths[count++] = static_cast<uint32_t>(n);
      bytes += static_cast<size_t>(n);
    }
    if (direct) {
      // The frames read are JS's to handle first; a read error comes back on the next wake-up.
      return count;
    }
    if (count > 0) {
      Napi::Value arg = Napi::Number::New(env_, static_cast<double>(count));
      on_batch_.MakeCallback(Value(), {arg}, *ctx_);
      ReportPendingException();
    }
    if (err != 0) Fail(err, "read");
    return count;
  }

  void Fail(int err, const char* syscall) {
    if (closed_ || failed_) return;
    failed_ = true;
    Napi::Env env(env_);
    Napi::Object self = Value();
    StopPolling();
    Napi::Error e = ErrnoError(env, err, syscall);
    on_error_.MakeCallback(self, {e.Value()}, *ctx_);
    ReportPendingException();
  }

  // We are called from the event loop, not from JS, so nobody up the stack
  // would see an exception the callback threw: raise it as uncaught, the way
  // Node does for its own callbacks.
  void ReportPendingException() {
    Napi::Env env(env_);
    if (!env.IsExceptionPending()) return;
    Napi::Error e = env.GetAndClearPendingException();
    napi_fatal_exception(env_, e.Value());
  }

  napi_env env_;
  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  Napi::AsyncContext* ctx_ = nullptr;
  bool polling_ = false;
  bool closed_ = false;
  bool failed_ = false;
  bool hook_ = false;
  bool in_teardown_ = false;
  size_t slot_size_ = 0;
  size_t slot_count_ = 0;
  int last_error_ = 0;
  std::vector<Registered> bufs_;
  Napi::Reference<Napi::Uint32Array> lengths_;
  Napi::FunctionReference on_batch_;
  Napi::FunctionReference on_error_;
  struct iovec iov_[kMaxIov];
};

}  // namespace

void InitFrameIo(Napi::Env env, Napi::Object exports) { exports.Set("FrameIo", FrameIo::Define(env)); }

}  // namespace usernet
