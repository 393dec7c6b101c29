// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Stage 1 of the datapath: TC (clsact) programs on the host-side device of each
 * mirror source. They decide per packet whether and to which session it is
 * mirrored (SPEC §4) and clone the accepted ones to the mirror device, where
 * stage 2 (encap.bpf.c) encapsulates them. They never change or drop the
 * original: every program returns TC_ACT_UNSPEC so that other owners' filters
 * on the same hook still run.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "mirror_abi.h"
#include "mirror_maps.h"
#include "parse.h"
#include "security.h"
#include "capture.h"
#include "limits.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int rule_matches(const struct mirror_rule *r, const struct mirror_packet *p, __u32 key)
{
	/* Ethertype, protocol and (SPEC §4) "ports visible" in one comparison. */
	if ((key & r->match_mask) != r->match_value)
		return 0;
	if ((p->src_be[0] & r->src_mask_be) != r->src_addr_be ||
	    (p->dst_be[0] & r->dst_mask_be) != r->dst_addr_be)
		return 0;
	if (p->src_port < r->src_port_min || p->src_port > r->src_port_max ||
	    p->dst_port < r->dst_port_min || p->dst_port > r->dst_port_max)
		return 0;
	if (r->flags & MIRROR_RULE_IPV6) {
		for (int w = 0; w < 3; w++) {
			if ((p->src_be[w + 1] & r->src_mask6_be[w]) != r->src_addr6_be[w] ||
			    (p->dst_be[w + 1] & r->dst_mask6_be[w]) != r->dst_addr6_be[w])
				return 0;
		}
	}
	return 1;
}

/* The policy's address and protocol bounds (mirror_structs.h): false when no
 * rule of it can match the packet, so the walk would end in NO_MATCH anyway.
 * Rules that differ by address or protocol (not only by port) then cost an
 * unmatched packet this instead of the walk. */
static __always_inline int policy_may_match(const struct mirror_policy *pol, const struct mirror_packet *p)
{
	if (p->protocol < pol->protocol_lo || p->protocol > pol->protocol_hi)
		return 0;
	if (p->family == 4) {
		if (!(pol->families & MIRROR_POLICY_IPV4))
			return 0;
		__u32 s = bpf_ntohl(p->src_be[0]), d = bpf_ntohl(p->dst_be[0]);
		return s >= pol->v4_src_lo && s <= pol->v4_src_hi && d >= pol->v4_dst_lo && d <= pol->v4_dst_hi;
	}
	if (!(pol->families & MIRROR_POLICY_IPV6))
		return 0;
	__u64 s = ((__u64)bpf_ntohl(p->src_be[0]) << 32) | bpf_ntohl(p->src_be[1]);
	__u64 d = ((__u64)bpf_ntohl(p->dst_be[0]) << 32) | bpf_ntohl(p->dst_be[1]);
	return s >= pol->v6_src_lo && s <= pol->v6_src_hi && d >= pol->v6_dst_lo && d <= pol->v6_dst_hi;
}

/* Same value for both directions of a flow: the encap stage picks the
 * load-balancer backend with it (SPEC §2: one flow, one backend). */
static __always_inline __u32 symmetric_flow_hash(const struct mirror_packet *p)
{
	__u32 h = p->src_be[0] ^ p->dst_be[0] ^ p->src_be[1] ^ p->dst_be[1] ^
		  p->src_be[2] ^ p->dst_be[2] ^ p->src_be[3] ^ p->dst_be[3];
	if (p->has_ports)
		h ^= ((__u32)(p->src_port ^ p->dst_port)) * 0x9e3779b1u;
	h ^= (__u32)p->protocol << 24;
	/* murmur3 fmix32 */
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static __always_inline void count_source(__u32 source_slot, __u32 direction, __u32 outcome)
{
	__u32 key = mirror_source_stats_key(source_slot, direction);
	struct mirror_source_stats *s = bpf_map_lookup_elem(&source_stats, &key);
	if (!s)
		return;
	s->seen++;
	if (outcome == MIRROR_OUTCOME_NOT_IP)
		s->not_ip++;
	else if (outcome == MIRROR_OUTCOME_NO_MATCH)
		s->no_match++;
	else if (outcome == MIRROR_OUTCOME_REJECT)
		s->rejected++;
	else if (outcome == MIRROR_OUTCOME_SESSION_DISABLED)
		s->session_disabled++;
}

static __always_inline void count_rule(__u32 session_slot, __u32 direction, __u32 rule_index)
{
	__u32 key = mirror_rule_stats_key(session_slot, direction, rule_index);
	struct mirror_rule_stats *s = bpf_map_lookup_elem(&rule_stats, &key);
	if (s)
		s->hits++;
}

/*
 * The whole decision. `ifindex` is the source device; `clone` is 0 in the
 * test-run programs, which return the verdict instead of cloning.
 */
static __always_inline __u32 classify(struct __sk_buff *skb, __u32 direction, __u32 ifindex, int clone)
{
	/* SPEC §6: a copy is never mirrored again, before (cb) or after (mark)
	 * encapsulation. */
	__u32 cb0 = skb->cb[0];
	if (cb0 == MIRROR_COPY_MAGIC || skb->mark == MIRROR_COPY_MARK)
		return mirror_verdict(MIRROR_OUTCOME_COPY, 0, 0, 0);
	/* The attached programs always count; a test run (an explain) only when
	 * asked, so that it does not show up in the metrics. Constant-folded away
	 * in the attached programs. */
	int counting = clone || cb0 == MIRROR_TEST_COUNT;

	__u32 zero = 0;
	struct mirror_active *active = bpf_map_lookup_elem(&mirror_active, &zero);
	if (!active)
		return mirror_verdict(MIRROR_OUTCOME_NO_POLICY, 0, 0, 0);
	/* SPEC §8: the slot is read once; everything below uses that generation. */
	__u32 slot_word = active->slot;
	__u32 slot = slot_word & MIRROR_ACTIVE_SLOT;
	/* SPEC §5: what the source's ACL or security groups drop is not mirrored
	 * (bpf/security.h; the test-run twins do not record flows). Only looked
	 * up when some source has any: otherwise unmatched traffic would pay a
	 * failed hash lookup per packet (SPEC §8). */
	if (slot_word & MIRROR_ACTIVE_SECURITY) {
		__u32 suppressed = security_check(skb, ifindex, slot, direction, clone, counting);
		if (suppressed)
			return suppressed;
	}
	/* The source's prefilter, from the direct-mapped index (mirror_structs.h):
	 * traffic it turns away never pays for the policy's hash lookup. */
	__u32 bucket_key = mirror_prefilter_key(ifindex, slot);
	const struct mirror_prefilter_bucket *bucket = bpf_map_lookup_elem(&mirror_prefilter, &bucket_key);
	if (!bucket)
		return mirror_verdict(MIRROR_OUTCOME_NO_POLICY, 0, 0, slot);
	struct mirror_policy_key key = { .ifindex = ifindex, .slot = slot, .direction = direction };
	struct mirror_policy *policy = NULL;
	struct mirror_prefilter pf;
	if (bucket->ifindex[0] == ifindex) {
		pf = bucket->entry[0][direction];
	} else if (bucket->ifindex[1] == ifindex) {
		pf = bucket->entry[1][direction];
	} else if (bucket->overflow) {
		/* A source the bucket had no way for: only in mirror_policy. */
		policy = bpf_map_lookup_elem(&mirror_policy, &key);
		if (!policy)
			return mirror_verdict(MIRROR_OUTCOME_NO_POLICY, 0, 0, slot);
		pf.src_port_lo = policy->src_port_lo;
		pf.src_port_hi = policy->src_port_hi;
		pf.dst_port_lo = policy->dst_port_lo;
		pf.dst_port_hi = policy->dst_port_hi;
		pf.source_slot = policy->source_slot;
		pf.flags = MIRROR_PREFILTER_POLICY | (policy->needs_ports ? MIRROR_PREFILTER_NEEDS_PORTS : 0) |
			   ((policy->families & MIRROR_POLICY_IPV4) ? MIRROR_PREFILTER_IPV4 : 0) |
			   ((policy->families & MIRROR_POLICY_IPV6) ? MIRROR_PREFILTER_IPV6 : 0);
		pf.protocol_lo = policy->protocol_lo;
		pf.protocol_hi = policy->protocol_hi;
		pf.v4_src_lo = policy->v4_src_lo;
		pf.v4_src_hi = policy->v4_src_hi;
		pf.v4_dst_lo = policy->v4_dst_lo;
		pf.v4_dst_hi = policy->v4_dst_hi;
	} else {
		return mirror_verdict(MIRROR_OUTCOME_NO_POLICY, 0, 0, slot);
	}
	if (!(pf.flags & MIRROR_PREFILTER_POLICY))
		return mirror_verdict(MIRROR_OUTCOME_NO_POLICY, 0, 0, slot);
	__u32 source_slot = pf.source_slot;

	/* Most frames are common ones (parse_common): the prefilter turns them
	 * away by port, protocol and IPv4 address without the full parse and its struct (+0.7 % pps in a paired
	 * A/B under one sender). A frame whose linear area is shorter than
	 * MIRROR_COMMON_HEADERS (AF_PACKET TX-ring frames carry only the Ethernet
	 * header there) is made linear over that much first. Measured against
	 * copying the headers out with bpf_skb_load_bytes instead: the pull is the
	 * cheaper of the two end to end (0.957 against 0.918 of no-mirroring pps,
	 * paired rounds), since the stack pulls those headers right after us anyway. */
	struct mirror_packet pkt = {};
	/* 1 when pkt came from parse_common as a common IPv4 frame that passed every
	 * bound of the prefilter: the full parse and the policy's bounds below would
	 * only repeat what is known (3x10_last: 68 -> 62 ns in BPF_PROG_TEST_RUN). */
	int common_v4 = 0;
	{
#ifndef MIRROR_BENCH_NO_PULL /* only the bench's breakdown builds without it (scripts/bench.d/throughput.sh) */
		__u32 linear = (__u32)((long)skb->data_end - (long)skb->data);
		if (linear < MIRROR_COMMON_HEADERS && skb->len > linear)
			bpf_skb_pull_data(skb, skb->len < MIRROR_COMMON_HEADERS ? skb->len : MIRROR_COMMON_HEADERS);
#endif
		struct mirror_common c = {};
		if (parse_common((void *)(long)skb->data, (void *)(long)skb->data_end, &c)) {
			if (c.dst_port < pf.dst_port_lo || c.dst_port > pf.dst_port_hi || c.src_port < pf.src_port_lo ||
			    c.src_port > pf.src_port_hi || c.protocol < pf.protocol_lo || c.protocol > pf.protocol_hi ||
			    (c.family == 4 ? !(pf.flags & MIRROR_PREFILTER_IPV4) || c.src < pf.v4_src_lo ||
						     c.src > pf.v4_src_hi || c.dst < pf.v4_dst_lo || c.dst > pf.v4_dst_hi
					   : !(pf.flags & MIRROR_PREFILTER_IPV6))) {
				if (counting)
					count_source(source_slot, direction, MIRROR_OUTCOME_NO_MATCH);
				return mirror_verdict(MIRROR_OUTCOME_NO_MATCH, 0, 0, slot);
			}
			if (c.family == 4) {
				/* Exactly what parse_frame finds for such a frame (parse.h). */
				pkt.family = 4;
				pkt.protocol = c.protocol;
				pkt.src_be[0] = bpf_htonl(c.src);
				pkt.dst_be[0] = bpf_htonl(c.dst);
				pkt.src_port = c.src_port;
				pkt.dst_port = c.dst_port;
				pkt.has_ports = 1;
				common_v4 = 1;
			}
		}
	}

	struct parse_cursor cur = {
		.data = (void *)(long)skb->data,
		.data_end = (void *)(long)skb->data_end,
	};
	if (!common_v4)
		parse_frame(&cur, skb->vlan_present, &pkt);
	/* When a header was cut by the end of the linear area while the skb holds
	 * more (IPv4 options, IPv6 extension headers, GRO/TSO packets with a short
	 * head), make the parse window linear and parse again, so the result is
	 * what parse.h promises for the whole frame. */
#ifndef MIRROR_BENCH_NO_PULL /* only the bench's breakdown builds without it (scripts/bench.d/throughput.sh) */
	if (!common_v4 && cur.short_linear && skb->len > (__u32)((long)skb->data_end - (long)skb->data)) {
		__u32 want = skb->len < MIRROR_PARSE_WINDOW ? skb->len : MIRROR_PARSE_WINDOW;
		bpf_skb_pull_data(skb, want);
		cur.data = (void *)(long)skb->data;
		cur.data_end = (void *)(long)skb->data_end;
		cur.short_linear = 0;
		__builtin_memset(&pkt, 0, sizeof(pkt));
		parse_frame(&cur, skb->vlan_present, &pkt);
	}
#endif
	if (pkt.family == 0) {
		if (counting)
			count_source(source_slot, direction, MIRROR_OUTCOME_NOT_IP);
		return mirror_verdict(MIRROR_OUTCOME_NOT_IP, 0, 0, slot);
	}

	/* The policy's prefilter (mirror_structs.h): outside its bounds no rule can
	 * match, and the walk below would end in the same NO_MATCH. */
	if (common_v4) {
		/* Every bound was checked on the common frame above. */
	} else if (pkt.has_ports ? (pkt.dst_port < pf.dst_port_lo || pkt.dst_port > pf.dst_port_hi ||
			     pkt.src_port < pf.src_port_lo || pkt.src_port > pf.src_port_hi)
			  : (pf.flags & MIRROR_PREFILTER_NEEDS_PORTS)) {
		if (counting)
			count_source(source_slot, direction, MIRROR_OUTCOME_NO_MATCH);
		return mirror_verdict(MIRROR_OUTCOME_NO_MATCH, 0, 0, slot);
	}
	if (!policy) {
		policy = bpf_map_lookup_elem(&mirror_policy, &key);
		if (!policy) /* the index and the policies disagree: never written so */
			return mirror_verdict(MIRROR_OUTCOME_NO_POLICY, 0, 0, slot);
	}
	if (!common_v4 && !policy_may_match(policy, &pkt)) {
		if (counting)
			count_source(source_slot, direction, MIRROR_OUTCOME_NO_MATCH);
		return mirror_verdict(MIRROR_OUTCOME_NO_MATCH, 0, 0, slot);
	}

	__u32 match_key = mirror_packet_key(&pkt);
	__u32 count = policy->rule_count;
	/* The walk only finds the first matching rule; what it decides is done once,
	 * after it, so the verifier checks that code once rather than at each of the
	 * loop's iterations (with the limits and the capture inside the loop, the
	 * classifier went over the verifier's million instructions). */
	__u32 hit = MAX_RULES_PER_POLICY;
	for (__u32 i = 0; i < MAX_RULES_PER_POLICY; i++) {
		if (i >= count)
			break;
		if (rule_matches(&policy->rules[i], &pkt, match_key)) {
			hit = i;
			break;
		}
	}
	if (hit < MAX_RULES_PER_POLICY) {
		const struct mirror_rule *r = &policy->rules[hit];
		/* SPEC §4: the first matching rule decides, across sessions. */
		__u32 session_slot = r->session_slot;
		__u32 rule_index = r->rule_index;
		if (r->flags & MIRROR_RULE_DISABLED) {
			/* Only disabled sessions' rules are left: nothing is mirrored,
			 * and the reason is told (mirror_consts.h). */
			__u32 outcome = (r->flags & MIRROR_RULE_ACCEPT) ? MIRROR_OUTCOME_SESSION_DISABLED : MIRROR_OUTCOME_NO_MATCH;
			if (counting)
				count_source(source_slot, direction, outcome);
			return outcome == MIRROR_OUTCOME_NO_MATCH ? mirror_verdict(outcome, 0, 0, slot)
								  : mirror_verdict(outcome, session_slot, rule_index, slot);
		}
		if (counting)
			count_rule(session_slot, direction, rule_index);
		if (!(r->flags & MIRROR_RULE_ACCEPT)) {
			if (counting)
				count_source(source_slot, direction, MIRROR_OUTCOME_REJECT);
			return mirror_verdict(MIRROR_OUTCOME_REJECT, session_slot, rule_index, slot);
		}
		struct mirror_source_stats *src = NULL;
		if (counting) {
			/* SPEC §6: a GSO super-packet stands for gso_segs wire packets. */
			__u32 segs = skb->gso_segs ? skb->gso_segs : 1;
			/* SPEC §10: sampling, the session's rate limit and the host
			 * budget decide before the clone (bpf/limits.h). Only where
			 * copies are counted: an explain never spends tokens. */
			__u32 skip = mirror_limits(skb, &pkt, slot, session_slot, segs);
			__u32 skey = session_slot;
			struct mirror_session_stats *ss = bpf_map_lookup_elem(&session_stats, &skey);
			if (ss) {
				ss->packets += segs;
				ss->bytes += skb->len;
				switch (skip) {
				case MIRROR_SKIP_SAMPLED_OUT:
					ss->skipped_sampled_out += segs;
					break;
				case MIRROR_SKIP_RATE_LIMIT:
					ss->skipped_rate_limit += segs;
					break;
				case MIRROR_SKIP_HOST_BUDGET:
					ss->skipped_host_budget += segs;
					break;
				}
			}
			__u32 skey2 = mirror_source_stats_key(source_slot, direction);
			src = bpf_map_lookup_elem(&source_stats, &skey2);
			if (src)
				src->seen++;
			if (skip != MIRROR_SKIP_NONE)
				return mirror_verdict(MIRROR_OUTCOME_ACCEPT, session_slot, rule_index, slot);
		}
		if (clone) {
			__u32 mirror_ifindex = active->mirror_ifindex;
			long err = -1;
			if (mirror_ifindex) {
				skb->cb[0] = MIRROR_COPY_MAGIC;
				skb->cb[1] = mirror_meta_word1(session_slot, slot, direction);
				skb->cb[2] = symmetric_flow_hash(&pkt);
				skb->cb[3] = source_slot;
				skb->cb[4] = 0;
				err = bpf_clone_redirect(skb, mirror_ifindex, 0);
				/* The original goes on and may be classified by another
				 * source on this host (SPEC §4): it is not a copy. */
				skb->cb[0] = 0;
			}
			if (src) {
				if (err)
					src->clone_errors++;
				else
					src->mirrored++;
			}
		} else if (src) {
			src->mirrored++;
		}
		/* SPEC §11: agentctl capture (bpf/capture.h); one load when none runs. */
		if (counting)
			capture_mirrored(skb, source_slot, direction, session_slot, (rule_index << 16) | r->priority);
		return mirror_verdict(MIRROR_OUTCOME_ACCEPT, session_slot, rule_index, slot);
	}
	if (counting)
		count_source(source_slot, direction, MIRROR_OUTCOME_NO_MATCH);
	return mirror_verdict(MIRROR_OUTCOME_NO_MATCH, 0, 0, slot);
}

/* SPEC §4: TC ingress of the host-side device carries what the ENI sends. */
SEC("tc")
int mirror_tc_ingress(struct __sk_buff *skb)
{
	classify(skb, MIRROR_DIR_OUTBOUND, skb->ifindex, 1);
	return TC_ACT_UNSPEC;
}

/* SPEC §4: TC egress of the host-side device carries what the ENI receives. */
SEC("tc")
int mirror_tc_egress(struct __sk_buff *skb)
{
	classify(skb, MIRROR_DIR_INBOUND, skb->ifindex, 1);
	return TC_ACT_UNSPEC;
}

/*
 * BPF_PROG_TEST_RUN twins: the same decision, returned as a verdict
 * (mirror_verdict) instead of cloned. The source device is skb->mark when set,
 * so one loaded policy can hold many sources while the test runs on lo. They
 * touch no counter unless skb->cb[0] == MIRROR_TEST_COUNT (benchmarks, tests).
 */
SEC("tc")
int mirror_test_ingress(struct __sk_buff *skb)
{
	return classify(skb, MIRROR_DIR_OUTBOUND, skb->mark ? skb->mark : skb->ifindex, 0);
}

SEC("tc")
int mirror_test_egress(struct __sk_buff *skb)
{
	return classify(skb, MIRROR_DIR_INBOUND, skb->mark ? skb->mark : skb->ifindex, 0);
}

/* Benchmark baseline: the cost of BPF_PROG_TEST_RUN itself, subtracted from
 * nothing but reported next to the classifier numbers. */
SEC("tc")
int mirror_test_nop(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}
