// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Stage 2 of the datapath: a TC program on the egress of the agent's VXLAN
 * `external` (collect_md) device. Stage 1 (classify.bpf.c) clones each accepted
 * packet to this device with the copy metadata in skb->cb (mirror_consts.h). Here
 * the copy is truncated (SPEC §6: packetLength, then the path MTU) and sent to
 * the target or the healthy load-balancer backend the symmetric flow hash picks
 * (mirror_backend.h), with
 * the session's VNI (or ERSPAN session ID), in that backend's family and in the
 * target's encapsulation (SPEC §11): to a collector with a template, the outer
 * headers are written here and the copy is redirected to the underlay
 * (encap_direct); GSO copies are segmented first (the segmenter) and come back as
 * wire-size copies. A vxlan copy of a collector whose route the template cannot
 * describe (no template) gets a tunnel key and the VXLAN device adds the outer
 * headers and routes it: counted as sent_device, not as sent. geneve and erspan
 * copies have no device to fall back on: without a path they are dropped and
 * counted. `sent` counts only copies stage 2 put on the underlay itself: a
 * collector without a route or whose next hop is not resolved has its copies
 * dropped and counted (no_route, neighbor_unresolved), never counted as sent.
 *
 * Anything else leaving the device is dropped and counted: a collect_md device
 * drops key-less frames anyway. The agent turns IPv6 off on the device (its
 * MLD reports and router or neighbour solicitations, shared/NOTES.md, are not
 * copies), so what is counted here is traffic someone else sent into it.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "mirror_abi.h"
#include "mirror_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Where GSO copies that do not fit are segmented (mirror_structs.h, "The segmenter").
 * Private to this object: the agent writes it after loading. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mirror_segmenter);
} mirror_segmenter SEC(".maps");

static __always_inline struct mirror_encap_stats *encap_stats_for(__u32 session_slot)
{
	return bpf_map_lookup_elem(&encap_stats, &session_slot);
}

/* SPEC §11: each copy goes to its backend in that backend's own family. A target
 * whose backends mix families (family 0) says which are IPv6 bit by bit. */
static __always_inline int backend_is_ipv6(const struct mirror_target *t, __u32 backend)
{
	if (t->family == 0)
		return (t->backend_v6_mask >> backend) & 1;
	return t->family == 6;
}

/*
 * For a GSO copy: the length of one full wire segment, inner Ethernet header
 * included (headers + gso_size), or 0 when the headers cannot be read. Copies
 * of TCP super-packets are cut by the kernel into wire-size segments after this
 * program; each must fit the path (SPEC §6). A super-packet's headers need not be
 * in the linear area, so they are read with bpf_skb_load_bytes (GSO copies only).
 */
static __always_inline __u32 gso_segment_len(struct __sk_buff *skb, __u8 *transport)
{
	struct ethhdr eth;
	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)))
		return 0;
	__u32 l4;
	__u8 ipproto;
	if (eth.h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, sizeof(eth), &ip, sizeof(ip)))
			return 0;
		l4 = sizeof(eth) + ip.ihl * 4;
		ipproto = ip.protocol;
	} else if (eth.h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, sizeof(eth), &ip6, sizeof(ip6)))
			return 0;
		l4 = sizeof(eth) + sizeof(ip6);
		ipproto = ip6.nexthdr;
	} else {
		return 0;
	}
	__u32 thl = sizeof(struct udphdr); /* UDP (USO) */
	if (ipproto == IPPROTO_TCP) {
		struct tcphdr tcp;
		if (l4 > sizeof(eth) + 60 || bpf_skb_load_bytes(skb, l4, &tcp, sizeof(tcp)))
			return 0;
		thl = tcp.doff * 4;
	}
	*transport = ipproto;
	return l4 + thl + skb->gso_size;
}

/*
 * The tunnel headers after the outer IP header: MIRROR_TUNNEL_HEADER_LEN bytes for
 * every kind (mirror_consts.h), so the outer layout depends only on the family.
 *   vxlan  (RFC 7348 §5):  UDP 4789, flags I (the VNI is valid), VNI << 8
 *   geneve (RFC 8926 §3):  UDP 6081, version 0, no options, protocol 0x6558
 *                          (Ethernet), VNI << 8
 *   erspan (type II):      GRE with the S bit and protocol 0x88BE, the sequence
 *                          number, then ver 1 | vlan | cos | en | t | session ID,
 *                          and reserved | index
 */
#define VXLAN_FLAG_I 0x08000000
#define GENEVE_PROTO_ETHERNET 0x6558
#define GRE_FLAG_S 0x1000
#define GRE_PROTO_ERSPAN 0x88BE
#define ERSPAN_VERSION_II 1
/* ERSPAN `en`: the inner frame carries its VLAN tag itself (else 0: untagged). */
#define ERSPAN_EN_INFRAME 3
#ifndef IPPROTO_GRE
#define IPPROTO_GRE 47
#endif

_Static_assert(sizeof(struct iphdr) + MIRROR_TUNNEL_HEADER_LEN + sizeof(struct ethhdr) == MIRROR_VXLAN_OVERHEAD_IPV4 &&
	       MIRROR_VXLAN_OVERHEAD_IPV4 == MIRROR_GENEVE_OVERHEAD_IPV4 &&
	       MIRROR_VXLAN_OVERHEAD_IPV4 == MIRROR_ERSPAN_OVERHEAD_IPV4,
	       "the direct path pushes the SPEC §6 overhead (IPv4 underlay)");
_Static_assert(sizeof(struct ipv6hdr) + MIRROR_TUNNEL_HEADER_LEN + sizeof(struct ethhdr) == MIRROR_VXLAN_OVERHEAD_IPV6 &&
	       MIRROR_VXLAN_OVERHEAD_IPV6 == MIRROR_GENEVE_OVERHEAD_IPV6 &&
	       MIRROR_VXLAN_OVERHEAD_IPV6 == MIRROR_ERSPAN_OVERHEAD_IPV6,
	       "the direct path pushes the SPEC §6 overhead (IPv6 underlay)");

/* ERSPAN sequence numbers, one per session slot (SPEC §11). Private to this
 * object: a reload starts them again at 0, which a collector sees as a restart. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SESSIONS);
	__type(key, __u32);
	__type(value, __u32);
} mirror_erspan_seq SEC(".maps");

static __always_inline __u16 ipv4_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;
	for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Copies longer than this get no IPv6 UDP checksum and are dropped (a 64 KiB
 * path MTU is the most a device has). */
#define CSUM_CHUNK 256
#define CSUM_MAX_CHUNKS 256

/* Summing the copy for udp6_csum, one chunk per bpf_loop iteration (the
 * callback is verified once, not once per iteration as an unrolled loop is, and
 * its buffer is on its own frame: the program's and its stack share 512 bytes). */
struct csum_walk {
	struct __sk_buff *skb;
	__u32 off;
	__u32 left;
	__u32 sum;
	__u32 failed;
};

static long csum_chunk(__u32 i, void *data)
{
	struct csum_walk *w = data;
	__u8 buf[CSUM_CHUNK];
	__u32 n = w->left;
	if (n == 0)
		return 1;
	if (n >= CSUM_CHUNK) {
		if (bpf_skb_load_bytes(w->skb, w->off, buf, CSUM_CHUNK)) {
			w->failed = 1;
			return 1;
		}
		w->sum = (__u32)bpf_csum_diff(0, 0, (__be32 *)buf, CSUM_CHUNK, w->sum);
		w->off += CSUM_CHUNK;
		w->left -= CSUM_CHUNK;
		return 0;
	}
	/* The tail, zero-padded to a multiple of 4 (padding adds nothing to the sum). */
	__builtin_memset(buf, 0, sizeof(buf));
	n &= CSUM_CHUNK - 1;
	if (n == 0 || bpf_skb_load_bytes(w->skb, w->off, buf, n)) {
		w->failed = 1;
		return 1;
	}
	__u32 words = ((n + 3) & ~3u) & (CSUM_CHUNK - 1);
	if (n > CSUM_CHUNK - 4)
		words = CSUM_CHUNK;
	w->sum = (__u32)bpf_csum_diff(0, 0, (__be32 *)buf, words, w->sum);
	w->left = 0;
	return 1;
}

/*
 * The UDP checksum of an IPv6 copy (RFC 8200 §8.1: mandatory; RFC 6935 lets
 * tunnels send 0 only where the receiver was told to accept it, and Linux does
 * not by default). Summed over the packet with bpf_csum_diff in chunks read by
 * bpf_skb_load_bytes (the copy need not be linear). Returns the value to store
 * as is in udph->check, or 0 when the copy is too long or cannot be read.
 */
static __always_inline __u16 udp6_csum(struct __sk_buff *skb, __u32 udp_off, __u32 udp_len, const struct ipv6hdr *ip6)
{
	struct {
		__be32 len;
		__be32 nexthdr;
	} pseudo = { bpf_htonl(udp_len), bpf_htonl(IPPROTO_UDP) };
	__u32 addrs[8];
	__builtin_memcpy(addrs, &ip6->saddr, sizeof(addrs));
	__s64 sum = bpf_csum_diff(0, 0, addrs, sizeof(addrs), 0);
	sum = bpf_csum_diff(0, 0, (__be32 *)&pseudo, sizeof(pseudo), (__u32)sum);
	struct csum_walk w = { .skb = skb, .off = udp_off, .left = udp_len, .sum = (__u32)sum };
	bpf_loop(CSUM_MAX_CHUNKS + 1, csum_chunk, &w, 0);
	if (w.failed || w.left)
		return 0;
	__u32 s = w.sum;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	__u16 c = (__u16)~s;
	return c ? c : 0xffff; /* RFC 768: a computed 0 is sent as all ones */
}

/* Writes the 16 tunnel header bytes at `l4` (bounds checked by the caller). */
static __always_inline void write_tunnel(__be32 *l4, __u8 kind, __u32 vni, __u32 flow_hash, __u32 inner_len,
					 __u32 session_slot, __be16 inner_proto, int truncated)
{
	if (kind == MIRROR_ENCAP_ERSPAN) {
		__u32 seq = 0;
		__u32 *s = bpf_map_lookup_elem(&mirror_erspan_seq, &session_slot);
		if (s)
			seq = __sync_fetch_and_add(s, 1);
		__u32 en = inner_proto == bpf_htons(ETH_P_8021Q) || inner_proto == bpf_htons(ETH_P_8021AD)
			? ERSPAN_EN_INFRAME : 0;
		l4[0] = bpf_htonl(GRE_FLAG_S << 16 | GRE_PROTO_ERSPAN);
		l4[1] = bpf_htonl(seq);
		l4[2] = bpf_htonl(ERSPAN_VERSION_II << 28 | en << 11 | (truncated ? 1u : 0u) << 10 |
				  (vni & MIRROR_ERSPAN_MAX_SESSION_ID));
		l4[3] = 0;
		return;
	}
	struct udphdr *udp = (void *)l4;
	/* Source port from the inner flow (RFC 7348 §5, RFC 8926 §3.3): entropy for
	 * the collector side's RSS and ECMP. */
	udp->source = bpf_htons(0xc000 | ((flow_hash ^ (flow_hash >> 16)) & 0x3fff));
	udp->dest = bpf_htons(kind == MIRROR_ENCAP_GENEVE ? MIRROR_GENEVE_PORT : MIRROR_VXLAN_PORT);
	udp->len = bpf_htons((__u16)(MIRROR_TUNNEL_HEADER_LEN + inner_len));
	udp->check = 0; /* allowed on IPv4; the IPv6 path fills it in afterwards */
	l4[2] = bpf_htonl(kind == MIRROR_ENCAP_GENEVE ? GENEVE_PROTO_ETHERNET : VXLAN_FLAG_I);
	l4[3] = bpf_htonl(vni << 8);
}

/*
 * The direct path (mirror_structs.h, "Encapsulation templates"): pushes the outer
 * Ethernet and IPv4 or IPv6 header and the tunnel headers of `kind` from the
 * collector's template and returns the redirect to the underlay device. Returns
 * -1 when the copy is unchanged (the caller decides where else it goes), -2 when
 * it was changed and failed. The headers are written in place, as katran's
 * encapsulation helpers do: the room opens behind the copy's Ethernet header,
 * which moves to the end of it (the inner header) and is then overwritten as the
 * outer one.
 */
static __always_inline long encap_direct(struct __sk_buff *skb, const struct mirror_encap_template *t,
					 const struct mirror_encap_template_key *daddr, __u8 kind, __u32 vni,
					 __u32 flow_hash, __u32 session_slot, int truncated)
{
	__u32 inner_len = skb->len;
	if (inner_len < sizeof(struct ethhdr))
		return -1;
	int v6 = t->family == 6;
	__u32 l3 = v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
	/* FIXED_GSO: a GSO copy keeps its gso_size, so the kernel cuts it into the
	 * source's own wire segments, each with these outer headers (without it the
	 * kernel lowers the MSS by the outer headers' length). No effect otherwise. */
	__u64 flags = BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(sizeof(struct ethhdr)) |
		      BPF_F_ADJ_ROOM_FIXED_GSO;
	flags |= v6 ? BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 : BPF_F_ADJ_ROOM_ENCAP_L3_IPV4;
	flags |= kind == MIRROR_ENCAP_ERSPAN ? BPF_F_ADJ_ROOM_ENCAP_L4_GRE : BPF_F_ADJ_ROOM_ENCAP_L4_UDP;
	if (bpf_skb_adjust_room(skb, l3 + MIRROR_TUNNEL_HEADER_LEN + sizeof(struct ethhdr), BPF_ADJ_ROOM_MAC, flags))
		return -1;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u8 l4proto = kind == MIRROR_ENCAP_ERSPAN ? IPPROTO_GRE : IPPROTO_UDP;
	__u32 l4len = MIRROR_TUNNEL_HEADER_LEN + inner_len;
	__be32 *l4;
	if (v6) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		l4 = (void *)(ip6 + 1);
		struct ethhdr *inner = (void *)l4 + MIRROR_TUNNEL_HEADER_LEN;
		if ((void *)(inner + 1) > data_end)
			return -2;
		/* The room is not zeroed: every field below is written. */
		__builtin_memcpy(inner, eth, sizeof(*inner));
		/* RFC 8200: flow label from the inner flow (RFC 6438), hop limit 64. */
		__u32 label = flow_hash & 0xfffff;
		*(__be32 *)ip6 = bpf_htonl(6u << 28 | label);
		ip6->payload_len = bpf_htons((__u16)l4len);
		ip6->nexthdr = l4proto;
		ip6->hop_limit = 64;
		__builtin_memcpy(&ip6->saddr, t->src_be, 16);
		__builtin_memcpy(&ip6->daddr, daddr->addr_be, 16);
		write_tunnel(l4, kind, vni, flow_hash, inner_len, session_slot, inner->h_proto, truncated);
	} else {
		struct iphdr *ip = (void *)(eth + 1);
		l4 = (void *)(ip + 1);
		struct ethhdr *inner = (void *)l4 + MIRROR_TUNNEL_HEADER_LEN;
		if ((void *)(inner + 1) > data_end)
			return -2;
		__builtin_memcpy(inner, eth, sizeof(*inner));
		/* IPv4: no options, not fragmented (copies are cut to fit the path), TTL 64. */
		ip->version = 4;
		ip->ihl = sizeof(*ip) / 4;
		ip->tos = 0;
		ip->tot_len = bpf_htons((__u16)(sizeof(*ip) + l4len));
		ip->id = 0;
		ip->frag_off = 0;
		ip->ttl = 64;
		ip->protocol = l4proto;
		ip->check = 0;
		ip->saddr = t->src_be[0];
		ip->daddr = daddr->addr_be[0];
		ip->check = ipv4_csum(ip);
		write_tunnel(l4, kind, vni, flow_hash, inner_len, session_slot, inner->h_proto, truncated);
	}
	__builtin_memcpy(eth->h_dest, t->dst_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, t->src_mac, ETH_ALEN);
	eth->h_proto = bpf_htons(v6 ? ETH_P_IPV6 : ETH_P_IP);

	if (v6 && kind != MIRROR_ENCAP_ERSPAN) {
		__u32 udp_off = sizeof(struct ethhdr) + sizeof(struct ipv6hdr);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
		if ((void *)(ip6 + 1) > data_end)
			return -2;
		__u16 c = udp6_csum(skb, udp_off, l4len, ip6);
		if (!c)
			return -2;
		if (bpf_skb_store_bytes(skb, udp_off + __builtin_offsetof(struct udphdr, check), &c, sizeof(c), 0))
			return -2;
	}
	return bpf_redirect(t->ifindex, 0);
}

/*
 * The backend of a copy (mirror_backend.h), or -1 when none is healthy. A global
 * function: the verifier checks it once on its own and the caller sees an unknown
 * result, so the rest of stage 2 is not verified again for every backend index
 * the scoring loop could have picked (that multiplied its verified instructions
 * by ~30).
 */
__noinline int pick_backend(const struct mirror_target *t, __u32 down_mask, __u32 flow_hash)
{
	if (!t)
		return -1;
	return mirror_pick_backend(t, down_mask, flow_hash);
}

SEC("tc")
int mirror_encap(struct __sk_buff *skb)
{
	if (skb->cb[0] != MIRROR_COPY_MAGIC) {
		struct mirror_encap_stats *g = encap_stats_for(MIRROR_ENCAP_STATS_NOT_COPY);
		if (g)
			g->dropped_not_copy++;
		return TC_ACT_SHOT;
	}
	__u32 word1 = skb->cb[1];
	__u32 session_slot = mirror_meta_session_slot(word1);
	__u32 slot = mirror_meta_slot(word1) & 1;
	__u32 flow_hash = skb->cb[2];
	/* The copy leaves without its metadata and with the agent's own mark, never
	 * the original's: VXLAN routes the outer packet by skb->mark (shared/NOTES.md),
	 * and the mark is how the classifier recognises an encapsulated copy crossing a
	 * source interface (the underlay, a collector VM on this host) so that it is
	 * never mirrored again (SPEC §6). */
	skb->cb[0] = 0;
	skb->mark = MIRROR_COPY_MARK;

	if (session_slot >= MAX_SESSIONS)
		return TC_ACT_SHOT;
	struct mirror_encap_stats *st = encap_stats_for(session_slot);
	__u32 skey = slot * MAX_SESSIONS + session_slot;
	struct mirror_session *sess = bpf_map_lookup_elem(&mirror_session, &skey);
	if (!sess || !sess->enabled) {
		if (st)
			st->dropped_no_session++;
		return TC_ACT_SHOT;
	}
	__u32 tkey = slot * MAX_TARGETS + sess->target_index;
	struct mirror_target *tgt = bpf_map_lookup_elem(&mirror_target, &tkey);
	if (!tgt || tgt->backend_count == 0) {
		if (st)
			st->dropped_no_target++;
		return TC_ACT_SHOT;
	}

	/* SPEC §2, §10: every copy of one flow (both directions) goes to one healthy
	 * backend (mirror_backend.h); with none healthy the copy is dropped. */
	struct mirror_target_health *health = bpf_map_lookup_elem(&mirror_target_health, &tkey);
	int picked = pick_backend(tgt, health ? health->down_mask : 0, flow_hash);
	if (picked < 0) {
		if (st)
			st->dropped_target_unhealthy++;
		return TC_ACT_SHOT;
	}
	/* picked < backend_count <= MAX_BACKENDS, a power of two: the mask changes
	 * nothing but gives the verifier its bound (to it pick_backend's result is
	 * any number). The empty asm keeps clang, which can see the function's range,
	 * from dropping the mask. */
	__u32 backend = (__u32)picked;
	asm volatile("" : "+r"(backend));
	backend &= MAX_BACKENDS - 1;

	/* Every collector the agent has looked at has a template (its path, or that
	 * there is none). Before anything is cut or segmented: a copy that cannot
	 * leave is dropped and counted, never counted as sent. */
	int ipv6 = backend_is_ipv6(tgt, backend);
	struct mirror_encap_template_key daddr = {};
	__builtin_memcpy(daddr.addr_be, tgt->backends_be[backend], sizeof(daddr.addr_be));
	struct mirror_encap_template *t = bpf_map_lookup_elem(&mirror_encap_templates, &daddr);
	if (t && t->state == MIRROR_PATH_NONE) {
		/* No route: nothing would leave (the device would drop it too). */
		if (st)
			st->dropped_no_route++;
		return TC_ACT_SHOT;
	}
	if (t && t->state == MIRROR_PATH_UNRESOLVED) {
		/* The next hop's MAC is not known. Handing the copy to the neighbour
		 * subsystem (bpf_redirect_neigh) or the device would queue it, and the
		 * kernel drops queued packets unseen when resolution fails: dropped and
		 * counted here instead. The agent's managed neighbour entry makes the
		 * kernel resolve and re-probe the next hop with no copy waiting. */
		if (st)
			st->dropped_neighbor_unresolved++;
		return TC_ACT_SHOT;
	}
	/* SPEC §11: the direct path for every kind; only a vxlan collector whose
	 * route the template cannot describe (no entry) falls back to the VXLAN
	 * device (mirror0), counted apart (sent_device). */
	__u8 kind = tgt->encapsulation;
	int direct_ok = t && t->ifindex && t->family == (ipv6 ? 6 : 4) && t->state == MIRROR_PATH_RESOLVED;
	int device_ok = kind == MIRROR_ENCAP_VXLAN;

	/* SPEC §6: packetLength first, then the path MTU (overhead included). */
	__u32 limit = tgt->max_inner_len;
	__u32 why_packet_length = 0;
	int truncated = 0;
	if (sess->packet_length && (limit == 0 || sess->packet_length < limit)) {
		limit = sess->packet_length;
		why_packet_length = 1;
	}
	__u32 len = skb->len;
	/* A GSO copy of one segment is cut like any packet (bpf_skb_change_tail
	 * resets its GSO state). gso_segs 0 = not computed: treated as many. */
	/* Wire segments of a GSO copy the direct path sends whole (0: not one). */
	__u32 gso_direct_segs = 0;
	__u32 gso_header_len = 0;
	if (skb->gso_size && skb->gso_segs != 1) {
		/* The kernel would segment a GSO copy after this program; its segments
		 * fit when one full segment does (the seed's advice: source MTU at
		 * least 64 bytes under the underlay's). */
		__u8 transport = 0;
		__u32 seg = gso_segment_len(skb, &transport);
		int fits = limit == 0 || (seg && seg <= limit);
		if (!direct_ok && device_ok && fits) {
			/* The VXLAN device segments what it sends. */
			len = 0;
		} else if (direct_ok && fits && seg && transport == IPPROTO_TCP && skb->gso_segs > 1 && !ipv6 &&
			   kind != MIRROR_ENCAP_ERSPAN && skb->len + MIRROR_VXLAN_OVERHEAD_IPV4 <= 0xffff) {
			/* A TCP super-packet under an IPv4 UDP tunnel: encapsulated once
			 * here, GSO-aware (encap_direct), and cut into the source's wire
			 * segments, each with its outer headers, by the underlay (its NIC
			 * with VXLAN/Geneve TSO, else the kernel before the wire), as the
			 * VXLAN device's copies are. Costs one encapsulation per
			 * super-packet instead of the segmenter's round trip per segment
			 * (TCP cells of scripts/bench throughput). The rest (cut segments,
			 * IPv6 outer headers with their UDP checksum, ERSPAN's per-packet
			 * GRE sequence, UDP GSO, gso_segs not known) takes the segmenter. */
			len = 0;
			gso_direct_segs = skb->gso_segs;
			gso_header_len = seg - skb->gso_size;
		} else {
			/* SPEC §6: one copy per wire segment, each truncated. Cutting the
			 * super-packet would keep only its first segment, and the direct
			 * path pushes one outer header per skb: it goes to the segmenter
			 * and comes back here as wire-size segments, with its metadata
			 * (cb) and cb[4] = MIRROR_META_SEGMENTED. A segment is never
			 * diverted twice (no loop). */
			__u32 zero = 0;
			struct mirror_segmenter *sg = skb->cb[4] == MIRROR_META_SEGMENTED
				? NULL : bpf_map_lookup_elem(&mirror_segmenter, &zero);
			if (sg && sg->ifindex) {
				skb->cb[0] = MIRROR_COPY_MAGIC;
				if (st)
					st->segmented++;
				return bpf_redirect(sg->ifindex, 0);
			}
			/* No segmenter: cut as a whole, which keeps its first segment. */
			if (st && limit && len > limit)
				st->truncated_gso++;
		}
	}
	if (limit && len > limit) {
		truncated = 1;
		if (bpf_skb_change_tail(skb, limit, 0)) {
			if (st)
				st->dropped_truncate++;
			return TC_ACT_SHOT;
		}
		if (st) {
			if (why_packet_length)
				st->truncated_packet_length++;
			else
				st->truncated_mtu++;
		}
	} else if (direct_ok && skb->gso_size && skb->gso_segs == 1) {
		/* One segment kept whole: bpf_skb_change_tail to its own length resets
		 * its GSO state, so the direct path sends it as the packet it is. */
		if (bpf_skb_change_tail(skb, skb->len, 0)) {
			if (st)
				st->dropped_truncate++;
			return TC_ACT_SHOT;
		}
	}

	if (direct_ok && (!skb->gso_size || gso_direct_segs)) {
		__u32 inner_len = skb->len;
		long r = encap_direct(skb, t, &daddr, kind, sess->vni, flow_hash, session_slot, truncated);
		if (r == -2 || (r == -1 && !device_ok)) {
			if (st)
				st->dropped_encap_direct++;
			return TC_ACT_SHOT;
		}
		if (r != -1) {
			if (st) {
				/* A GSO copy counts as the wire segments it becomes, each
				 * with its own copy of the inner headers (SPEC §6). */
				__u32 copies = gso_direct_segs ? gso_direct_segs : 1;
				st->sent += copies;
				st->sent_direct += copies;
				st->sent_bytes += inner_len + (copies - 1) * gso_header_len;
			}
			return r;
		}
	}
	if (!device_ok) {
		if (st) {
			if (direct_ok)
				st->dropped_encap_direct++; /* a GSO copy no segmenter cut */
			else
				st->dropped_no_route++;
		}
		return TC_ACT_SHOT;
	}

	/* The VXLAN device (collect_md, so it has an IPv4 and an IPv6 socket) adds
	 * the outer headers of the key's family. */
	struct bpf_tunnel_key key = {};
	/* bpf_tunnel_key takes host order for the id and the IPv4 address, but the
	 * IPv6 address in network order: the kernel copies remote_ipv6 as the
	 * in6_addr bytes (the kernel selftests write bpf_htonl per word). */
	key.tunnel_id = sess->vni;
	key.tunnel_ttl = 64;
	/* A zero UDP checksum is fine over IPv4; over IPv6 receivers drop it by
	 * default (RFC 6935), so IPv6 copies keep theirs. */
	__u64 flags = BPF_F_ZERO_CSUM_TX;
	if (ipv6) {
		key.remote_ipv6[0] = tgt->backends_be[backend][0];
		key.remote_ipv6[1] = tgt->backends_be[backend][1];
		key.remote_ipv6[2] = tgt->backends_be[backend][2];
		key.remote_ipv6[3] = tgt->backends_be[backend][3];
		flags = BPF_F_TUNINFO_IPV6;
	} else {
		key.remote_ipv4 = bpf_ntohl(tgt->backends_be[backend][0]);
	}
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), flags)) {
		if (st)
			st->dropped_tunnel_key++;
		return TC_ACT_SHOT;
	}
	/* The VXLAN UDP source port is taken from the skb hash: the inner flow's. */
	bpf_set_hash(skb, flow_hash);
	/* Not `sent`: the device routes and resolves the next hop after this
	 * program, and may drop the copy where stage 2 cannot see it. */
	if (st)
		st->sent_device++;
	return TC_ACT_OK;
}

/*
 * TC ingress of the segmenter's rx end (mirror_structs.h, "The segmenter"): each
 * wire-size segment of a GSO copy that stage 2 diverted. Marked as a segment and
 * sent back to the mirror device's egress, where mirror_encap truncates and
 * encapsulates it. Anything else arriving here (the veth's own frames) is dropped
 * and counted.
 */
SEC("tc")
int mirror_segmented(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct mirror_active *active = bpf_map_lookup_elem(&mirror_active, &zero);
	if (skb->cb[0] != MIRROR_COPY_MAGIC || !active || !active->mirror_ifindex) {
		struct mirror_encap_stats *g = encap_stats_for(MIRROR_ENCAP_STATS_NOT_COPY);
		if (g)
			g->dropped_segmenter_not_copy++;
		return TC_ACT_SHOT;
	}
	skb->cb[4] = MIRROR_META_SEGMENTED;
	return bpf_redirect(active->mirror_ifindex, 0);
}
