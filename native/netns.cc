// Opening a tap inside another network namespace.
//
// How it works: setns(CLONE_NEWNET) would move only the calling thread, and
// setns(CLONE_NEWUSER) is refused outright in a multithreaded process such as
// Node. So we fork a single-threaded helper that enters (or creates) the
// namespaces, opens and configures the tap there, and passes the fd back over
// a unix socket with SCM_RIGHTS. A tap fd stays bound to the namespace it was
// opened in, so the parent can use it from here.
//
// Between fork and _exit the child may only make async-signal-safe calls: the
// parent has other threads, and one of them may hold the malloc lock at the
// moment of fork. Everything the child needs (paths, map strings, ifreq data)
// is therefore prepared before fork in a fixed-size NsPlan, and the child
// reports errors as an errno plus a fixed step name in a fixed-size NsReply.
// The helper is killed if the parent dies (PR_SET_PDEATHSIG) and reaped with
// waitpid before the call returns, so it never outlives the call.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>

#include "usernet.h"

namespace usernet {

namespace {

struct NsPlan {
  bool create = false;
  bool create_userns = false;
  bool has_userns = false;
  bool userns_optional = false;
  bool has_netns = false;
  char userns_path[PATH_MAX] = {0};
  char netns_path[PATH_MAX] = {0};
  char uid_map[48] = {0};
  char gid_map[48] = {0};
  size_t uid_map_len = 0;
  size_t gid_map_len = 0;
  TapRequest tap;
  bool has_config = false;
  IfPlan config;
};

// The child's answer; the fds travel beside it as SCM_RIGHTS.
struct NsReply {
  int32_t err = 0;
  uint32_t offloads = 0;
  uint8_t attached = 0;
  uint8_t nfds = 0;
  char step[48] = {0};
  // The tap's actual mode, and why the vnet header was given up (if it was).
  uint8_t vnet_hdr = 0;
  int32_t vnet_errno = 0;
  char vnet_step[32] = {0};
  // Tap queues among the fds (they come first), and why multi-queue was refused.
  uint8_t nqueues = 0;
  int32_t mq_errno = 0;
  char mq_step[40] = {0};
  // Filled when a configuration was asked for, also when it failed.
  uint8_t has_report = 0;
  IfReport report;
};

constexpr int kMaxFds = kMaxTapQueues + 2;  // tap queues, netns, userns

void copy_step(char* dst, size_t cap, const char* src) {
  size_t i = 0;
  for (; i + 1 < cap && src[i] != '\0'; i++) dst[i] = src[i];
  dst[i] = '\0';
}

int write_file(const char* path, const char* text, size_t len, SysStatus* st, const char* open_step,
               const char* write_step) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return st->Fail(errno, open_step);
  ssize_t n = write(fd, text, len);
  int e = errno;
  close(fd);
  if (n != static_cast<ssize_t>(len)) return st->Fail(n < 0 ? e : EIO, write_step);
  return 0;
}

// Moves the child into the target namespaces; fills fds[] with the namespace
// fds to hand back (create mode only).
int enter_namespaces(const NsPlan& p, int* fds, int* nfds, SysStatus* st) {
  if (p.create) {
    int flags = CLONE_NEWNET | (p.create_userns ? CLONE_NEWUSER : 0);
    if (unshare(flags) < 0) return st->Fail(errno, "unshare");
    if (p.create_userns) {
      // Without "deny", an unprivileged process may not write gid_map.
      if (write_file("/proc/self/setgroups", "deny", 4, st, "open(setgroups)", "write(setgroups)") < 0) return -1;
      if (write_file("/proc/self/uid_map", p.uid_map, p.uid_map_len, st, "open(uid_map)", "write(uid_map)") < 0)
        return -1;
      if (write_file("/proc/self/gid_map", p.gid_map, p.gid_map_len, st, "open(gid_map)", "write(gid_map)") < 0)
        return -1;
    }
    int net = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (net < 0) return st->Fail(errno, "open(/proc/self/ns/net)");
    fds[(*nfds)++] = net;
    if (p.create_userns) {
      int user = open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC);
      if (user < 0) return st->Fail(errno, "open(/proc/self/ns/user)");
      fds[(*nfds)++] = user;
    }
    return 0;
  }
  // Open both files before switching: after entering the user namespace we
  // may no longer be allowed to open the netns file.
  int user = -1;
  if (p.has_userns) {
    user = open(p.userns_path, O_RDONLY | O_CLOEXEC);
    if (user < 0 && !p.userns_optional) return st->Fail(errno, "open(userns)");
  }
  int net = -1;
  if (p.has_netns) {
    net = open(p.netns_path, O_RDONLY | O_CLOEXEC);
    if (net < 0) return st->Fail(errno, "open(netns)");
  }
  // Joining our own user namespace fails with EINVAL; that is why the pid
  // mode treats the user namespace as optional.
  if (user >= 0 && setns(user, CLONE_NEWUSER) < 0 && !p.userns_optional) return st->Fail(errno, "setns(user)");
  if (net >= 0 && setns(net, CLONE_NEWNET) < 0) return st->Fail(errno, "setns(net)");
  return 0;
}

[[noreturn]] void child_main(const NsPlan& p, int sock, pid_t parent) {
  // If the parent died before prctl took effect, nobody will read our reply.
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (getppid() != parent) _exit(1);

  int fds[kMaxFds];
  int nfds = 0;
  SysStatus st;
  TapResult tap;
  NsReply reply;

  int ns_fds[kMaxFds - 1] = {-1, -1};
  int ns_count = 0;
  bool ok = enter_namespaces(p, ns_fds, &ns_count, &st) == 0 && tap_open(p.tap, &tap, &st) == 0;
  if (ok && p.has_config) {
    reply.has_report = 1;
    ok = iface_apply(p.config, &reply.report, &st) == 0;
  }
  if (ok) {
    for (int i = 0; i < tap.nqueues; i++) fds[nfds++] = tap.fds[i];
    reply.nqueues = static_cast<uint8_t>(tap.nqueues);
    reply.mq_errno = tap.mq_errno;
    copy_step(reply.mq_step, sizeof reply.mq_step, tap.mq_step);
    for (int i = 0; i < ns_count; i++) fds[nfds++] = ns_fds[i];
    reply.attached = tap.attached ? 1 : 0;
    reply.offloads = tap.offloads;
    reply.vnet_hdr = tap.vnet_hdr ? 1 : 0;
    reply.vnet_errno = tap.vnet_errno;
    copy_step(reply.vnet_step, sizeof reply.vnet_step, tap.vnet_step);
    reply.nfds = static_cast<uint8_t>(nfds);
  } else {
    reply.err = st.err != 0 ? st.err : EIO;
    copy_step(reply.step, sizeof reply.step, st.step);
  }

  struct iovec iov = {&reply, sizeof reply};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  union {
    char buf[CMSG_SPACE(sizeof(int) * kMaxFds)];
    struct cmsghdr align;
  } ctl;
  if (nfds > 0) {
    memset(&ctl, 0, sizeof ctl);
    msg.msg_control = ctl.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  _exit(n == static_cast<ssize_t>(sizeof reply) ? 0 : 2);
}

bool read_plan(Napi::Env env, const Napi::Object& req, NsPlan* p) {
  Napi::Value tv = req.Get("target");
  if (!tv.IsObject()) {
    Napi::TypeError::New(env, "target must be an object").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Object t = tv.As<Napi::Object>();
  p->create = t.Get("create").ToBoolean().Value();
  Napi::Value cu = t.Get("createUserns");
  if (p->create && cu.IsObject()) {
    Napi::Object o = cu.As<Napi::Object>();
    Napi::Value uid = o.Get("uid"), gid = o.Get("gid");
    if (!uid.IsNumber() || !gid.IsNumber()) {
      Napi::TypeError::New(env, "createUserns needs numeric uid and gid").ThrowAsJavaScriptException();
      return false;
    }
    p->create_userns = true;
    // Map our own ids to root inside, one id each: all an unprivileged
    // process may write to its own maps.
    p->uid_map_len = snprintf(p->uid_map, sizeof p->uid_map, "0 %u 1\n", uid.As<Napi::Number>().Uint32Value());
    p->gid_map_len = snprintf(p->gid_map, sizeof p->gid_map, "0 %u 1\n", gid.As<Napi::Number>().Uint32Value());
  }
  if (!p->create) {
    Napi::Value pid = t.Get("pid");
    Napi::Value netns = t.Get("netnsPath");
    Napi::Value userns = t.Get("usernsPath");
    p->userns_optional = t.Get("usernsOptional").ToBoolean().Value();
    if (pid.IsNumber()) {
      int32_t n = pid.As<Napi::Number>().Int32Value();
      if (n <= 0) {
        Napi::TypeError::New(env, "pid must be positive").ThrowAsJavaScriptException();
        return false;
      }
      snprintf(p->netns_path, sizeof p->netns_path, "/proc/%d/ns/net", n);
      snprintf(p->userns_path, sizeof p->userns_path, "/proc/%d/ns/user", n);
      p->has_netns = p->has_userns = true;
      if (!userns.IsString()) p->userns_optional = true;
    }
    if (netns.IsString()) {
      if (!ReadFixedString(env, netns, p->netns_path, sizeof p->netns_path, "netnsPath")) return false;
      p->has_netns = true;
    }
    if (userns.IsString()) {
      if (!ReadFixedString(env, userns, p->userns_path, sizeof p->userns_path, "usernsPath")) return false;
      p->has_userns = true;
    }
    if (!p->has_netns) {
      Napi::TypeError::New(env, "target needs pid, netnsPath or create").ThrowAsJavaScriptException();
      return false;
    }
  }
  if (!ReadTapRequest(env, req.Get("tap"), &p->tap)) return false;
  Napi::Value cfg = req.Get("configure");
  if (!cfg.IsUndefined() && !cfg.IsNull()) {
    if (!ReadIfPlan(env, cfg, &p->config)) return false;
    p->has_config = true;
  }
  return !env.IsExceptionPending();
}

void close_all(const int* fds, int n) {
  for (int i = 0; i < n; i++) close(fds[i]);
}

}  // namespace

static Napi::Value OpenTapInNamespace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) {
    Napi::TypeError::New(env, "request must be an object").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // Large (two PATH_MAX buffers): keep it off the JS thread's stack.
  std::unique_ptr<NsPlan> plan(new NsPlan());
  if (!read_plan(env, info[0].As<Napi::Object>(), plan.get())) return env.Undefined();

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    ErrnoError(env, errno, "socketpair").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // Block every signal across fork so that no handler of the parent (libuv's
  // included) runs in the child; the child keeps them blocked until _exit.
  // SIGKILL, which PR_SET_PDEATHSIG uses, cannot be blocked.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    child_main(*plan, sv[1], parent);
  }
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    ErrnoError(env, fork_errno, "fork").ThrowAsJavaScriptException();
    return env.Undefined();
  }

  // The child answers within a few syscalls, so a blocking read is fine.
  NsReply reply;
  struct iovec iov = {&reply, sizeof reply};
  union {
    char buf[CMSG_SPACE(sizeof(int) * kMaxFds)];
    struct cmsghdr align;
  } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.buf;
  msg.msg_controllen = sizeof ctl.buf;
  ssize_t n;
  do n = recvmsg(sv[0], &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  while (n < 0 && errno == EINTR);
  int recv_errno = errno;
  close(sv[0]);

  int fds[kMaxFds];
  int nfds = 0;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int k = static_cast<int>((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < k && nfds < kMaxFds; i++) memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
  }

  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }

  if (n != static_cast<ssize_t>(sizeof reply)) {
    close_all(fds, nfds);
    // The helper died before answering (killed, or ran out of memory).
    ErrnoError(env, n < 0 ? recv_errno : EPIPE, "recvmsg(namespace helper)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (reply.err != 0) {
    close_all(fds, nfds);
    char step[sizeof reply.step + 1];
    copy_step(step, sizeof step, reply.step);
    Napi::Error e = ErrnoError(env, reply.err, step);
    if (reply.has_report) e.Value().Set("report", IfReportToJs(env, plan->config, reply.report));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int nq = reply.nqueues;
  int want = nq + (plan->create ? 1 : 0) + (plan->create_userns ? 1 : 0);
  if (nq < 1 || nq > kMaxTapQueues || nfds != want || reply.nfds != want || (msg.msg_flags & MSG_CTRUNC) != 0) {
    close_all(fds, nfds);
    ErrnoError(env, EPROTO, "recvmsg(namespace helper)").ThrowAsJavaScriptException();
    return env.Undefined();
  }

  Napi::Object r = Napi::Object::New(env);
  r.Set("fd", Napi::Number::New(env, fds[0]));
  r.Set("name", Napi::String::New(env, plan->tap.name));
  r.Set("attached", Napi::Boolean::New(env, reply.attached != 0));
  TapResult tap;
  tap.vnet_hdr = reply.vnet_hdr != 0;
  tap.offloads = reply.offloads;
  tap.vnet_errno = reply.vnet_errno;
  char vnet_step[sizeof reply.vnet_step + 1];
  copy_step(vnet_step, sizeof vnet_step, reply.vnet_step);
  tap.vnet_step = vnet_step;
  tap.nqueues = nq;
  for (int i = 0; i < nq; i++) tap.fds[i] = fds[i];
  tap.mq_errno = reply.mq_errno;
  char mq_step[sizeof reply.mq_step + 1];
  copy_step(mq_step, sizeof mq_step, reply.mq_step);
  tap.mq_step = mq_step;
  SetTapResult(env, r, tap);
  r.Set("config", reply.has_report ? Napi::Value(IfReportToJs(env, plan->config, reply.report)) : env.Null());
  r.Set("netnsFd", Napi::Number::New(env, plan->create ? fds[nq] : -1));
  r.Set("usernsFd", Napi::Number::New(env, plan->create_userns ? fds[nq + 1] : -1));
  return r;
}

void InitNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("openTapInNamespace", Napi::Function::New(env, OpenTapInNamespace, "openTapInNamespace"));
}

}  // namespace usernet
