/*
 * Frame generator for the attack tests (test/e2e/attack-*.test.ts): writes
 * crafted Ethernet frames from inside a guest namespace through an AF_PACKET
 * socket, as fast as the socket takes them (ENOBUFS: wait and retry, so each
 * frame counted as sent was handed to the device). Built by the test with
 * the system C compiler; no dependencies.
 *
 *   attack-gen MODE IFNAME COUNT SRCMAC DSTMAC SRCIP DSTIP DPORT [SEED]
 *
 * MODE:
 *   mac    random unicast source MACs (locally administered), to DSTMAC, ethertype 0x88b5
 *   syn    IPv4 TCP SYNs from SRCIP, random source ports, to DSTIP:DPORT
 *   udp    IPv4 UDP datagrams from COUNT distinct source ports (10000 up, wrapping below 65536) to DSTIP:DPORT
 *   icmp   IPv4 ICMP echo requests with COUNT distinct identifiers to DSTIP
 *   frag4  IPv4 fragments to DSTIP: first fragments that never complete, each with
 *          a fresh id, mixed with overlapping pairs (same id, overlapping offsets)
 *   frag6  the same over IPv6 (SRCIP, DSTIP IPv6 literals), fragment extension header
 *   dns    DNS queries (random id, random name under flood.test) from random source
 *          ports to DSTIP:DPORT
 * Prints "sent N" on success. Addresses are literals; MACs aa:bb:cc:dd:ee:ff.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

static void parse_mac(const char *s, uint8_t *m) {
  unsigned v[6];
  if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) {
    fprintf(stderr, "bad MAC %s\n", s);
    exit(2);
  }
  for (int i = 0; i < 6; i++) m[i] = (uint8_t)v[i];
}

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s) {
  for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) s += (uint32_t)(p[n - 1] << 8);
  return s;
}
static uint16_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}
static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

/* IPv4 header at p (20 bytes), checksum filled. */
static void ip4(uint8_t *p, int total, int proto, uint32_t src, uint32_t dst, uint16_t id, uint16_t frag) {
  memset(p, 0, 20);
  p[0] = 0x45;
  put16(p + 2, (uint16_t)total);
  put16(p + 4, id);
  put16(p + 6, frag);
  p[8] = 64;
  p[9] = (uint8_t)proto;
  memcpy(p + 12, &src, 4);
  memcpy(p + 16, &dst, 4);
  put16(p + 10, fold(sum16(p, 20, 0)));
}

/* Checksum of an IPv4 transport segment (pseudo-header included). */
static uint16_t l4sum4(uint32_t src, uint32_t dst, int proto, const uint8_t *seg, int len) {
  uint8_t ph[12];
  memcpy(ph, &src, 4);
  memcpy(ph + 4, &dst, 4);
  ph[8] = 0;
  ph[9] = (uint8_t)proto;
  put16(ph + 10, (uint16_t)len);
  return fold(sum16(seg, (size_t)len, sum16(ph, 12, 0)));
}

int main(int argc, char **argv) {
  if (argc < 9) {
    fprintf(stderr, "usage: attack-gen MODE IFNAME COUNT SRCMAC DSTMAC SRCIP DSTIP DPORT [SEED]\n");
    return 2;
  }
  const char *mode = argv[1];
  long count = atol(argv[3]);
  uint8_t smac[6], dmac[6];
  parse_mac(argv[4], smac);
  parse_mac(argv[5], dmac);
  int v6 = strcmp(mode, "frag6") == 0;
  uint32_t src4 = 0, dst4 = 0;
  uint8_t src6[16], dst6[16];
  if (v6) {
    if (inet_pton(AF_INET6, argv[6], src6) != 1 || inet_pton(AF_INET6, argv[7], dst6) != 1) return 2;
  } else {
    if (inet_pton(AF_INET, argv[6], &src4) != 1 || inet_pton(AF_INET, argv[7], &dst4) != 1) return 2;
  }
  int dport = atoi(argv[8]);
  rng = argc > 9 ? strtoull(argv[9], NULL, 10) : (uint64_t)time(NULL) * 2654435761u + (uint64_t)getpid();
  if (rng == 0) rng = 88172645463325252ull;

  int fd = socket(AF_PACKET, SOCK_RAW, 0);
  if (fd < 0) {
    perror("socket");
    return 1;
  }
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = (int)if_nametoindex(argv[2]);
  sll.sll_halen = 6;
  if (sll.sll_ifindex == 0) {
    perror("if_nametoindex");
    return 1;
  }
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
    perror("bind");
    return 1;
  }

  uint8_t f[1600];
  long sent = 0;
  for (long i = 0; i < count; i++) {
    memset(f, 0, 64);
    memcpy(f, dmac, 6);
    memcpy(f + 6, smac, 6);
    uint8_t *ip = f + 14;
    int len = 60;
    if (strcmp(mode, "mac") == 0) {
      uint32_t a = rnd(), b = rnd();
      f[6] = (uint8_t)((a & 0xfc) | 0x02); /* unicast, locally administered */
      f[7] = (uint8_t)(a >> 8);
      f[8] = (uint8_t)(a >> 16);
      f[9] = (uint8_t)b;
      f[10] = (uint8_t)(b >> 8);
      f[11] = (uint8_t)(b >> 16);
      put16(f + 12, 0x88b5);
    } else if (strcmp(mode, "syn") == 0) {
      put16(f + 12, 0x0800);
      uint8_t *t = ip + 20;
      memset(t, 0, 24);
      put16(t, (uint16_t)(1024 + rnd() % 64000));
      put16(t + 2, (uint16_t)dport);
      uint32_t seq = rnd();
      memcpy(t + 4, &seq, 4);
      t[12] = 6 << 4; /* data offset 24: one MSS option */
      t[13] = 0x02;   /* SYN */
      put16(t + 14, 64240);
      t[20] = 2;
      t[21] = 4;
      put16(t + 22, 1460);
      put16(t + 16, l4sum4(src4, dst4, 6, t, 24));
      ip4(ip, 44, 6, src4, dst4, (uint16_t)rnd(), 0x4000);
      len = 14 + 44;
    } else if (strcmp(mode, "udp") == 0 || strcmp(mode, "dns") == 0) {
      put16(f + 12, 0x0800);
      uint8_t *u = ip + 20;
      uint8_t *d = u + 8;
      int plen;
      uint16_t sport;
      if (mode[0] == 'u') {
        sport = (uint16_t)(10000 + i % 55536);
        memcpy(d, "attack", 6);
        plen = 6;
      } else {
        sport = (uint16_t)(1024 + rnd() % 64000);
        put16(d, (uint16_t)rnd());
        put16(d + 2, 0x0100); /* RD */
        put16(d + 4, 1);
        memset(d + 6, 0, 6);
        uint8_t *q = d + 12;
        *q++ = 12;
        for (int k = 0; k < 12; k++) *q++ = (uint8_t)('a' + rnd() % 26);
        *q++ = 5;
        memcpy(q, "flood", 5);
        q += 5;
        *q++ = 4;
        memcpy(q, "test", 4);
        q += 4;
        *q++ = 0;
        put16(q, 1); /* A */
        put16(q + 2, 1);
        q += 4;
        plen = (int)(q - d);
      }
      put16(u, sport);
      put16(u + 2, (uint16_t)dport);
      put16(u + 4, (uint16_t)(8 + plen));
      put16(u + 6, 0);
      uint16_t c = l4sum4(src4, dst4, 17, u, 8 + plen);
      put16(u + 6, c == 0 ? 0xffff : c);
      ip4(ip, 28 + plen, 17, src4, dst4, (uint16_t)rnd(), 0x4000);
      len = 14 + 28 + plen;
    } else if (strcmp(mode, "icmp") == 0) {
      put16(f + 12, 0x0800);
      uint8_t *c = ip + 20;
      memset(c, 0, 16);
      c[0] = 8;
      put16(c + 4, (uint16_t)(i & 0xffff));
      put16(c + 6, 1);
      memcpy(c + 8, "attack!!", 8);
      put16(c + 2, fold(sum16(c, 16, 0)));
      ip4(ip, 36, 1, src4, dst4, (uint16_t)rnd(), 0x4000);
      len = 14 + 36;
    } else if (strcmp(mode, "frag4") == 0) {
      /* Even i: a first fragment (MF, offset 0) of a fresh datagram that never completes.
       * Odd i: a fragment overlapping the previous one (offset 8 bytes, MF). */
      put16(f + 12, 0x0800);
      static uint16_t id;
      if ((i & 1) == 0) id = (uint16_t)rnd();
      int plen = 1200;
      memset(ip + 20, (int)(i & 0xff), (size_t)plen);
      uint16_t frag = (i & 1) == 0 ? 0x2000 : (0x2000 | 1);
      ip4(ip, 20 + plen, 17, src4, dst4, id, frag);
      len = 14 + 20 + plen;
    } else if (strcmp(mode, "frag6") == 0) {
      put16(f + 12, 0x86dd);
      static uint32_t id6;
      if ((i & 1) == 0) id6 = rnd();
      int plen = 8 + 1200; /* fragment header + data */
      memset(ip, 0, 40);
      ip[0] = 0x60;
      put16(ip + 4, (uint16_t)plen);
      ip[6] = 44; /* fragment header */
      ip[7] = 64;
      memcpy(ip + 8, src6, 16);
      memcpy(ip + 24, dst6, 16);
      uint8_t *fh = ip + 40;
      fh[0] = 17; /* UDP inside */
      fh[1] = 0;
      put16(fh + 2, (uint16_t)((i & 1) == 0 ? 0x0001 : ((1 << 3) | 1))); /* offset 0 or 8 bytes, M */
      memcpy(fh + 4, &id6, 4);
      memset(fh + 8, (int)(i & 0xff), 1200);
      len = 14 + 40 + plen;
    } else {
      fprintf(stderr, "unknown mode %s\n", mode);
      return 2;
    }
    if (len < 60) len = 60;
    for (;;) {
      if (send(fd, f, (size_t)len, 0) == len) break;
      if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) {
        usleep(200);
        continue;
      }
      perror("send");
      printf("sent %ld\n", sent);
      return 1;
    }
    sent++;
  }
  printf("sent %ld\n", sent);
  return 0;
}
