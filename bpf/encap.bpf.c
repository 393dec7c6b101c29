// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Stage 2 of the datapath: a TC program on the egress of the agent's VXLAN
 * `external` (collect_md) device. Stage 1 (classify.bpf.c) clones each accepted
 * packet to this device with the copy metadata in skb->cb (mirror_abi.h). Here
 * the copy is truncated (SPEC §6: packetLength, then the path MTU), given its
 * tunnel key (the session's VNI, the target or the load-balancer backend picked
 * by the symmetric flow hash) and handed to the VXLAN device, which adds the
 * outer headers and routes it.
 *
 * Anything else leaving the device is dropped and counted: a collect_md device
 * drops key-less frames anyway. The agent turns IPv6 off on the device (its
 * MLD reports and router or neighbour solicitations, shared/NOTES.md, are not
 * copies), so what is counted here is traffic someone else sent into it.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "mirror_abi.h"
#include "mirror_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Where GSO copies that do not fit are segmented (mirror_abi.h, "The segmenter").
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
	__u8 eth[14];
	if (bpf_skb_load_bytes(skb, 0, eth, sizeof(eth)))
		return 0;
	__u16 proto = ((__u16)eth[12] << 8) | eth[13];
	__u32 l4;
	__u8 ipproto;
	if (proto == 0x0800) {
		__u8 ip[20];
		if (bpf_skb_load_bytes(skb, 14, ip, sizeof(ip)))
			return 0;
		l4 = 14 + (ip[0] & 0x0f) * 4;
		ipproto = ip[9];
	} else if (proto == 0x86DD) {
		__u8 ip6[40];
		if (bpf_skb_load_bytes(skb, 14, ip6, sizeof(ip6)))
			return 0;
		l4 = 14 + 40;
		ipproto = ip6[6];
	} else {
		return 0;
	}
	__u32 thl = 8; /* UDP (USO) */
	if (ipproto == 6) {
		__u8 tcp[13];
		if (l4 > 14 + 60 || bpf_skb_load_bytes(skb, l4, tcp, sizeof(tcp)))
			return 0;
		thl = (tcp[12] >> 4) * 4;
	}
	return l4 + thl + skb->gso_size;
}

/*
 * The direct path (mirror_abi.h, "Encapsulation templates"): pushes outer
 * Ethernet, IPv4, UDP and VXLAN headers from the collector's template and returns
 * the redirect to the underlay device. Returns -1 when the copy is unchanged and
 * should take the VXLAN device path instead, -2 when it was changed and failed.
 * The 64 bytes written are built in 16-bit words: stack accesses must be aligned,
 * and every header field here starts at an even offset.
 */
static __always_inline long encap_direct(struct __sk_buff *skb, const struct mirror_encap_template *t,
					 __be32 daddr_be, __u32 vni, __u32 flow_hash)
{
	__u16 h[32] = {};
	__u8 *b = (__u8 *)h;
	__u32 inner_len = skb->len;
	if (bpf_skb_load_bytes(skb, 0, b + MIRROR_VXLAN_OVERHEAD_IPV4, 14))
		return -1;
	__builtin_memcpy(b, t->dst_mac, 6);
	__builtin_memcpy(b + 6, t->src_mac, 6);
	h[6] = bpf_htons(0x0800);
	/* IPv4: no options, not fragmented (copies are cut to fit the path), TTL 64. */
	h[7] = bpf_htons(0x4500);
	h[8] = bpf_htons((__u16)(inner_len + MIRROR_VXLAN_OVERHEAD_IPV4 - 14));
	h[11] = bpf_htons((64 << 8) | 17);
	h[13] = (__u16)t->src_ipv4_be;
	h[14] = (__u16)(t->src_ipv4_be >> 16);
	h[15] = (__u16)daddr_be;
	h[16] = (__u16)(daddr_be >> 16);
	__u32 sum = 0;
	for (int i = 7; i < 17; i++)
		sum += h[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	h[12] = (__u16)~sum;
	/* UDP: source port from the inner flow (RFC 7348), checksum 0 (allowed on IPv4). */
	h[17] = bpf_htons(0xc000 | ((flow_hash ^ (flow_hash >> 16)) & 0x3fff));
	h[18] = bpf_htons(t->dst_port);
	h[19] = bpf_htons((__u16)(inner_len + 16));
	/* VXLAN: flags (I), VNI. */
	h[21] = bpf_htons(0x0800);
	h[23] = bpf_htons((__u16)(vni >> 8));
	h[24] = bpf_htons((__u16)((vni & 0xff) << 8));

	if (bpf_skb_adjust_room(skb, MIRROR_VXLAN_OVERHEAD_IPV4, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
				BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(14)))
		return -1;
	if (bpf_skb_store_bytes(skb, 0, b, sizeof(h), 0))
		return -2;
	return bpf_redirect(t->ifindex, 0);
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

	/* SPEC §2: every copy of one flow (both directions) goes to one backend. */
	__u32 backend = 0;
	if (tgt->backend_count > 1)
		backend = flow_hash % tgt->backend_count;
	/* backend_count <= MAX_BACKENDS, a power of two: the mask changes nothing
	 * but gives the verifier its bound. */
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
 * TC ingress of the segmenter's rx end (mirror_abi.h, "The segmenter"): each
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
