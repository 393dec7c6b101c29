// Linear-frame UDP sender for the throughput matrix (layout "linear").
//
// trafgen writes through an AF_PACKET TX ring: the kernel builds each skb with
// only the link-layer header in the linear area and the rest in a page fragment
// ("paged"). A VM's small packets reach the host tap linear (tap/vhost copy them
// into the skb head), so this sender writes the same frames with sendmmsg(2) on an
// AF_PACKET socket WITHOUT a ring: packet_snd() allocates a linear skb for any
// frame under a page. Everything else is kept like trafgen's run: one CPU (0),
// PACKET_QDISC_BYPASS, 1,000 flows (UDP source ports 10000-10999, as trafgen's
// dinc), frames prepared once with valid checksums.
//
// Usage: lsend DEV DST_MAC SRC_MAC SRC_IP DST_IP DPORT FRAME_BYTES MAX_SECONDS
//   FRAME_BYTES counts the bytes written (Ethernet header to the end of the UDP
//   payload, no FCS). Runs until SIGINT/SIGTERM or MAX_SECONDS, then prints the
//   frames sent on stderr.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FLOWS 1000
#define BATCH 64
#define MAX_FRAME 1514

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static int parse_mac(const char *s, uint8_t mac[6]) {
  return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2], &mac[3], &mac[4], &mac[5]) == 6 ? 0 : -1;
}

static uint32_t sum16(const void *p, size_t n, uint32_t acc) {
  const uint8_t *b = p;
  for (size_t i = 0; i + 1 < n; i += 2) acc += (uint32_t)(b[i] << 8 | b[i + 1]);
  if (n & 1) acc += (uint32_t)(b[n - 1] << 8);
  return acc;
}
static uint16_t fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return htons((uint16_t)~acc);
}

// One frame: Ethernet, IPv4 or IPv6, UDP to dport from sport, zero payload.
static size_t build(uint8_t *f, size_t len, const uint8_t dst[6], const uint8_t src[6], int family,
                    const void *saddr, const void *daddr, uint16_t sport, uint16_t dport) {
  memset(f, 0, len);
  struct ether_header *eth = (struct ether_header *)f;
  memcpy(eth->ether_dhost, dst, 6);
  memcpy(eth->ether_shost, src, 6);
  size_t l3 = sizeof(*eth), l4;
  uint32_t pseudo = 0;
  if (family == AF_INET) {
    eth->ether_type = htons(ETHERTYPE_IP);
    struct iphdr *ip = (struct iphdr *)(f + l3);
    ip->version = 4;
    ip->ihl = 5;
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons((uint16_t)(len - l3));
    memcpy(&ip->saddr, saddr, 4);
    memcpy(&ip->daddr, daddr, 4);
    ip->check = fold(sum16(ip, sizeof(*ip), 0));
    l4 = l3 + sizeof(*ip);
    pseudo = sum16(&ip->saddr, 8, 0);
  } else {
    eth->ether_type = htons(ETHERTYPE_IPV6);
    struct ip6_hdr *ip6 = (struct ip6_hdr *)(f + l3);
    ip6->ip6_flow = htonl(6u << 28);
    ip6->ip6_nxt = IPPROTO_UDP;
    ip6->ip6_hlim = 64;
    ip6->ip6_plen = htons((uint16_t)(len - l3 - sizeof(*ip6)));
    memcpy(&ip6->ip6_src, saddr, 16);
    memcpy(&ip6->ip6_dst, daddr, 16);
    l4 = l3 + sizeof(*ip6);
    pseudo = sum16(&ip6->ip6_src, 32, 0);
  }
  struct udphdr *udp = (struct udphdr *)(f + l4);
  uint16_t ulen = (uint16_t)(len - l4);
  udp->source = htons(sport);
  udp->dest = htons(dport);
  udp->len = htons(ulen);
  pseudo += IPPROTO_UDP + ulen;
  udp->check = fold(sum16(udp, ulen, pseudo));
  if (udp->check == 0) udp->check = 0xffff;
  return len;
}

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: lsend DEV DST_MAC SRC_MAC SRC_IP DST_IP DPORT FRAME_BYTES MAX_SECONDS\n");
    return 2;
  }
  uint8_t dst[6], src[6];
  uint8_t saddr[16], daddr[16];
  int family = strchr(argv[4], ':') ? AF_INET6 : AF_INET;
  size_t min = family == AF_INET ? 14 + 20 + 8 : 14 + 40 + 8;
  long bytes = strtol(argv[7], NULL, 10);
  double max_seconds = strtod(argv[8], NULL);
  if (parse_mac(argv[2], dst) || parse_mac(argv[3], src) || inet_pton(family, argv[4], saddr) != 1 ||
      inet_pton(family, argv[5], daddr) != 1 || bytes < (long)min || bytes > MAX_FRAME || max_seconds <= 0) {
    fprintf(stderr, "lsend: bad arguments (frame %zu-%d bytes)\n", min, MAX_FRAME);
    return 2;
  }
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  CPU_SET(0, &cpus);
  sched_setaffinity(0, sizeof(cpus), &cpus);  // as trafgen --cpus 1

  int fd = socket(AF_PACKET, SOCK_RAW, 0);  // protocol 0: sends only, never receives
  if (fd < 0) { perror("lsend: socket"); return 1; }
  int one = 1;
  setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
  struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(argv[1])};
  if (ll.sll_ifindex == 0 || bind(fd, (struct sockaddr *)&ll, sizeof(ll)) < 0) { perror("lsend: bind"); return 1; }

  static uint8_t frames[FLOWS][MAX_FRAME];
  for (int i = 0; i < FLOWS; i++)
    build(frames[i], (size_t)bytes, dst, src, family, saddr, daddr, (uint16_t)(10000 + i), (uint16_t)atoi(argv[6]));
  struct iovec iov[BATCH];
  struct mmsghdr msgs[BATCH];
  memset(msgs, 0, sizeof(msgs));

  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  unsigned long long sent = 0;
  int next = 0;
  while (!stop) {
    for (int i = 0; i < BATCH; i++) {
      iov[i].iov_base = frames[(next + i) % FLOWS];
      iov[i].iov_len = (size_t)bytes;
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = sendmmsg(fd, msgs, BATCH, 0);
    if (n < 0) {
      if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN) continue;
      perror("lsend: sendmmsg");
      return 1;
    }
    sent += (unsigned long long)n;
    next = (next + n) % FLOWS;
    if ((sent & 0xffff) < (unsigned)n) {  // about every 64k frames
      clock_gettime(CLOCK_MONOTONIC, &t);
      if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 >= max_seconds) break;
    }
  }
  fprintf(stderr, "lsend: %llu frames sent\n", sent);
  return 0;
}
