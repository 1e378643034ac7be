/*
 * Transaction and footprint load for the bench, in C so that the client's own
 * cost stays far below the network path under test (a Node client spends tens
 * of microseconds per connection in its event loop, which would cap the
 * connection rate of every peer at the same number).
 *
 *   txbench server PORT            epoll echo of 100-byte requests on 127.0.0.1
 *   txbench crr HOST PORT SECONDS  connect, 100-byte request, 100-byte reply, close; loop
 *   txbench rr HOST PORT SECONDS   request/response on one connection; latency percentiles
 *   txbench hold HOST PORT N       open N connections, one round trip on each, print
 *                                  "ready N", hold them until stdin closes
 *
 * Results go to stdout as one JSON line. Every mode stops by itself (SECONDS,
 * or stdin closing); errors are counted, not fatal, except setup failures.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 100

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int full_io(int fd, char *buf, int len, int writing) {
  int done = 0;
  while (done < len) {
    ssize_t n = writing ? write(fd, buf + done, len - done) : read(fd, buf + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    done += (int)n;
  }
  return 0;
}

static struct sockaddr_in addr_of(const char *host, int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "txbench: bad address %s\n", host);
    exit(2);
  }
  return a;
}

static int dial(const struct sockaddr_in *a) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (const struct sockaddr *)a, sizeof *a) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int server(int port) {
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = addr_of("127.0.0.1", port);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
    perror("txbench server: bind/listen");
    return 1;
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)-1};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  printf("{\"listening\":%d}\n", port);
  fflush(stdout);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u64 == (uint64_t)-1) {
        for (;;) {
          int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event ce = {.events = EPOLLIN, .data.u64 = (uint64_t)fd};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
        }
        continue;
      }
      int fd = (int)evs[i].data.u64;
      /* Requests are 100 bytes and arrive whole on a local path in practice;
       * partial ones are completed with a short blocking-style loop. */
      char buf[MSG];
      ssize_t r = read(fd, buf, MSG);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        close(fd);
        continue;
      }
      int got = (int)r;
      while (got < MSG) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0) break;
        r = read(fd, buf + got, MSG - got);
        if (r <= 0) break;
        got += (int)r;
      }
      if (got < MSG || write(fd, buf, MSG) != MSG) close(fd);
    }
  }
}

static int crr(const char *host, int port, double seconds) {
  struct sockaddr_in a = addr_of(host, port);
  char buf[MSG];
  memset(buf, 'q', MSG);
  long ok = 0, errors = 0;
  double t0 = now_s(), end = t0 + seconds, t;
  while ((t = now_s()) < end) {
    int fd = dial(&a);
    if (fd < 0) {
      errors++;
      if (errors > 1000 && ok == 0) break;
      continue;
    }
    if (full_io(fd, buf, MSG, 1) == 0 && full_io(fd, buf, MSG, 0) == 0) ok++;
    else errors++;
    close(fd);
  }
  double el = now_s() - t0;
  printf("{\"mode\":\"crr\",\"count\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"perSecond\":%.1f}\n", ok, errors, el,
         ok / el);
  return ok > 0 ? 0 : 1;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

static int rr(const char *host, int port, double seconds) {
  struct sockaddr_in a = addr_of(host, port);
  int fd = dial(&a);
  if (fd < 0) {
    perror("txbench rr: connect");
    return 1;
  }
  char buf[MSG];
  memset(buf, 'r', MSG);
  size_t cap = 1 << 22, n = 0;
  double *lat = malloc(cap * sizeof *lat);
  double t0 = now_s(), end = t0 + seconds, t;
  while ((t = now_s()) < end && n < cap) {
    if (full_io(fd, buf, MSG, 1) < 0 || full_io(fd, buf, MSG, 0) < 0) break;
    lat[n++] = now_s() - t;
  }
  close(fd);
  if (n == 0) return 1;
  qsort(lat, n, sizeof *lat, cmp_double);
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += lat[i];
  printf("{\"mode\":\"rr\",\"count\":%zu,\"p50us\":%.2f,\"p90us\":%.2f,\"p99us\":%.2f,\"p999us\":%.2f,"
         "\"meanUs\":%.2f}\n",
         n, lat[n / 2] * 1e6, lat[(size_t)(n * 0.9)] * 1e6, lat[(size_t)(n * 0.99)] * 1e6,
         lat[(size_t)(n * 0.999)] * 1e6, sum / n * 1e6);
  return 0;
}

static int hold(const char *host, int port, int count) {
  struct sockaddr_in a = addr_of(host, port);
  int *fds = malloc(sizeof(int) * (size_t)count);
  char buf[MSG];
  memset(buf, 'h', MSG);
  int open_ = 0, errors = 0;
  double t0 = now_s();
  for (int i = 0; i < count; i++) {
    int fd = dial(&a);
    if (fd < 0) {
      errors++;
      if (errno == EMFILE || errno == ENFILE) break;
      continue;
    }
    if (full_io(fd, buf, MSG, 1) < 0 || full_io(fd, buf, MSG, 0) < 0) {
      errors++;
      close(fd);
      continue;
    }
    fds[open_++] = fd;
  }
  printf("{\"mode\":\"hold\",\"ready\":%d,\"errors\":%d,\"seconds\":%.3f}\n", open_, errors, now_s() - t0);
  fflush(stdout);
  /* Hold until the bench closes our stdin. */
  while (read(0, buf, sizeof buf) > 0) {
  }
  for (int i = 0; i < open_; i++) close(fds[i]);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 3 && strcmp(argv[1], "server") == 0) return server(atoi(argv[2]));
  if (argc >= 5 && strcmp(argv[1], "crr") == 0) return crr(argv[2], atoi(argv[3]), atof(argv[4]));
  if (argc >= 5 && strcmp(argv[1], "rr") == 0) return rr(argv[2], atoi(argv[3]), atof(argv[4]));
  if (argc >= 5 && strcmp(argv[1], "hold") == 0) return hold(argv[2], atoi(argv[3]), atoi(argv[4]));
  fprintf(stderr, "usage: txbench server PORT | crr HOST PORT S | rr HOST PORT S | hold HOST PORT N\n");
  return 2;
}
