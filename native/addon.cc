// Module entry point, and the single place where an errno becomes a JS error.
// Errors look like Node's own system errors (code, errno < 0, syscall) so the
// TypeScript side can wrap them without knowing which call produced them.
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cstdio>

#include "usernet.h"

namespace usernet {

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall) {
  // uv_err_name takes libuv's negative codes, which equal -errno on Linux.
  const char* code = uv_err_name(-err);
  char text[128];
  // GNU strerror_r may return a static string instead of filling `text`.
  const char* desc = strerror_r(err, text, sizeof text);
  char msg[256];
  snprintf(msg, sizeof msg, "%s failed: %s (%s)", syscall, code, desc);
  Napi::Error e = Napi::Error::New(env, msg);
  Napi::Object o = e.Value();
  o.Set("code", Napi::String::New(env, code));
  o.Set("errno", Napi::Number::New(env, -err));
  o.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

bool ReadFixedString(Napi::Env env, Napi::Value v, char* out, size_t cap, const char* what) {
  if (!v.IsString()) {
    Napi::TypeError::New(env, std::string(what) + " must be a string").ThrowAsJavaScriptException();
    return false;
  }
  size_t len = 0;
  napi_get_value_string_utf8(env, v, nullptr, 0, &len);
  if (len == 0 || len >= cap) {
    Napi::TypeError::New(env, std::string(what) + " has a bad length").ThrowAsJavaScriptException();
    return false;
  }
  napi_get_value_string_utf8(env, v, out, cap, &len);
  return true;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitTap(env, exports);
  InitIfconfig(env, exports);
  InitNetns(env, exports);
  InitFrameIo(env, exports);
  InitPing(env, exports);
  InitSandbox(env, exports);
  InitExec(env, exports);
  InitTcpSockets(env, exports);
  InitSocketIo(env, exports);
  InitUdpSockets(env, exports);
  return exports;
}

}  // namespace usernet

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return usernet::Init(env, exports); }

NODE_API_MODULE(usernet_native, InitModule)

namespace usernet {

void ClosePolledFd(uv_poll_t** poll, int* fd) {
  if (*poll != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(*poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    *poll = nullptr;
  }
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

}  // namespace usernet
