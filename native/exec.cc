// execve(2) for the Node process itself: replaces the whole process image,
// keeping its PID, its credentials and every fd without FD_CLOEXEC. The fds
// the caller names in keepFds lose FD_CLOEXEC first: Node marks inherited fds
// 3 and up close-on-exec at start-up (those are exactly the ready and exit
// fds a slirp4netns client hands over), and libuv re-opens a tty stdio fd
// close-on-exec; everything Node opens itself stays close-on-exec.
//
// Why: a multithreaded process cannot setns(CLONE_NEWUSER), and a parent that
// tracks our PID (rootlesskit) must keep seeing the same process. So the
// slirp4netns front end execs a single-threaded launcher in place, which
// joins the user namespace and execs node again (src/slirp4netns/).
//
// The kernel ends every other thread as part of a successful execve; the
// calling thread's signal mask survives it, so it is emptied first (and put
// back when execve fails) lest the new program start with SIGTERM blocked.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "usernet.h"

namespace usernet {

namespace {

// An array of strings without NUL bytes; false with a pending TypeError otherwise.
bool ReadStringArray(Napi::Env env, Napi::Value v, const char* what, std::vector<std::string>* out) {
  if (!v.IsArray()) {
    Napi::TypeError::New(env, std::string(what) + " must be an array of strings").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsString()) {
      Napi::TypeError::New(env, std::string(what) + " must be an array of strings").ThrowAsJavaScriptException();
      return false;
    }
    std::string s = e.As<Napi::String>().Utf8Value();
    if (s.find('\0') != std::string::npos) {
      Napi::TypeError::New(env, std::string(what) + " must not contain NUL bytes").ThrowAsJavaScriptException();
      return false;
    }
    out->push_back(std::move(s));
  }
  return true;
}

std::vector<char*> Pointers(std::vector<std::string>& v) {
  std::vector<char*> p;
  p.reserve(v.size() + 1);
  for (std::string& s : v) p.push_back(&s[0]);
  p.push_back(nullptr);
  return p;
}

// execve(file, argv, env, keepFds): returns only by throwing.
Napi::Value Execve(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    Napi::TypeError::New(env, "file must be a string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string file = info[0].As<Napi::String>().Utf8Value();
  std::vector<std::string> argv;
  std::vector<std::string> envv;
  if (!ReadStringArray(env, info[1], "argv", &argv) || !ReadStringArray(env, info[2], "env", &envv)) return env.Undefined();
  std::vector<int> keep;
  if (!info[3].IsArray()) {
    Napi::TypeError::New(env, "keepFds must be an array of fds").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array keep_js = info[3].As<Napi::Array>();
  for (uint32_t i = 0; i < keep_js.Length(); i++) {
    Napi::Value v = keep_js.Get(i);
    if (!v.IsNumber()) {
      Napi::TypeError::New(env, "keepFds must be an array of fds").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    keep.push_back(v.As<Napi::Number>().Int32Value());
  }
  // Old descriptor flags, put back if execve fails.
  std::vector<int> old_flags(keep.size(), -1);
  for (size_t i = 0; i < keep.size(); i++) {
    int fl = fcntl(keep[i], F_GETFD);
    if (fl < 0) {
      int err = errno;
      for (size_t j = 0; j < i; j++) fcntl(keep[j], F_SETFD, old_flags[j]);
      ErrnoError(env, err, "fcntl(F_GETFD)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    old_flags[i] = fl;
    if ((fl & FD_CLOEXEC) != 0) fcntl(keep[i], F_SETFD, fl & ~FD_CLOEXEC);
  }
  std::vector<char*> argp = Pointers(argv);
  std::vector<char*> envp = Pointers(envv);
  sigset_t none;
  sigset_t old;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, &old);
  execve(file.c_str(), argp.data(), envp.data());
  int err = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  for (size_t i = 0; i < keep.size(); i++) fcntl(keep[i], F_SETFD, old_flags[i]);
  ErrnoError(env, err, "execve").ThrowAsJavaScriptException();
  return env.Undefined();
}

}  // namespace

void InitExec(Napi::Env env, Napi::Object exports) {
  exports.Set("execve", Napi::Function::New(env, Execve, "execve"));
}

}  // namespace usernet
