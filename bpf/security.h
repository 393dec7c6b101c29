/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Security-group and network-ACL drop awareness (SPEC §5): a packet that
 * the source's ACL or security groups drop is not mirrored. classify() calls
 * security_check() once, before its policy lookup; a source without security
 * groups or ACL pays one failed hash lookup.
 *
 * SPEC §5 order: outbound = security group egress, then ACL outbound; inbound =
 * ACL inbound, then security group ingress. The first matching rule decides; no
 * match = deny; a source without groups (or ACL) allows everything.
 *
 * Statefulness (a reply of an allowed connection is allowed): the agent's own
 * flow table (mirror_flows, LRU), not the kernel's conntrack through
 * bpf_skb_ct_lookup. Why:
 *  - conntrack only tracks a netns when something there asks for it (nftables
 *    with ct expressions); mirroring awareness must hold without enforcement,
 *    for groups that the cloud enforces elsewhere;
 *  - at TC egress (inbound) conntrack has already confirmed the packet itself,
 *    so "found" no longer means "established"; telling a first packet from a
 *    reply needs nf_conn internals (status bits, CO-RE), at TC ingress
 *    (outbound) nothing is tracked yet;
 *  - the flow table records exactly "a flow whose first packet the groups
 *    allowed", the oracle's meaning, and the test-run twins can read it
 *    deterministically.
 * An ICMP error is judged by the flow it quotes (conntrack's "related", which
 * the enforcement rules accept too), so path-MTU and unreachable messages of an
 * allowed connection pass without an ICMP rule.
 * The cost: no TCP state machine (a flow ends by idling out or LRU eviction,
 * MIRROR_FLOW_IDLE_NS), and a connection opened before its source had an entry
 * is not known. With nftables enforcement and nf_conntrack_tcp_loose=0 both
 * agree on what matters: a reply-looking packet without a connection is new.
 */
#ifndef MIRROR_SECURITY_H
#define MIRROR_SECURITY_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "mirror_abi.h"
#include "mirror_maps.h"
#include "parse.h"

static __always_inline int security_rule_matches(const struct mirror_security_rule *r,
						 const struct mirror_packet *p, __u32 key)
{
	if ((key & r->match_mask) != r->match_value)
		return 0;
	if (p->src_port < r->src_port_min || p->src_port > r->src_port_max ||
	    p->dst_port < r->dst_port_min || p->dst_port > r->dst_port_max)
		return 0;
	for (int w = 0; w < 4; w++) {
		if ((p->src_be[w] & r->src_mask_be[w]) != r->src_addr_be[w] ||
		    (p->dst_be[w] & r->dst_mask_be[w]) != r->dst_addr_be[w])
			return 0;
	}
	return 1;
}

/* Network ACL (stateless): 1 = allow; else *priority is the denying rule's (0 = none matched). */
static __always_inline int acl_allows(const struct mirror_security *sec, const struct mirror_packet *p,
				      __u32 key, __u32 *priority)
{
	__u32 count = sec->acl_rule_count;
	for (__u32 i = 0; i < MAX_RULES_PER_ACL_DIRECTION; i++) {
		if (i >= count)
			break;
		const struct mirror_security_rule *r = &sec->acl_rules[i];
		if (!security_rule_matches(r, p, key))
			continue;
		*priority = r->priority;
		return (r->flags & MIRROR_SECURITY_RULE_ALLOW) != 0;
	}
	*priority = 0;
	return 0;
}

struct group_search {
	const struct mirror_security *sec;
	const struct mirror_packet *pkt;
	__u32 key;
	__u32 count;
	int decided;           /* -1 none matched, 0 deny, 1 allow */
	__u32 priority;
	__u32 group_index;
};

/* One merged security-group rule; bpf_loop callback so that the verifier checks
 * the body once, not MAX_SECURITY_GROUP_RULES_PER_DIRECTION times. */
static long group_rule_step(__u32 i, void *ctx)
{
	struct group_search *s = ctx;
	if (i >= s->count || i >= MAX_SECURITY_GROUP_RULES_PER_DIRECTION)
		return 1;
	const struct mirror_security_rule *r = &s->sec->group_rules[i];
	if (!security_rule_matches(r, s->pkt, s->key))
		return 0;
	s->decided = (r->flags & MIRROR_SECURITY_RULE_ALLOW) != 0;
	s->priority = r->priority;
	s->group_index = r->group_index;
	return 1;
}

/* Security groups for a new flow: first match across the merged rules; none = deny. */
static __always_inline int groups_allow(const struct mirror_security *sec, const struct mirror_packet *p,
					__u32 key, __u32 *priority, __u32 *group_index)
{
	struct group_search s = {
		.sec = sec, .pkt = p, .key = key, .count = sec->group_rule_count, .decided = -1,
	};
	bpf_loop(MAX_SECURITY_GROUP_RULES_PER_DIRECTION, group_rule_step, &s, 0);
	*priority = s.decided < 0 ? 0 : s.priority;
	*group_index = s.decided < 0 ? 0 : s.group_index;
	return s.decided == 1;
}

/* The flow seen from the ENI: a request and its reply give the same key. */
static __always_inline void flow_key_of(const struct mirror_packet *p, __u32 ifindex, __u32 direction,
					struct mirror_flow_key *k)
{
	int outbound = direction == MIRROR_DIR_OUTBOUND;
	__builtin_memcpy(k->local_be, outbound ? p->src_be : p->dst_be, 16);
	__builtin_memcpy(k->remote_be, outbound ? p->dst_be : p->src_be, 16);
	k->local_port = p->has_ports ? (outbound ? p->src_port : p->dst_port) : 0;
	k->remote_port = p->has_ports ? (outbound ? p->dst_port : p->src_port) : 0;
	k->ifindex = ifindex;
	k->family = p->family;
	k->protocol = (__u8)p->protocol;
	k->pad = 0;
}

/* ICMP errors (RFC 792, RFC 4443) quote the packet they answer. */
static __always_inline int icmp_is_error(__u32 family, __u8 type)
{
	if (family == 4)
		return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
	return type >= 1 && type <= 4;
}

/*
 * An ICMP error is related to the flow of the packet it quotes (SPEC §5: replies
 * of an allowed connection are allowed, as conntrack's "related" that the
 * enforcement rules accept). Returns 1 and that flow's key when the packet is an
 * ICMP error whose quoted IP header (and, for TCP/UDP, ports) is inside the
 * parse window; the quoted packet travelled the other way. ICMPv6 errors behind
 * extension headers are not looked into (then judged as plain ICMPv6).
 */
static __always_inline int icmp_error_flow_key(struct parse_cursor *c, int tag_offloaded, const struct mirror_packet *p,
					       __u32 ifindex, __u32 direction, struct mirror_flow_key *k)
{
	if (p->later_fragment || !((p->family == 4 && p->protocol == 1) || (p->family == 6 && p->protocol == 58)))
		return 0;
	__u32 l3 = 0, l4;
	parse_ethernet(c, tag_offloaded, &l3);
	if (p->family == 4) {
		__u8 *ip = parse_need(c, l3, 20);
		if (!ip)
			return 0;
		l4 = l3 + (__u32)(ip[0] & 0x0f) * 4;
	} else {
		__u8 *ip = parse_need(c, l3, 40);
		if (!ip || ip[6] != 58)
			return 0;
		l4 = l3 + 40;
	}
	__u8 *icmp = parse_need(c, l4, 8);
	if (!icmp || !icmp_is_error(p->family, icmp[0]))
		return 0;
	struct mirror_packet quoted = {};
	__u32 quoted_l4 = p->family == 4 ? parse_ipv4(c, l4 + 8, &quoted) : parse_ipv6(c, l4 + 8, &quoted);
	if (quoted.family != p->family)
		return 0;
	/* An error quotes at least 8 bytes of the transport header: the ports. */
	if (quoted_l4 && !quoted.later_fragment && (quoted.protocol == IPPROTO_TCP_ || quoted.protocol == IPPROTO_UDP_)) {
		__u8 *ports = parse_need(c, quoted_l4, 4);
		if (ports) {
			quoted.src_port = bpf_ntohs(*(__be16 *)ports);
			quoted.dst_port = bpf_ntohs(*(__be16 *)(ports + 2));
			quoted.has_ports = 1;
		}
	}
	flow_key_of(&quoted, ifindex, direction == MIRROR_DIR_OUTBOUND ? MIRROR_DIR_INBOUND : MIRROR_DIR_OUTBOUND, k);
	return 1;
}

/* Whether the flow is established (and not idle); refreshes it when `record`. */
static __always_inline int flow_established(const struct mirror_flow_key *k, int record)
{
	struct mirror_flow *f = bpf_map_lookup_elem(&mirror_flows, k);
	if (!f)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	if (now - f->last_seen_ns > MIRROR_FLOW_IDLE_NS)
		return 0;
	if (record)
		f->last_seen_ns = now;
	return 1;
}

static __always_inline void flow_record(const struct mirror_flow_key *k)
{
	struct mirror_flow f = { .last_seen_ns = bpf_ktime_get_ns() };
	bpf_map_update_elem(&mirror_flows, k, &f, BPF_ANY);
}

static __always_inline void count_security(__u32 source_slot, __u32 direction, __u32 outcome, int counting)
{
	if (!counting)
		return;
	__u32 key = mirror_source_stats_key(source_slot, direction);
	struct mirror_security_stats *s = bpf_map_lookup_elem(&security_stats, &key);
	if (!s)
		return;
	if (outcome == MIRROR_OUTCOME_SUPPRESSED_BY_SECURITY_GROUP)
		s->suppressed_by_security_group++;
	else if (outcome == MIRROR_OUTCOME_SUPPRESSED_BY_ACL)
		s->suppressed_by_acl++;
	else
		s->established++;
}

/*
 * The SPEC §5 decision for one packet: 0 = let through, else the suppression
 * verdict. `record`: remember flows the groups allowed (the attached programs;
 * not the test-run twins: an explain must not open a connection). `counting`:
 * update security_stats (always for the attached programs, for a test run only
 * when asked).
 */
static __always_inline __u32 security_decide(struct parse_cursor *cur, int tag_offloaded, const struct mirror_packet *pkt,
					     const struct mirror_security *sec, __u32 ifindex, __u32 slot, __u32 direction,
					     int record, int counting)
{
	__u32 match_key = mirror_packet_key(pkt);
	__u32 source_slot = sec->source_slot;
	__u32 flags = sec->flags;
	__u32 priority = 0, group_index = 0;

	/* SPEC §5: inbound meets the ACL first. */
	if (direction == MIRROR_DIR_INBOUND && (flags & MIRROR_SECURITY_HAS_ACL) &&
	    !acl_allows(sec, pkt, match_key, &priority)) {
		count_security(source_slot, direction, MIRROR_OUTCOME_SUPPRESSED_BY_ACL, counting);
		return mirror_verdict(MIRROR_OUTCOME_SUPPRESSED_BY_ACL, priority, 0, slot);
	}
	int new_flow = 0;
	struct mirror_flow_key fk = {};
	if (flags & MIRROR_SECURITY_HAS_GROUPS) {
		/* An ICMP error belongs to the flow it quotes, never to one of its own. */
		int icmp_error = icmp_error_flow_key(cur, tag_offloaded, pkt, ifindex, direction, &fk);
		if (!icmp_error)
			flow_key_of(pkt, ifindex, direction, &fk);
		if (flow_established(&fk, record && !icmp_error)) {
			count_security(source_slot, direction, 0, counting);
		} else if (groups_allow(sec, pkt, match_key, &priority, &group_index)) {
			new_flow = !icmp_error;
		} else {
			count_security(source_slot, direction, MIRROR_OUTCOME_SUPPRESSED_BY_SECURITY_GROUP, counting);
			return mirror_verdict(MIRROR_OUTCOME_SUPPRESSED_BY_SECURITY_GROUP, priority, group_index, slot);
		}
	}
	/* SPEC §5: outbound meets the ACL after the groups. */
	if (direction == MIRROR_DIR_OUTBOUND && (flags & MIRROR_SECURITY_HAS_ACL) &&
	    !acl_allows(sec, pkt, match_key, &priority)) {
		count_security(source_slot, direction, MIRROR_OUTCOME_SUPPRESSED_BY_ACL, counting);
		return mirror_verdict(MIRROR_OUTCOME_SUPPRESSED_BY_ACL, priority, 0, slot);
	}
	/* Only a packet that got through both opens a connection. */
	if (new_flow && record)
		flow_record(&fk);
	return 0;
}

/*
 * Fragments: 0 = not a fragment, 1 = first fragment, 2 = later fragment; *id
 * and the key identify its datagram. IPv6: only a fragment header right after
 * the fixed header (others are judged on their own, as unfragmented packets).
 */
static __always_inline int fragment_of(struct parse_cursor *c, int tag_offloaded, const struct mirror_packet *p,
				       __u32 ifindex, __u32 direction, struct mirror_fragment_key *k)
{
	__u32 l3 = 0;
	parse_ethernet(c, tag_offloaded, &l3);
	int kind = 0;
	if (p->family == 4) {
		__u8 *ip = parse_need(c, l3, 20);
		if (!ip)
			return 0;
		__u16 fo = bpf_ntohs(*(__be16 *)(ip + 6));
		kind = (fo & 0x1fff) ? 2 : ((fo & 0x2000) ? 1 : 0);
		k->id = bpf_ntohs(*(__be16 *)(ip + 4));
	} else {
		__u8 *ip = parse_need(c, l3, 48);
		if (!ip || ip[6] != IPPROTO_FRAGMENT_)
			return 0;
		__u16 fo = bpf_ntohs(*(__be16 *)(ip + 42));
		kind = (fo & 0xfff8) ? 2 : ((fo & 1) ? 1 : 0);
		k->id = bpf_ntohl(*(__be32 *)(ip + 44));
	}
	if (!kind)
		return 0;
	__builtin_memcpy(k->src_be, p->src_be, 16);
	__builtin_memcpy(k->dst_be, p->dst_be, 16);
	k->ifindex = ifindex;
	k->family = p->family;
	k->protocol = (__u8)p->protocol;
	k->direction = direction;
	k->pad = 0;
	return kind;
}

/*
 * 0 = the source's ACL and security groups let the packet through (or it has
 * none, or it is not IP: classify says so); else the suppression verdict
 * (mirror_verdict with MIRROR_OUTCOME_SUPPRESSED_*). `record` and `counting`:
 * see security_decide.
 *
 * Fragments: enforcement (conntrack) reassembles a datagram and judges it once,
 * by its first fragment's ports; here the later fragments, which show no ports
 * (SPEC §4), take the decision the first fragment got (mirror_fragments). A
 * later fragment whose first fragment was not seen is judged on its own.
 */
static __always_inline __u32 security_check(struct __sk_buff *skb, __u32 ifindex, __u32 slot, __u32 direction,
					    int record, int counting)
{
	struct mirror_security_key key = { .ifindex = ifindex, .slot = slot, .direction = direction };
	struct mirror_security *sec = bpf_map_lookup_elem(&mirror_security, &key);
	if (!sec)
		return 0;

	__u32 want = skb->len < MIRROR_PARSE_WINDOW ? skb->len : MIRROR_PARSE_WINDOW;
	if ((long)skb->data_end - (long)skb->data < (long)want)
		bpf_skb_pull_data(skb, want);
	struct parse_cursor cur = {
		.data = (void *)(long)skb->data,
		.data_end = (void *)(long)skb->data_end,
	};
	struct mirror_packet pkt = {};
	parse_frame(&cur, skb->vlan_present, &pkt);
	if (pkt.family == 0)
		return 0;

	struct mirror_fragment_key fragk = {};
	int fragment = fragment_of(&cur, skb->vlan_present, &pkt, ifindex, direction, &fragk);
	if (fragment == 2) {
		struct mirror_fragment *f = bpf_map_lookup_elem(&mirror_fragments, &fragk);
		if (f && bpf_ktime_get_ns() - f->seen_ns <= MIRROR_FRAGMENT_IDLE_NS) {
			__u32 verdict = f->verdict;
			if (verdict)
				count_security(sec->source_slot, direction, mirror_verdict_outcome(verdict), counting);
			return verdict;
		}
	}
	__u32 verdict = security_decide(&cur, skb->vlan_present, &pkt, sec, ifindex, slot, direction, record, counting);
	if (fragment == 1 && record) {
		struct mirror_fragment f = { .seen_ns = bpf_ktime_get_ns(), .verdict = verdict };
		bpf_map_update_elem(&mirror_fragments, &fragk, &f, BPF_ANY);
	}
	return verdict;
}

#endif /* MIRROR_SECURITY_H */
