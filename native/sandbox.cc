// Confinement of the running process (slirp4netns --enable-sandbox and
// --enable-seccomp), an fd-relative unlink for after it, and a process-exit
// watch. Thin: syscalls only; which directories to keep and when to call
// what is decided in TypeScript (src/slirp4netns/).
//
// How the sandbox works, and why it is this complicated: Node runs several
// threads (V8 platform workers, the libuv pool, the inspector's signal
// thread), and unshare(CLONE_NEWNS), pivot_root/chdir, the capability sets
// and the bounding set all belong to the calling thread only. So:
// 1. The main thread unshares its mount namespace (which also unshares its
//    fs_struct), makes every mount private, mounts a small tmpfs on the
//    scratch directory, bind-mounts the kept directories (/etc, /run) into it
//    read-only, pivot_roots into it, detaches the old root and chdirs to /.
//    Before the old root goes it keeps an fd of the new namespace and of
//    /proc/self/task (an open fd keeps its detached mount usable).
// 2. Every other thread is sent one signal with tgkill. Its handler, made of
//    raw syscalls only (async-signal-safe), unshares its own fs_struct (setns
//    into a mount namespace refuses a shared one), joins the new namespace
//    (which sets its root and cwd to the new root), drops its bounding set,
//    ambient and capability sets (all but CAP_NET_BIND_SERVICE, as
//    slirp4netns keeps it), and marks its slot done or failed.
// 3. The main thread waits up to kJoinTimeoutMs for every slot, re-reads the
//    task list for threads born meanwhile (they inherit from their creator,
//    so once every creator is done nothing new can escape), restores the
//    signal's old action, and drops its own capabilities last: it needed
//    them to act on the others' behalf.
// The signal: Node's inspector thread blocks every signal glibc lets it
// block, so a dedicated real-time signal would stay pending there forever.
// We take the highest real-time signal that no thread blocks and nobody
// handles; failing that, glibc's internal SIGSETXID (33) or SIGCANCEL (32),
// which glibc never lets a thread block, borrowed for the few milliseconds
// of the join (nothing in Node calls setuid or pthread_cancel meanwhile) and
// given back. The action is installed with rt_sigaction directly because
// glibc's sigaction() refuses its internal signals; on x86-64 that needs our
// own sa_restorer.
//
// The seccomp filter is classic BPF built here: a foreign architecture (and
// x32 numbers) gets EPERM; then a denylist of syscalls a network stack never
// needs once it runs and that matter for escapes and kernel attack surface
// (see kDenied) gets EPERM; clone3 and io_uring_setup get ENOSYS so glibc and
// libuv fall back to clone and epoll; clone with a namespace flag and
// personality other than PER_LINUX or a query get EPERM; everything else is
// allowed. It is installed with SECCOMP_FILTER_FLAG_TSYNC so every thread of
// the process gets it at once, after PR_SET_NO_NEW_PRIVS (TSYNC copies that
// to the other threads too).
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "usernet.h"

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef SECCOMP_FILTER_FLAG_TSYNC
#define SECCOMP_FILTER_FLAG_TSYNC 1
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

#if defined(__x86_64__)
#define USERNET_AUDIT_ARCH AUDIT_ARCH_X86_64
// x32 system calls carry this bit and the same audit arch as x86-64.
#define USERNET_X32_BIT 0x40000000u
// rt_sigaction on x86-64 needs a user-space trampoline that calls
// rt_sigreturn (glibc's is private); this one does only that.
extern "C" void usernet_sigreturn(void);
asm(".text\n"
    ".globl usernet_sigreturn\n"
    ".type usernet_sigreturn,@function\n"
    "usernet_sigreturn:\n"
    "  movq $15, %rax\n"  // __NR_rt_sigreturn
    "  syscall\n"
    ".size usernet_sigreturn,.-usernet_sigreturn\n");
#elif defined(__aarch64__)
#define USERNET_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "usernet's sandbox supports x86-64 and aarch64 only"
#endif

namespace usernet {

namespace {

// ---- seccomp ----------------------------------------------------------------

// Syscalls that return EPERM under the filter. Each is either an escape route
// (namespaces, mounts, root changes, ptrace and cross-process memory access,
// exec, file handles), a way to change the whole machine (modules, kexec,
// reboot, swap, clocks, hostname, accounting, quotas), or kernel attack
// surface a user-mode network stack never touches (bpf, perf, keyrings,
// userfaultfd, the new mount API, raw port I/O). None of them is on the path
// of the running stack: sockets, epoll, timers, memory and plain file I/O
// stay allowed.
const long kDenied[] = {
    __NR_execve,         __NR_execveat,          __NR_kexec_load,      __NR_kexec_file_load,
    __NR_init_module,    __NR_finit_module,      __NR_delete_module,   __NR_reboot,
    __NR_swapon,         __NR_swapoff,           __NR_mount,           __NR_umount2,
    __NR_pivot_root,     __NR_chroot,            __NR_unshare,         __NR_setns,
    __NR_ptrace,         __NR_process_vm_readv,  __NR_process_vm_writev, __NR_kcmp,
    __NR_bpf,            __NR_perf_event_open,   __NR_keyctl,          __NR_add_key,
    __NR_request_key,    __NR_syslog,            __NR_acct,            __NR_settimeofday,
    __NR_clock_settime,  __NR_clock_adjtime,     __NR_adjtimex,        __NR_open_by_handle_at,
    __NR_name_to_handle_at, __NR_userfaultfd,    __NR_quotactl,        __NR_vhangup,
    __NR_sethostname,    __NR_setdomainname,
#ifdef __NR_umount
    __NR_umount,
#endif
#ifdef __NR_iopl
    __NR_iopl,
#endif
#ifdef __NR_ioperm
    __NR_ioperm,
#endif
#ifdef __NR_lookup_dcookie
    __NR_lookup_dcookie,
#endif
#ifdef __NR_quotactl_fd
    __NR_quotactl_fd,
#endif
#ifdef __NR_pidfd_getfd
    __NR_pidfd_getfd,
#endif
#ifdef __NR_fsopen
    __NR_fsopen,         __NR_fsconfig,          __NR_fsmount,         __NR_fspick,
    __NR_move_mount,     __NR_open_tree,
#endif
#ifdef __NR_mount_setattr
    __NR_mount_setattr,
#endif
#ifdef __NR_uselib
    __NR_uselib,
#endif
#ifdef __NR__sysctl
    __NR__sysctl,
#endif
#ifdef __NR_nfsservctl
    __NR_nfsservctl,
#endif
#ifdef __NR_create_module
    __NR_create_module,
#endif
};

// ENOSYS, not EPERM: callers treat ENOSYS as "old kernel" and fall back
// (glibc's pthread_create to clone, libuv to epoll), where EPERM would fail.
const long kNoSys[] = {
#ifdef __NR_clone3
    __NR_clone3,
#endif
#ifdef __NR_io_uring_setup
    __NR_io_uring_setup,
#endif
};

constexpr uint32_t kCloneNamespaceFlags =
    CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
// personality(0xffffffff) only queries; PER_LINUX (0) is what every process has.
constexpr uint32_t kPersonalityQuery = 0xffffffffu;

sock_filter Stmt(uint16_t code, uint32_t k) { return BPF_STMT(code, k); }
sock_filter Jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { return BPF_JUMP(code, k, jt, jf); }

std::vector<sock_filter> BuildFilter() {
  const uint32_t kErrPerm = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  const uint32_t kErrNoSys = SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA);
  // Arguments are 64-bit; the low half is at the field's offset on little-endian machines.
  const uint32_t kArg0 = offsetof(struct seccomp_data, args[0]);
  std::vector<sock_filter> p;
  p.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
  p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, USERNET_AUDIT_ARCH, 1, 0));
  p.push_back(Stmt(BPF_RET | BPF_K, kErrPerm));
  p.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
#ifdef USERNET_X32_BIT
  p.push_back(Jump(BPF_JMP | BPF_JGE | BPF_K, USERNET_X32_BIT, 0, 1));
  p.push_back(Stmt(BPF_RET | BPF_K, kErrPerm));
#endif
  for (long nr : kDenied) {
    p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1));
    p.push_back(Stmt(BPF_RET | BPF_K, kErrPerm));
  }
  for (long nr : kNoSys) {
    p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1));
    p.push_back(Stmt(BPF_RET | BPF_K, kErrNoSys));
  }
  // clone(flags, ...): flags is the first argument on both architectures.
  p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4));
  p.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, kArg0));
  p.push_back(Jump(BPF_JMP | BPF_JSET | BPF_K, kCloneNamespaceFlags, 0, 1));
  p.push_back(Stmt(BPF_RET | BPF_K, kErrPerm));
  p.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_personality, 0, 5));
  p.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, kArg0));
  p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, kPersonalityQuery, 2, 0));
  p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0));
  p.push_back(Stmt(BPF_RET | BPF_K, kErrPerm));
  p.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  p.push_back(Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  return p;
}

Napi::Value InstallSeccomp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<sock_filter> filter = BuildFilter();
  struct sock_fprog prog;
  prog.len = static_cast<unsigned short>(filter.size());
  prog.filter = filter.data();
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    ErrnoError(env, errno, "prctl(PR_SET_NO_NEW_PRIVS)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  long rc = syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
  if (rc < 0) {
    ErrnoError(env, errno, "seccomp(SECCOMP_SET_MODE_FILTER, TSYNC)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (rc > 0) {
    // TSYNC names the thread it could not synchronise (one with an unrelated
    // filter); nothing was installed anywhere.
    char what[96];
    snprintf(what, sizeof what, "seccomp(TSYNC): thread %ld has another filter", rc);
    ErrnoError(env, ESRCH, what).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("instructions", Napi::Number::New(env, static_cast<double>(filter.size())));
  out.Set("denied", Napi::Number::New(env, static_cast<double>(sizeof kDenied / sizeof kDenied[0])));
  return out;
}

// ---- capabilities -------------------------------------------------------------

// Drops every capability from the calling thread but CAP_NET_BIND_SERVICE,
// as slirp4netns does: the bounding set first (that needs CAP_SETPCAP, which
// capset then removes), the ambient set, then capset leaves
// CAP_NET_BIND_SERVICE alone in the effective, permitted and inheritable
// sets when the thread had it permitted (a port forward to a host port below
// 1024 added through the API later still binds). Raw syscalls only: it also
// runs in signal handlers. Returns 0 or -errno, with *step naming the call.
int DropThreadCaps(const char** step) {
  for (int cap = 0; cap < 64; cap++) {
    if (cap == CAP_NET_BIND_SERVICE) continue;
    long r = syscall(__NR_prctl, PR_CAPBSET_READ, cap, 0, 0, 0);
    if (r < 0) break;  // EINVAL: past the last capability this kernel knows
    if (r == 0) continue;
    if (syscall(__NR_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      *step = "prctl(PR_CAPBSET_DROP)";
      return -errno;
    }
  }
  // EINVAL: a kernel without ambient capabilities has none to clear.
  if (syscall(__NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    *step = "prctl(PR_CAP_AMBIENT_CLEAR_ALL)";
    return -errno;
  }
  struct __user_cap_header_struct hdr;
  hdr.version = _LINUX_CAPABILITY_VERSION_3;
  hdr.pid = 0;
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(__NR_capget, &hdr, data) != 0) {
    *step = "capget";
    return -errno;
  }
  // CAP_NET_BIND_SERVICE is 10: it lives in the first word.
  const __u32 bind = 1u << CAP_NET_BIND_SERVICE;
  const __u32 keep = data[0].permitted & bind;
  memset(data, 0, sizeof data);
  data[0].effective = keep;
  data[0].permitted = keep;
  data[0].inheritable = keep;
  hdr.version = _LINUX_CAPABILITY_VERSION_3;
  hdr.pid = 0;
  if (syscall(__NR_capset, &hdr, data) != 0) {
    *step = "capset";
    return -errno;
  }
  // Nothing this thread execs can regain privileges (exec is filtered too
  // with --enable-seccomp, but the sandbox holds without it).
  if (syscall(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    *step = "prctl(PR_SET_NO_NEW_PRIVS)";
    return -errno;
  }
  return 0;
}

// ---- joining the other threads --------------------------------------------------

constexpr int kMaxThreads = 1024;
constexpr int kJoinTimeoutMs = 2000;

enum SlotState : int { kPending = 0, kDone = 1, kFailed = 2 };

struct Slot {
  std::atomic<pid_t> tid{0};
  std::atomic<int> state{kPending};
  std::atomic<int> err{0};
  std::atomic<const char*> step{nullptr};
};

Slot g_slots[kMaxThreads];
std::atomic<int> g_slot_count{0};
std::atomic<int> g_mntns_fd{-1};

struct KernelSigaction {
  void (*handler)(int, siginfo_t*, void*);
  unsigned long flags;
  void (*restorer)(void);
  uint64_t mask;
};

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif

int RawSigaction(int sig, const KernelSigaction* act, KernelSigaction* old) {
  return static_cast<int>(syscall(__NR_rt_sigaction, sig, act, old, sizeof(uint64_t)));
}

void JoinHandler(int, siginfo_t*, void*) {
  int saved_errno = errno;
  pid_t self = static_cast<pid_t>(syscall(__NR_gettid));
  int n = g_slot_count.load();
  Slot* slot = nullptr;
  for (int i = 0; i < n; i++) {
    if (g_slots[i].tid.load() == self) {
      slot = &g_slots[i];
      break;
    }
  }
  if (slot == nullptr || slot->state.load() != kPending) {
    errno = saved_errno;
    return;
  }
  const char* step = nullptr;
  int err = 0;
  if (syscall(__NR_unshare, CLONE_FS) != 0) {
    step = "unshare(CLONE_FS)";
    err = errno;
  } else if (syscall(__NR_setns, g_mntns_fd.load(), CLONE_NEWNS) != 0) {
    step = "setns(CLONE_NEWNS)";
    err = errno;
  } else if (syscall(__NR_chdir, "/") != 0) {
    step = "chdir(/)";
    err = errno;
  } else {
    int r = DropThreadCaps(&step);
    if (r < 0) err = -r;
  }
  if (err != 0) {
    slot->err.store(err);
    slot->step.store(step);
    slot->state.store(kFailed);
  } else {
    slot->state.store(kDone);
  }
  errno = saved_errno;
}

// Reads the thread ids from an open /proc/self/task directory (from the start).
bool ListTasks(int task_dir_fd, std::vector<pid_t>* out) {
  int fd = dup(task_dir_fd);
  if (fd < 0) return false;
  lseek(fd, 0, SEEK_SET);
  DIR* d = fdopendir(fd);
  if (d == nullptr) {
    close(fd);
    return false;
  }
  rewinddir(d);
  out->clear();
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    out->push_back(static_cast<pid_t>(atoi(e->d_name)));
  }
  closedir(d);
  return true;
}

// SigBlk of one thread, from /proc/self/task/TID/status.
bool ThreadBlocked(int task_dir_fd, pid_t tid, uint64_t* blocked) {
  char path[64];
  snprintf(path, sizeof path, "%d/status", tid);
  int fd = openat(task_dir_fd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  const char* p = strstr(buf, "SigBlk:");
  if (p == nullptr) return false;
  *blocked = strtoull(p + 7, nullptr, 16);
  return true;
}

// The signal to borrow (see the top of the file); 0 if none is usable.
int PickSignal(int task_dir_fd, const std::vector<pid_t>& tids) {
  uint64_t blocked_anywhere = 0;
  for (pid_t t : tids) {
    uint64_t b = 0;
    if (ThreadBlocked(task_dir_fd, t, &b)) blocked_anywhere |= b;
  }
  auto usable = [&](int sig) { return (blocked_anywhere & (1ull << (sig - 1))) == 0; };
  for (int sig = SIGRTMAX; sig >= SIGRTMIN; sig--) {
    if (!usable(sig)) continue;
    KernelSigaction cur;
    if (RawSigaction(sig, nullptr, &cur) != 0) continue;
    if (reinterpret_cast<uintptr_t>(cur.handler) == reinterpret_cast<uintptr_t>(SIG_DFL)) return sig;
  }
  for (int sig : {33, 32}) {
    if (sig < SIGRTMIN && usable(sig)) return sig;
  }
  return 0;
}

void SleepMs(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

bool TaskAlive(pid_t tid) { return syscall(__NR_tgkill, getpid(), tid, 0) == 0 || errno != ESRCH; }

// Sends the join signal to every thread but this one, then waits. Returns
// 0, or an errno with *step and *who describing the first failure.
int JoinOtherThreads(int task_dir_fd, int* signal_used, const char** step, pid_t* who) {
  pid_t self = static_cast<pid_t>(syscall(__NR_gettid));
  pid_t pid = getpid();
  std::vector<pid_t> tids;
  if (!ListTasks(task_dir_fd, &tids)) {
    *step = "readdir(/proc/self/task)";
    return errno != 0 ? errno : EIO;
  }
  int sig = PickSignal(task_dir_fd, tids);
  if (sig == 0) {
    *step = "no signal left unblocked in every thread";
    return EAGAIN;
  }
  *signal_used = sig;
  KernelSigaction act;
  memset(&act, 0, sizeof act);
  act.handler = JoinHandler;
  act.flags = SA_SIGINFO | SA_RESTART;
  act.mask = ~0ull;  // no other handler runs in the middle of ours
#if defined(__x86_64__)
  act.flags |= SA_RESTORER;
  act.restorer = usernet_sigreturn;
#endif
  KernelSigaction old;
  if (RawSigaction(sig, &act, &old) != 0) {
    *step = "rt_sigaction";
    return errno;
  }
  g_slot_count.store(0);
  int result = 0;
  // Threads may be created while we work (never by a thread that already
  // joined without it being covered), so repeat until a pass finds none new.
  for (int pass = 0; pass < 8 && result == 0; pass++) {
    int first_new = g_slot_count.load();
    for (pid_t t : tids) {
      if (t == self) continue;
      bool known = false;
      for (int i = 0; i < g_slot_count.load(); i++) known = known || g_slots[i].tid.load() == t;
      if (known) continue;
      int n = g_slot_count.load();
      if (n == kMaxThreads) {
        *step = "too many threads";
        result = E2BIG;
        break;
      }
      g_slots[n].state.store(kPending);
      g_slots[n].err.store(0);
      g_slots[n].step.store(nullptr);
      g_slots[n].tid.store(t);
      g_slot_count.store(n + 1);
    }
    int n = g_slot_count.load();
    if (result != 0 || n == first_new) break;
    for (int i = first_new; i < n; i++) {
      if (syscall(__NR_tgkill, pid, g_slots[i].tid.load(), sig) != 0 && errno != ESRCH) {
        *step = "tgkill";
        *who = g_slots[i].tid.load();
        result = errno;
        break;
      }
    }
    if (result != 0) break;
    for (int waited = 0;; waited++) {
      bool pending = false;
      for (int i = first_new; i < n; i++) {
        if (g_slots[i].state.load() != kPending) continue;
        if (!TaskAlive(g_slots[i].tid.load())) continue;  // exited: nothing left to confine
        pending = true;
      }
      if (!pending) break;
      if (waited >= kJoinTimeoutMs) {
        for (int i = first_new; i < n; i++) {
          if (g_slots[i].state.load() == kPending && TaskAlive(g_slots[i].tid.load())) {
            *step = "thread did not confirm in time";
            *who = g_slots[i].tid.load();
            result = ETIMEDOUT;
            break;
          }
        }
        break;
      }
      SleepMs(1);
    }
    for (int i = first_new; i < n && result == 0; i++) {
      if (g_slots[i].state.load() == kFailed) {
        *step = g_slots[i].step.load();
        *who = g_slots[i].tid.load();
        result = g_slots[i].err.load();
      }
    }
    if (result == 0 && !ListTasks(task_dir_fd, &tids)) {
      *step = "readdir(/proc/self/task)";
      result = EIO;
    }
  }
  // A thread that never ran the handler still has the signal pending: keep
  // our handler then (it is harmless), rather than have the old action
  // (glibc's, or termination) hit it later.
  bool stray = false;
  for (int i = 0; i < g_slot_count.load(); i++) {
    stray = stray || (g_slots[i].state.load() == kPending && TaskAlive(g_slots[i].tid.load()));
  }
  if (!stray) RawSigaction(sig, &old, nullptr);
  return result;
}

// Remount flags of a bind mount must keep the atime flags the mount has (a
// user namespace may have locked them); we only ever add restrictions.
unsigned long AtimeFlags(const char* path) {
  struct statvfs sv;
  if (statvfs(path, &sv) != 0) return 0;
  unsigned long f = 0;
  if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

struct SandboxFailure {
  int err = 0;
  std::string step;
};

bool Fail(SandboxFailure* f, int err, const std::string& step) {
  f->err = err;
  f->step = step;
  return false;
}

// Step 1 (see the top of the file), on the calling thread.
bool PivotIntoScratch(const std::string& scratch, const std::vector<std::string>& keep, int* mntns_fd, int* task_fd,
                      SandboxFailure* f) {
  if (unshare(CLONE_NEWNS) != 0) return Fail(f, errno, "unshare(CLONE_NEWNS)");
  *mntns_fd = open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
  if (*mntns_fd < 0) return Fail(f, errno, "open(/proc/thread-self/ns/mnt)");
  *task_fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (*task_fd < 0) return Fail(f, errno, "open(/proc/self/task)");
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return Fail(f, errno, "mount(/, MS_REC|MS_PRIVATE)");
  // A few inodes only: the directories of the kept mounts.
  if (mount("tmpfs", scratch.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=16k,nr_inodes=64,mode=0755") != 0)
    return Fail(f, errno, "mount(tmpfs, " + scratch + ")");
  for (const std::string& dir : keep) {
    std::string target = scratch + dir;
    if (mkdir(target.c_str(), 0755) != 0) return Fail(f, errno, "mkdir(" + target + ")");
    if (mount(dir.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
      return Fail(f, errno, "mount(" + dir + ", MS_BIND)");
    unsigned long ro = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | AtimeFlags(target.c_str());
    if (mount(nullptr, target.c_str(), nullptr, ro, nullptr) != 0) return Fail(f, errno, "mount(" + target + ", MS_RDONLY)");
  }
  std::string old_root = scratch + "/.old-root";
  if (mkdir(old_root.c_str(), 0700) != 0) return Fail(f, errno, "mkdir(" + old_root + ")");
  if (chdir(scratch.c_str()) != 0) return Fail(f, errno, "chdir(" + scratch + ")");
  if (syscall(__NR_pivot_root, ".", ".old-root") != 0) return Fail(f, errno, "pivot_root");
  if (chdir("/") != 0) return Fail(f, errno, "chdir(/)");
  if (umount2("/.old-root", MNT_DETACH) != 0) return Fail(f, errno, "umount2(old root, MNT_DETACH)");
  if (rmdir("/.old-root") != 0) return Fail(f, errno, "rmdir(/.old-root)");
  if (mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    return Fail(f, errno, "mount(/, MS_RDONLY)");
  return true;
}

bool IsAbsolutePath(const std::string& s) { return !s.empty() && s[0] == '/'; }

// enterSandbox({ scratch: '/tmp', keep: ['/etc', '/run'] })
//   -> { threads: number, signal: number }
Napi::Value EnterSandbox(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) {
    Napi::TypeError::New(env, "enterSandbox takes { scratch, keep }").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Value scratch_v = o.Get("scratch"), keep_v = o.Get("keep");
  if (!scratch_v.IsString() || !keep_v.IsArray()) {
    Napi::TypeError::New(env, "enterSandbox: scratch must be a string and keep an array").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string scratch = scratch_v.As<Napi::String>().Utf8Value();
  std::vector<std::string> keep;
  Napi::Array arr = keep_v.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    if (!v.IsString()) {
      Napi::TypeError::New(env, "enterSandbox: keep entries must be strings").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    keep.push_back(v.As<Napi::String>().Utf8Value());
  }
  if (!IsAbsolutePath(scratch)) {
    Napi::TypeError::New(env, "enterSandbox: scratch must be an absolute path").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  for (const std::string& k : keep) {
    if (!IsAbsolutePath(k) || k.find('/', 1) != std::string::npos) {
      Napi::TypeError::New(env, "enterSandbox: keep entries must be top-level directories such as /etc")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  int mntns_fd = -1, task_fd = -1;
  SandboxFailure f;
  bool ok = PivotIntoScratch(scratch, keep, &mntns_fd, &task_fd, &f);
  int signal_used = 0;
  int threads = 0;
  if (ok) {
    g_mntns_fd.store(mntns_fd);
    const char* step = "";
    pid_t who = 0;
    int err = JoinOtherThreads(task_fd, &signal_used, &step, &who);
    threads = g_slot_count.load();
    if (err != 0) {
      char what[160];
      snprintf(what, sizeof what, "%s (thread %d)", step != nullptr ? step : "?", static_cast<int>(who));
      ok = Fail(&f, err, what);
    }
  }
  if (ok) {
    const char* step = "";
    int r = DropThreadCaps(&step);
    if (r < 0) ok = Fail(&f, -r, step);
  }
  if (mntns_fd >= 0) close(mntns_fd);
  if (task_fd >= 0) close(task_fd);
  g_mntns_fd.store(-1);
  if (!ok) {
    // Half-confined is not a state to run in: the caller exits on this error.
    ErrnoError(env, f.err, f.step.c_str()).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("threads", Napi::Number::New(env, threads + 1));
  out.Set("signal", Napi::Number::New(env, signal_used));
  return out;
}

// unlinkAt(dirFd, name): removes name relative to a directory fd opened
// before the sandbox, whose path may no longer exist (or be read-only) here.
Napi::Value UnlinkAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsString()) {
    Napi::TypeError::New(env, "unlinkAt(dirFd: number, name: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  if (unlinkat(fd, name.c_str(), 0) != 0) {
    ErrnoError(env, errno, "unlinkat").ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// ---- process exit watch -----------------------------------------------------------

// A pidfd becomes readable when its process exits (as a zombie already), and
// it names that process only, so a recycled PID cannot fool it. Watched with
// uv_poll on the Node loop; onExit is called once, then the watch closes.
class PidWatch : public Napi::ObjectWrap<PidWatch> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PidWatch", {InstanceMethod<&PidWatch::Close>("close")});
  }

  explicit PidWatch(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PidWatch>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber() || !info[1].IsFunction()) {
      Napi::TypeError::New(env, "PidWatch(pid: number, onExit: () => void)").ThrowAsJavaScriptException();
      return;
    }
    int pid = info[0].As<Napi::Number>().Int32Value();
    int fd = static_cast<int>(syscall(__NR_pidfd_open, pid, 0));
    if (fd < 0) {
      ErrnoError(env, errno, "pidfd_open").ThrowAsJavaScriptException();
      return;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    int rc = uv_poll_init(loop, poll_, fd);
    if (rc < 0) {
      delete poll_;
      poll_ = nullptr;
      close(fd);
      ErrnoError(env, -rc, "uv_poll_init").ThrowAsJavaScriptException();
      return;
    }
    fd_ = fd;
    poll_->data = this;
    on_exit_ = Napi::Persistent(info[1].As<Napi::Function>());
    rc = uv_poll_start(poll_, UV_READABLE, &PidWatch::OnPoll);
    if (rc < 0) {
      Shutdown();
      ErrnoError(env, -rc, "uv_poll_start").ThrowAsJavaScriptException();
      return;
    }
    // Unref'd: watching a process must not keep Node alive by itself.
    uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    Ref();
    napi_add_env_cleanup_hook(env, &PidWatch::OnEnvTeardown, this);
    hook_ = true;
  }

  ~PidWatch() override { Shutdown(); }

 private:
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  void Shutdown() {
    if (poll_ != nullptr) {
      uv_poll_stop(poll_);
      Unref();
    }
    ClosePolledFd(&poll_, &fd_);
    if (hook_ && !in_teardown_) napi_remove_env_cleanup_hook(env_, &PidWatch::OnEnvTeardown, this);
    hook_ = false;
  }

  static void OnEnvTeardown(void* arg) {
    PidWatch* self = static_cast<PidWatch*>(arg);
    self->in_teardown_ = true;
    self->Shutdown();
  }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    PidWatch* self = static_cast<PidWatch*>(h->data);
    Napi::Env env(self->env_);
    Napi::HandleScope scope(env);
    Napi::FunctionReference cb = std::move(self->on_exit_);
    self->Shutdown();
    if (cb.IsEmpty()) return;
    Napi::AsyncContext ctx(env, "UsernetPidWatch");
    cb.MakeCallback(env.Global(), {}, ctx);
    if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
  }

  napi_env env_;
  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  bool hook_ = false;
  bool in_teardown_ = false;
  Napi::FunctionReference on_exit_;
};

}  // namespace

void InitSandbox(Napi::Env env, Napi::Object exports) {
  exports.Set("installSeccompFilter", Napi::Function::New(env, InstallSeccomp, "installSeccompFilter"));
  exports.Set("enterSandbox", Napi::Function::New(env, EnterSandbox, "enterSandbox"));
  exports.Set("unlinkAt", Napi::Function::New(env, UnlinkAt, "unlinkAt"));
  exports.Set("PidWatch", PidWatch::Define(env));
}

}  // namespace usernet
