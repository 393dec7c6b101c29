/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing for the classifier: one function per layer, each bounds check
 * written once (`parse_need`). The Swift twin is MirrorCompiler's
 * `PacketParser.describe(frame:)`; the two must agree on every frame (the
 * differential test proves it through BPF_PROG_TEST_RUN, MalformedFrameTests
 * through the attached programs, where the stack moves VLAN tags). The reference
 * semantics, exactly:
 *
 * Window. Only the first MIRROR_PARSE_WINDOW bytes of the frame are looked at;
 * a header that reaches beyond min(frame length, window) is "truncated". The
 * window is counted on the frame as the ENI sent or receives it, tag included:
 * when the stack has moved a VLAN tag out of the frame (skb->vlan_present, as it
 * does before TC ingress), the window over the remaining bytes is VLAN_HLEN
 * shorter, so a frame gets the same decision whichever way its tag travels.
 *
 * Ethernet. < 14 bytes: not IP. EtherType 0x8100 or 0x88a8: exactly one tag is
 * skipped (needs 18 bytes, else not IP) and the inner EtherType is used; a
 * second tag is not walked (not IP). When the NIC/stack already removed the tag
 * (skb->vlan_present), the frame's own EtherType is the inner one and no
 * in-band tag is skipped (so a QinQ frame is still not walked past one tag).
 * EtherType 0x0800 = IPv4, 0x86dd = IPv6, anything else (ARP ...) = not IP.
 *
 * IPv4. Needs 20 bytes, version 4, IHL >= 5 and the IHL*4 header (options
 * included) inside the window/frame; otherwise not IP. Total length and the
 * checksum are not looked at. A non-zero fragment offset = later fragment:
 * protocol known, no ports. Transport starts after IHL*4 bytes.
 *
 * IPv6. Needs 40 bytes and version 6, else not IP. Extension headers 0
 * (hop-by-hop), 43 (routing), 60 (destination options) [length (n+1)*8], 51 (AH)
 * [length (n+2)*4] and 44 (fragment) [8 bytes] are walked, at most
 * MAX_IPV6_EXT_HEADERS of them, in any order. Of each header only its first 2
 * bytes (next header, length; 8 for the fragment header) must be inside the
 * window/frame; when they are not, or after more than MAX_IPV6_EXT_HEADERS
 * headers: protocol unknown (only `protocol: all` rules match), no ports. A
 * fragment header with a non-zero offset: later fragment, protocol = its next
 * header, no ports, walk stops.
 *
 * Transport. Ports are visible only for TCP (needs 20 bytes) and UDP (needs 8
 * bytes) that are not later fragments; a shorter transport header has no ports.
 * ICMP/ICMPv6 and other protocols have no ports.
 */
#ifndef MIRROR_PARSE_H
#define MIRROR_PARSE_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "mirror_abi.h"

#define ETH_HLEN_ 14
#define VLAN_HLEN_ 4
#define ETH_P_IP_ 0x0800
#define ETH_P_IPV6_ 0x86DD
#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_AH_ 51
#define IPPROTO_DSTOPTS_ 60

/* What the classifier makes linear before parse_common when the skb's
 * linear area is shorter: Ethernet, an in-band VLAN tag, IPv6 and TCP (78). */
#define MIRROR_COMMON_HEADERS 80

/* What the matching semantics (SPEC §4) see of one packet. */
struct mirror_packet {
	__be32 src_be[4];
	__be32 dst_be[4];
	__u16 src_port;       /* host order, valid when has_ports */
	__u16 dst_port;
	__u16 protocol;       /* 0..255 or MIRROR_PROTO_UNKNOWN */
	__u8 family;          /* 0 = not IP, 4, 6 */
	__u8 has_ports;
	__u8 later_fragment;
};

/* The packet's match key (mirror_consts.h, MIRROR_KEY_*): the rules of the
 * classifier and of security groups and ACLs compare it with one mask. */
static __always_inline __u32 mirror_packet_key(const struct mirror_packet *p)
{
	__u32 key = p->family == 6 ? MIRROR_KEY_IPV6 : MIRROR_KEY_IPV4;
	if (p->protocol != MIRROR_PROTO_UNKNOWN)
		key |= MIRROR_KEY_PROTOCOL_KNOWN | p->protocol;
	if (p->has_ports)
		key |= MIRROR_KEY_PORTS;
	return key;
}

struct parse_cursor {
	void *data;
	void *data_end;
	/* Set when a header was cut by the end of the linear area (not by the
	 * window): the caller may pull more of the skb and parse again. */
	int short_linear;
	/* Bytes of skb->data the window covers (parse_ethernet sets it):
	 * MIRROR_PARSE_WINDOW, less VLAN_HLEN when the tag is offloaded. */
	__u32 window;
};

/* The one bounds check: `len` bytes at `off`, inside the window and the frame.
 * Returns a pointer the verifier accepts, or NULL. */
static __always_inline void *parse_need(struct parse_cursor *c, __u32 off, __u32 len)
{
	/* The constant bound is the one the verifier needs for the pointer below. */
	if (off > MIRROR_PARSE_WINDOW || len > MIRROR_PARSE_WINDOW - off)
		return NULL;
	if (off + len > c->window)
		return NULL;
	void *p = c->data + off;
	if (p + len > c->data_end) {
		c->short_linear = 1;
		return NULL;
	}
	return p;
}

/* Returns the L3 EtherType (host order) and sets *l3_off; 0 when the frame is
 * too short for its link-layer header. */
static __always_inline __u16 parse_ethernet(struct parse_cursor *c, int tag_offloaded, __u32 *l3_off)
{
	c->window = tag_offloaded ? MIRROR_PARSE_WINDOW - VLAN_HLEN_ : MIRROR_PARSE_WINDOW;
	__u8 *eth = parse_need(c, 0, ETH_HLEN_);
	if (!eth)
		return 0;
	__u16 proto = bpf_ntohs(*(__be16 *)(eth + 12));
	*l3_off = ETH_HLEN_;
	if (!tag_offloaded && (proto == ETH_P_8021Q_ || proto == ETH_P_8021AD_)) {
		__u8 *tag = parse_need(c, ETH_HLEN_, VLAN_HLEN_);
		if (!tag)
			return 0;
		proto = bpf_ntohs(*(__be16 *)(tag + 2));
		*l3_off = ETH_HLEN_ + VLAN_HLEN_;
	}
	return proto;
}

/* Returns the transport offset, or 0 when the IPv4 header is unusable (not IP). */
static __always_inline __u32 parse_ipv4(struct parse_cursor *c, __u32 off, struct mirror_packet *pkt)
{
	__u8 *ip = parse_need(c, off, 20);
	if (!ip)
		return 0;
	__u8 vihl = ip[0];
	__u32 hlen = (__u32)(vihl & 0x0f) * 4;
	if ((vihl >> 4) != 4 || hlen < 20)
		return 0;
	if (!parse_need(c, off, hlen))
		return 0;
	pkt->family = 4;
	pkt->protocol = ip[9];
	pkt->src_be[0] = *(__be32 *)(ip + 12);
	pkt->dst_be[0] = *(__be32 *)(ip + 16);
	pkt->later_fragment = (bpf_ntohs(*(__be16 *)(ip + 6)) & 0x1fff) != 0;
	return off + hlen;
}

static __always_inline int ipv6_is_extension(__u32 nh)
{
	return nh == IPPROTO_HOPOPTS_ || nh == IPPROTO_ROUTING_ || nh == IPPROTO_DSTOPTS_ ||
	       nh == IPPROTO_FRAGMENT_ || nh == IPPROTO_AH_;
}

/* Returns the transport offset (protocol in pkt), or 0 when the transport is not
 * reachable: not IP (family 0) or protocol unknown / later fragment (family 6). */
static __always_inline __u32 parse_ipv6(struct parse_cursor *c, __u32 off, struct mirror_packet *pkt)
{
	__u8 *ip = parse_need(c, off, 40);
	if (!ip)
		return 0;
	if ((ip[0] >> 4) != 6)
		return 0;
	pkt->family = 6;
	__builtin_memcpy(pkt->src_be, ip + 8, 16);
	__builtin_memcpy(pkt->dst_be, ip + 24, 16);
	__u32 nh = ip[6];
	off += 40;
	pkt->protocol = MIRROR_PROTO_UNKNOWN;
	for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
		if (!ipv6_is_extension(nh))
			break;
		if (nh == IPPROTO_FRAGMENT_) {
			__u8 *fh = parse_need(c, off, 8);
			if (!fh)
				return 0;
			nh = fh[0];
			off += 8;
			if ((bpf_ntohs(*(__be16 *)(fh + 2)) & 0xfff8) != 0) {
				pkt->later_fragment = 1;
				pkt->protocol = nh;
				return 0;
			}
			continue;
		}
		__u8 *eh = parse_need(c, off, 2);
		if (!eh)
			return 0;
		__u32 len = nh == IPPROTO_AH_ ? ((__u32)eh[1] + 2) * 4 : ((__u32)eh[1] + 1) * 8;
		nh = eh[0];
		off += len;
	}
	if (ipv6_is_extension(nh))
		return 0; /* chain longer than MAX_IPV6_EXT_HEADERS: protocol unknown */
	pkt->protocol = nh;
	return off;
}

static __always_inline void parse_transport(struct parse_cursor *c, __u32 off, struct mirror_packet *pkt)
{
	__u32 need;
	if (pkt->later_fragment)
		return;
	if (pkt->protocol == IPPROTO_TCP_)
		need = 20;
	else if (pkt->protocol == IPPROTO_UDP_)
		need = 8;
	else
		return;
	__u8 *l4 = parse_need(c, off, need);
	if (!l4)
		return;
	pkt->src_port = bpf_ntohs(*(__be16 *)l4);
	pkt->dst_port = bpf_ntohs(*(__be16 *)(l4 + 2));
	pkt->has_ports = 1;
}

/*
 * The common frames only, for the prefilter's decision before the full parse:
 * IPv4 without options (IHL 5) or IPv6 without extension headers, with the
 * EtherType in the frame's Ethernet header (no in-band VLAN tag), carrying TCP or
 * UDP and not a later fragment, whose transport header is in [data, data_end).
 * For those it returns 1 and fills `out` with exactly what parse_frame would find
 * (all of it lies within 74 bytes, inside any window); for any other frame 0, and
 * the caller parses in full. `out` is a local of the caller, which clang keeps in
 * registers on this path (the full parse's merge points do not allow that).
 */
struct mirror_common {
	__u32 src;             /* IPv4 only, host order */
	__u32 dst;
	__u64 src6;            /* IPv6 only: the first 64 bits, host order */
	__u64 dst6;
	__u16 src_port;        /* host order */
	__u16 dst_port;
	__u16 protocol;        /* IPPROTO_TCP_ or IPPROTO_UDP_ */
	__u8 family;           /* 4 or 6 */
};

static __always_inline int parse_common(void *data, void *data_end, struct mirror_common *out)
{
	if (data + ETH_HLEN_ + 20 + 20 > data_end)
		return 0;
	__u16 et = *(__u16 *)(data + 12);
	__u8 *ip = data + ETH_HLEN_;
	__u8 *l4;
	__u32 proto;
	if (et == bpf_htons(ETH_P_IP_)) {
		if (ip[0] != 0x45 || (*(__be16 *)(ip + 6) & bpf_htons(0x1fff)))
			return 0;
		proto = ip[9];
		l4 = ip + 20;
		out->family = 4;
		out->src = bpf_ntohl(*(__be32 *)(ip + 12));
		out->dst = bpf_ntohl(*(__be32 *)(ip + 16));
	} else if (et == bpf_htons(ETH_P_IPV6_)) {
		if (data + ETH_HLEN_ + 40 + 8 > data_end || (ip[0] >> 4) != 6)
			return 0;
		proto = ip[6];
		l4 = ip + 40;
		out->family = 6;
		out->src6 = ((__u64)bpf_ntohl(*(__be32 *)(ip + 8)) << 32) | bpf_ntohl(*(__be32 *)(ip + 12));
		out->dst6 = ((__u64)bpf_ntohl(*(__be32 *)(ip + 24)) << 32) | bpf_ntohl(*(__be32 *)(ip + 28));
	} else {
		return 0;
	}
	if (proto == IPPROTO_TCP_) {
		if ((void *)(l4 + 20) > data_end)
			return 0;
	} else if (proto == IPPROTO_UDP_) {
		if ((void *)(l4 + 8) > data_end)
			return 0;
	} else {
		return 0;
	}
	out->protocol = proto;
	out->src_port = bpf_ntohs(*(__be16 *)l4);
	out->dst_port = bpf_ntohs(*(__be16 *)(l4 + 2));
	return 1;
}

/* Fills pkt (which must be zeroed); pkt->family == 0 means not IP. */
static __always_inline void parse_frame(struct parse_cursor *c, int tag_offloaded, struct mirror_packet *pkt)
{
	__u32 l3 = 0;
	__u16 proto = parse_ethernet(c, tag_offloaded, &l3);
	__u32 l4;
	if (proto == ETH_P_IP_)
		l4 = parse_ipv4(c, l3, pkt);
	else if (proto == ETH_P_IPV6_)
		l4 = parse_ipv6(c, l3, pkt);
	else
		return;
	if (l4)
		parse_transport(c, l4, pkt);
}

#endif /* MIRROR_PARSE_H */
