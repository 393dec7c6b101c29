// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Stage 2 of the datapath: a TC program on the egress of the agent's VXLAN
 * `external` (collect_md) device. Stage 1 (classify.bpf.c) clones each accepted
 * packet to this device with the copy metadata in skb->cb (mirror_consts.h). Here
 * the copy is truncated (SPEC §6: packetLength, then the path MTU) and sent to
 * the target or the healthy load-balancer backend the symmetric flow hash picks
 * (mirror_backend.h), with the session's VNI, in that backend's family (SPEC
 * §11): to an IPv4 backend with
 * a template, the outer headers are written here and the copy is redirected to
 * the underlay (encap_direct); otherwise it gets a tunnel key and the VXLAN
 * device adds the outer headers and routes it.
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
static __always_inline __u32 gso_segment_len(struct __sk_buff *skb)
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
	return l4 + thl + skb->gso_size;
}

/* RFC 7348 §5 (as the kernel's struct vxlanhdr, which is not uapi). */
struct vxlanhdr {
	__be32 vx_flags;       /* VXLAN_FLAG_I: the VNI is valid; the rest reserved */
	__be32 vx_vni;         /* VNI << 8 */
};
#define VXLAN_FLAG_I 0x08000000

/* The room the direct path opens behind the copy's Ethernet header: the outer
 * IPv4, UDP and VXLAN headers and the inner Ethernet header, which is exactly
 * what SPEC §6 counts as the overhead. */
_Static_assert(sizeof(struct iphdr) + sizeof(struct udphdr) + sizeof(struct vxlanhdr) + sizeof(struct ethhdr) ==
	       MIRROR_VXLAN_OVERHEAD_IPV4, "the direct path pushes the SPEC §6 overhead");

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

/*
 * The direct path (mirror_structs.h, "Encapsulation templates"): pushes outer
 * Ethernet, IPv4, UDP and VXLAN headers from the collector's template and returns
 * the redirect to the underlay device. Returns -1 when the copy is unchanged and
 * should take the VXLAN device path instead, -2 when it was changed and failed.
 * The headers are written in place, as katran's encapsulation helpers do: the
 * room opens behind the copy's Ethernet header, which moves to the end of it (the
 * inner header) and is then overwritten as the outer one.
 */
static __always_inline long encap_direct(struct __sk_buff *skb, const struct mirror_encap_template *t,
					 __be32 daddr_be, __u32 vni, __u32 flow_hash)
{
	__u32 inner_len = skb->len;
	if (inner_len < sizeof(struct ethhdr))
		return -1;
	if (bpf_skb_adjust_room(skb, MIRROR_VXLAN_OVERHEAD_IPV4, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
				BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(sizeof(struct ethhdr))))
		return -1;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	struct vxlanhdr *vx = (void *)(udp + 1);
	struct ethhdr *inner = (void *)(vx + 1);
	if ((void *)(inner + 1) > data_end)
		return -2;
	/* The room is not zeroed: every field below is written. */
	__builtin_memcpy(inner, eth, sizeof(*inner));

	__builtin_memcpy(eth->h_dest, t->dst_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, t->src_mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);

	/* IPv4: no options, not fragmented (copies are cut to fit the path), TTL 64. */
	ip->version = 4;
	ip->ihl = sizeof(*ip) / 4;
	ip->tos = 0;
	ip->tot_len = bpf_htons((__u16)(sizeof(*ip) + sizeof(*udp) + sizeof(*vx) + inner_len));
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->check = 0;
	ip->saddr = t->src_ipv4_be;
	ip->daddr = daddr_be;
	ip->check = ipv4_csum(ip);

	/* UDP: source port from the inner flow (RFC 7348), checksum 0 (allowed on IPv4). */
	udp->source = bpf_htons(0xc000 | ((flow_hash ^ (flow_hash >> 16)) & 0x3fff));
	udp->dest = bpf_htons(t->dst_port);
	udp->len = bpf_htons((__u16)(sizeof(*udp) + sizeof(*vx) + inner_len));
	udp->check = 0;

	vx->vx_flags = bpf_htonl(VXLAN_FLAG_I);
	vx->vx_vni = bpf_htonl(vni << 8);
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

	/* SPEC §6: packetLength first, then the path MTU (overhead included). */
	__u32 limit = tgt->max_inner_len;
	__u32 why_packet_length = 0;
	if (sess->packet_length && (limit == 0 || sess->packet_length < limit)) {
		limit = sess->packet_length;
		why_packet_length = 1;
	}
	if (limit) {
		__u32 len = skb->len;
		/* A GSO copy of one segment is cut like any packet (bpf_skb_change_tail
		 * resets its GSO state). gso_segs 0 = not computed: treated as many. */
		if (skb->gso_size && skb->gso_segs != 1) {
			/* The kernel segments a GSO copy after this program; its segments
			 * already fit when one full segment does (the seed's advice: source
			 * MTU at least 64 bytes under the underlay's). */
			__u32 seg = gso_segment_len(skb);
			if (seg && seg <= limit) {
				len = 0;
			} else {
				/* SPEC §6: one copy per wire segment, each truncated. Cutting the
				 * super-packet would keep only its first segment, so it goes to
				 * the segmenter and comes back here as wire-size segments, with
				 * its metadata (cb) and cb[4] = MIRROR_META_SEGMENTED. A segment
				 * is never diverted twice (no loop). */
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
				if (st)
					st->truncated_gso++;
			}
		}
		if (len > limit) {
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
		}
	}

	int ipv6 = backend_is_ipv6(tgt, backend);
	/* IPv4 collectors with a resolved next hop: outer headers pushed here. GSO
	 * copies keep the VXLAN device, which segments them correctly; so do IPv6
	 * collectors (the templates are IPv4 only). */
	if (!ipv6 && !skb->gso_size) {
		__be32 daddr = tgt->backends_be[backend][0];
		struct mirror_encap_template *t = bpf_map_lookup_elem(&mirror_encap_templates, &daddr);
		if (t && t->ifindex) {
			__u32 inner_len = skb->len;
			long r = encap_direct(skb, t, daddr, sess->vni, flow_hash);
			if (r == -2) {
				if (st)
					st->dropped_encap_direct++;
				return TC_ACT_SHOT;
			}
			if (r != -1) {
				if (st) {
					st->sent++;
					st->sent_direct++;
					st->sent_bytes += inner_len;
				}
				return r;
			}
		}
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
	if (st) {
		st->sent++;
		st->sent_bytes += skb->len;
	}
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
