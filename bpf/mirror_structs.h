/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every map key and value, one section per map (the definitions themselves are
 * in mirror_maps.h), with the functions that compute array keys. Included
 * through mirror_abi.h (Swift: CMirrorABI); constants are in mirror_consts.h.
 */
#ifndef MIRROR_STRUCTS_H
#define MIRROR_STRUCTS_H

#include <linux/types.h>
#include "mirror_consts.h"

/* ---- Map: mirror_active (ARRAY, 1 entry, key __u32 0) ---- */
struct mirror_active {
	__u32 slot;            /* bit 0 (MIRROR_ACTIVE_SLOT): generation slot in force;
	                        * MIRROR_ACTIVE_SECURITY: some source has security groups
	                        * or an ACL in that generation. One word, written at once. */
	__u32 mirror_ifindex;  /* where bpf_clone_redirect sends copies; 0 = nowhere */
	__u64 generation;      /* monotonically increasing apply counter (metrics) */
};

/* ---- Map: mirror_policy (HASH, BPF_F_NO_PREALLOC) ---- */
struct mirror_policy_key {
	__u32 ifindex;         /* the source's host-side device */
	__u8 slot;             /* generation slot */
	__u8 direction;        /* enum mirror_direction */
	__u16 pad;             /* must be 0 */
};

/*
 * One rule of the flattened list, laid out so that an IPv4 rule is decided from
 * its first 32 bytes. Match key: (packet key & match_mask) == match_value
 * (MIRROR_KEY_*). Address match: (addr & mask_be) == addr_be, word 0 here,
 * words 1..3 (IPv6 only) in the *6_be arrays; a missing CIDR or /0 has mask 0.
 * Port ranges are inclusive, host order; `all` is 0..65535 (a packet without
 * ports has 0/0, and a rule with any other range requires MIRROR_KEY_PORTS).
 */
struct mirror_rule {
	__u16 match_value;
	__u16 match_mask;
	__u16 src_port_min;
	__u16 src_port_max;
	__u16 dst_port_min;
	__u16 dst_port_max;
	__be32 src_addr_be;
	__be32 src_mask_be;
	__be32 dst_addr_be;
	__be32 dst_mask_be;
	__u16 session_slot;    /* stable slot: key of session_stats, mirror_session */
	__u8 rule_index;       /* position in its filter direction, ascending priority */
	__u8 flags;            /* enum mirror_rule_flags */
	/* IPv6 rules only: address words 1..3 */
	__be32 src_addr6_be[3];
	__be32 src_mask6_be[3];
	__be32 dst_addr6_be[3];
	__be32 dst_mask6_be[3];
	__u16 priority;        /* the rule's priority (dumps and explain) */
	__u8 protocol;         /* the rule's protocol, 0 for `all` (dumps) */
	__u8 pad;
	__u32 pad2;
};

/*
 * The value: the enabled sessions of one source in ascending session priority,
 * each one's rules for the direction in ascending rule priority, concatenated
 * (SPEC §4: the first matching rule decides, across sessions).
 */
struct mirror_policy {
	__u16 source_slot;     /* stable slot: key part of source_stats */
	__u8 rule_count;       /* <= MAX_RULES_PER_POLICY */
	/* A prefilter, so that traffic no rule can match skips the rule walk
	 * (SPEC §8): needs_ports is 1 when every rule needs visible ports, and the
	 * port bounds are the least and greatest ends of the rules' ranges (host
	 * order; 0-65535 as soon as one rule leaves that port open). */
	__u8 needs_ports;
	__u16 src_port_lo;
	__u16 src_port_hi;
	__u16 dst_port_lo;
	__u16 dst_port_hi;
	/* The rest of the prefilter (classify.bpf.c, policy_may_match): the least
	 * and greatest IP protocol and addresses any rule can match, host order, so
	 * that traffic outside them skips the rule walk whatever field the rules
	 * differ by. Protocols 0-MIRROR_PROTO_UNKNOWN as soon as a rule leaves the
	 * protocol open. IPv6 addresses are bounded by their first 64 bits.
	 * `families`: MIRROR_POLICY_IPV4 / _IPV6 when some rule can match that
	 * family (the bounds of a family no rule matches are 0). */
	__u16 protocol_lo;
	__u16 protocol_hi;
	__u8 families;
	__u8 pad[3];
	__u32 v4_src_lo;
	__u32 v4_src_hi;
	__u32 v4_dst_lo;
	__u32 v4_dst_hi;
	__u64 v6_src_lo;
	__u64 v6_src_hi;
	__u64 v6_dst_lo;
	__u64 v6_dst_hi;
	struct mirror_rule rules[MAX_RULES_PER_POLICY];
};

/*
 * ---- Map: mirror_prefilter (ARRAY, key mirror_prefilter_key(ifindex, slot)) ----
 * A direct-mapped index in front of mirror_policy, so that traffic its source's
 * prefilter turns away costs no hash lookup (SPEC §8: unmatched traffic pays
 * almost nothing). Bucket = ifindex modulo MIRROR_PREFILTER_BUCKETS; each bucket
 * (272 bytes; a source reads its 16-byte head and its 64-byte entry) holds up to MIRROR_PREFILTER_WAYS sources of one generation
 * slot, both directions each: the policy's source slot and prefilter. A source
 * that does not fit (more sources share the bucket than it has ways) is only in
 * mirror_policy, and the bucket says so with `overflow`. So for an ifindex:
 * in a way = its policy's prefilter (flags 0 for a direction: no policy there);
 * not in a way and no overflow = no policy; not in a way and overflow = look in
 * mirror_policy. Host ifindexes are allocated in ascending order, so the sources
 * of one host rarely share a bucket. The agent derives it from the policies
 * (Swift: PrefilterIndex) and writes it with them, in the same slot.
 */
struct mirror_prefilter {
	__u16 src_port_lo;     /* mirror_policy's bounds, host order */
	__u16 src_port_hi;
	__u16 dst_port_lo;
	__u16 dst_port_hi;
	__u16 source_slot;     /* mirror_policy.source_slot */
	__u8 flags;            /* enum mirror_prefilter_flags */
	__u8 pad;
	/* mirror_policy's protocol and address bounds (IPv6: by the first 64 bits),
	 * so that common frames whose rules differ by address or protocol are turned
	 * away here too, without the policy's hash lookup. */
	__u16 protocol_lo;
	__u16 protocol_hi;
	__u32 v4_src_lo;
	__u32 v4_src_hi;
	__u32 v4_dst_lo;
	__u32 v4_dst_hi;
	__u64 v6_src_lo;
	__u64 v6_src_hi;
	__u64 v6_dst_lo;
	__u64 v6_dst_hi;
};

struct mirror_prefilter_bucket {
	__u32 ifindex[MIRROR_PREFILTER_WAYS];  /* 0 = a free way */
	__u32 overflow;        /* 1: further sources of this bucket are only in mirror_policy */
	__u32 pad;
	struct mirror_prefilter entry[MIRROR_PREFILTER_WAYS][MIRROR_DIRECTIONS];
};

static inline __u32 mirror_prefilter_key(__u32 ifindex, __u32 slot)
{
	return slot * MIRROR_PREFILTER_BUCKETS + (ifindex & (MIRROR_PREFILTER_BUCKETS - 1));
}

/* ---- Map: mirror_session (ARRAY, key slot * MAX_SESSIONS + session_slot) ---- */
struct mirror_session {
	__u32 vni;             /* host order: bpf_tunnel_key.tunnel_id takes host order */
	__u32 target_index;    /* key (with the same slot) in mirror_target */
	__u16 packet_length;   /* truncate the inner frame to this; 0 = whole packet */
	__u8 enabled;          /* the session's `enabled` (disabled ones have no rules in mirror_policy) */
	/* SPEC §10 (bpf/limits.h), read by stage 1 before it clones. What one copy puts
	 * on the wire, as the classifier estimates it for the bit limits: its inner
	 * frame, cut to copy_max_len (the session's packetLength or its target's
	 * max_inner_len, whichever is shorter; 0 = whole), plus copy_overhead (outer
	 * Ethernet, IP and tunnel headers: the MIRROR_*_OVERHEAD_IPV4 or _IPV6 of its
	 * encapsulation, the IPv6 one for a target that mixes families). */
	__u8 copy_overhead;
	__u16 sample_one_in;   /* sampleOneIn: one accepted packet in N is mirrored; 0 or 1 = all */
	__u16 copy_max_len;
	/* The rate limit as what one unit costs, so that the classifier multiplies
	 * instead of dividing (a 64-bit division per limit was most of the limiter's
	 * cost): 10^9 / packetsPerSecond nanoseconds a packet and 10^15 /
	 * bitsPerSecond femtoseconds a bit, rounded; 0 = no such limit. */
	__u64 packet_cost_ns;
	__u64 bit_cost_fs;
};

/*
 * ---- Map: mirror_limiter (ARRAY, key session_slot; key MIRROR_LIMITER_HOST is the
 * host budget) ----
 * The state of the SPEC §10 rate limits (bpf/limits.h), shared by all CPUs and
 * updated by compare-and-swap: GCRA, the virtual-scheduling form of a token bucket. Each *_tat_ns is
 * the theoretical arrival time of the next copy in bpf_ktime_get_coarse_ns time; a copy
 * is admitted when it is at most MIRROR_LIMIT_BURST_NS ahead of now. Not
 * double-buffered: it is state, not policy. The limits themselves are in
 * mirror_session (per session, double-buffered with the policy) and, for the host,
 * in budget_bit_cost_fs of the host entry (the agent's --max-mirror-bps; writing it
 * restarts that bucket full). A freed session slot's entry is zeroed with its counters.
 */
struct mirror_limiter {
	/* Unused since the clocks are updated by compare-and-swap (limits.h); kept so
	 * that the pinned map's value size does not change. */
#ifdef __bpf__
	struct bpf_spin_lock lock;
#else
	__u32 lock;            /* struct bpf_spin_lock {__u32 val;} */
#endif
	__u32 pad;
	__u64 packets_tat_ns;
	__u64 bits_tat_ns;
	__u64 budget_bit_cost_fs; /* MIRROR_LIMITER_HOST only: 10^15 / the host budget in bits/s; 0 = none */
};

/* ---- Map: mirror_target (HASH, BPF_F_NO_PREALLOC, key slot * MAX_TARGETS + target_index) ---- */
struct mirror_target {
	__u8 kind;             /* enum mirror_target_kind */
	__u8 family;           /* 4 or 6: all backends of this family; 0 = mixed (see backend_v6_mask) */
	__u8 backend_count;    /* 1 for nic; 1..MAX_BACKENDS for loadBalancer */
	__u8 encapsulation;    /* enum mirror_encapsulation (SPEC §11); 0 = vxlan */
	__u16 path_mtu;        /* underlay path MTU toward the collectors */
	__u16 max_inner_len;   /* SPEC §6: longest inner frame (from its Ethernet header)
	                        * that fits: path_mtu - overhead + 14; copies are truncated to it */
	__u32 backend_v6_mask; /* bit i set: backends_be[i] is IPv6 (else IPv4 in word 0) */
	__u32 pad2;
	__be32 backends_be[MAX_BACKENDS][4]; /* nic: [0]; IPv4 in word 0 */
};

/*
 * ---- Map: mirror_target_health (ARRAY, key slot * MAX_TARGETS + target_index, as
 * mirror_target) ----
 * SPEC §10: which collectors of a target the agent's health checks found down.
 * Bit i of down_mask: backends_be[i] of the same key's mirror_target gets no
 * copies (a nic target's one collector is bit 0). All zero (the default, and every
 * target without a healthCheck) = all healthy. The agent writes the slot it is
 * about to put in force with the image, and the slot in force whenever a
 * collector changes state (one 32-bit word, so a reader sees the old or the new).
 */
struct mirror_target_health {
	__u32 down_mask;
	__u32 pad;
};

/* ---- Counters (PERCPU_ARRAY; userspace sums the CPUs) ---- */

/* session_stats: key session_slot (stable across applies). */
struct mirror_session_stats {
	__u64 packets;        /* wire packets: a GSO super-packet counts gso_segs */
	__u64 bytes;          /* skb->len of the originals (before any truncation) */
	/* SPEC §10: of `packets`, those of which no copy was made (bpf/limits.h),
	 * wire packets as above. */
	__u64 skipped_sampled_out;  /* sampleOneIn */
	__u64 skipped_rate_limit;   /* the session's rateLimit */
	__u64 skipped_host_budget;  /* the host's --max-mirror-bps */
};

/* rule_stats: key mirror_rule_stats_key(session_slot, direction, rule_index). */
static inline __u32 mirror_rule_stats_key(__u32 session_slot, __u32 direction, __u32 rule_index)
{
	return (session_slot * MIRROR_DIRECTIONS + direction) * MAX_RULES_PER_DIRECTION + rule_index;
}

struct mirror_rule_stats {
	__u64 hits;
};

/* source_stats: key mirror_source_stats_key(source_slot, direction). */
static inline __u32 mirror_source_stats_key(__u32 source_slot, __u32 direction)
{
	return source_slot * MIRROR_DIRECTIONS + direction;
}

struct mirror_source_stats {
	__u64 seen;           /* packets classified on this source and direction */
	__u64 mirrored;       /* accepted and cloned */
	__u64 rejected;       /* a reject rule decided */
	__u64 no_match;       /* no rule matched */
	__u64 not_ip;         /* ARP, other ethertypes, malformed IP */
	__u64 clone_errors;   /* bpf_clone_redirect failed, or no mirror device set */
	__u64 session_disabled; /* no enabled rule matched; a disabled session's rule would accept */
};

/*
 * ---- encap_stats (PERCPU_ARRAY, key session_slot; key MIRROR_ENCAP_STATS_NOT_COPY
 * counts frames on the mirror device that are not copies) ----
 * Written by stage 2 (encap.bpf.c).
 */
struct mirror_encap_stats {
	__u64 sent;                    /* copies stage 2 encapsulated and put on the underlay itself */
	__u64 sent_bytes;              /* their inner frame bytes, after truncation */
	__u64 truncated_packet_length; /* cut to the session's packetLength */
	__u64 truncated_mtu;           /* cut to fit the path MTU (SPEC §6) */
	__u64 truncated_gso;           /* a GSO copy whose segments do not fit: cut as a whole */
	__u64 dropped_no_session;      /* the session is gone from that generation */
	__u64 dropped_no_target;
	__u64 dropped_truncate;        /* bpf_skb_change_tail failed */
	__u64 dropped_tunnel_key;      /* bpf_skb_set_tunnel_key failed */
	__u64 dropped_not_copy;        /* only on MIRROR_ENCAP_STATS_NOT_COPY */
	/* GSO copies whose segments do not fit, handed to the segmenter (below) instead
	 * of being cut as a whole; their segments come back and count as sent/truncated. */
	__u64 segmented;
	/* Only on MIRROR_ENCAP_STATS_NOT_COPY: frames received on the segmenter that
	 * were not copies (dropped). */
	__u64 dropped_segmenter_not_copy;
	/* Of `sent`: encapsulated by stage 2 itself from a template and redirected to
	 * the underlay device (below). Every copy in `sent` is: the ones handed to the
	 * VXLAN device are counted in `sent_device` instead. */
	__u64 sent_direct;
	/* Pushing the outer headers failed half way (the copy was already changed). */
	__u64 dropped_encap_direct;
	/* The collector has no route (mirror_encap_templates says MIRROR_PATH_NONE), or
	 * a geneve/erspan copy has no template at all: nothing could leave. */
	__u64 dropped_no_route;
	/* SPEC §10: no healthy collector (mirror_target_health): the copy is dropped. */
	__u64 dropped_target_unhealthy;
	/* The next hop toward the collector is not resolved (MIRROR_PATH_UNRESOLVED):
	 * the copy is dropped here rather than queued in the neighbour subsystem, which
	 * drops it unseen when resolution fails. The agent keeps a managed neighbour
	 * entry for every collector next hop, so the kernel resolves it by itself. */
	__u64 dropped_neighbor_unresolved;
	/* Vxlan copies handed to the VXLAN device (mirror0), not in `sent`: only for a
	 * collector whose route the template cannot describe (no entry in
	 * mirror_encap_templates: not out of an Ethernet device, or the agent has not
	 * looked yet) or when the direct path refused a copy. The device routes and
	 * resolves after stage 2, so whether these reach the wire is the device's
	 * counters' to tell (its tx and tx_dropped). */
	__u64 sent_device;
};

/*
 * ---- Map: mirror_encap_templates (HASH, key: the collector address as in
 * mirror_target.backends_be, IPv4 in word 0 and the rest 0) ----
 * Encapsulation templates. For each collector the agent writes what the outer
 * headers need (netlink route and neighbour lookups, refreshed every second and
 * on each apply). Stage 2 then pushes the outer Ethernet, IPv4 or IPv6 header and
 * the tunnel headers of the target's encapsulation itself (bpf_skb_adjust_room)
 * and redirects the copy to the underlay device: no per-copy route lookup, no
 * tunnel device transmit, no netfilter OUTPUT (shared/NOTES.md measured ~1.3x the
 * VXLAN device path). `state` says how: MIRROR_PATH_RESOLVED (bpf_redirect),
 * MIRROR_PATH_UNRESOLVED (the next hop's MAC is not known: the copy is dropped
 * and counted as dropped_neighbor_unresolved, never queued for resolution where
 * the kernel could drop it unseen; the agent's managed neighbour entry makes the
 * kernel resolve it), MIRROR_PATH_NONE (no route: the copy is dropped and
 * counted, never counted as sent). GSO copies take the segmenter first and then
 * this path, of every kind. Only vxlan copies of collectors without an entry (a
 * route the template cannot describe, or the agent has not looked yet) go
 * through the VXLAN device, counted as sent_device; geneve and erspan have no
 * device (SPEC §11: erspan is direct only). Not
 * double-buffered: an entry describes the network, not the policy, and each is
 * written in one update.
 */
struct mirror_encap_template_key {
	__be32 addr_be[4];     /* IPv4 in word 0, words 1..3 zero */
};

struct mirror_encap_template {
	__u32 ifindex;         /* the underlay device the route leaves by */
	__u8 family;           /* the collector's: 4 or 6 */
	__u8 state;            /* enum mirror_path_state */
	__u16 pad;
	__be32 src_be[4];      /* the route's preferred source address (IPv4 in word 0) */
	__be32 nexthop_be[4];  /* the gateway, or the collector itself when on link */
	__u8 dst_mac[6];       /* the next hop (MIRROR_PATH_RESOLVED) */
	__u8 src_mac[6];       /* the underlay device */
};

/*
 * ---- The segmenter (SPEC §6: GSO copies become wire-size copies, each truncated) ----
 * bpf_skb_change_tail on a GSO skb yields ONE packet (shared/NOTES.md). So stage 2
 * hands a GSO copy whose segments would not fit (path MTU or packetLength) to the
 * agent's veth pair instead: bpf_redirect to the egress of its `tx` end, whose
 * gso_max_segs is 1, so the kernel segments the copy in software before veth_xmit
 * (validate_xmit_skb). Each segment arrives on the `rx` end's TC ingress
 * (mirror_segmented), which marks it (cb[4] = MIRROR_META_SEGMENTED) and redirects
 * it to the mirror device's egress, where stage 2 truncates it like any copy.
 * skb->cb (the copy metadata) survives the veth and the segmentation (checked on
 * Linux 6.18: every segment carries the super-packet's cb).
 * Map mirror_segmenter (ARRAY, 1 entry, key 0), private to the encap object (not
 * pinned; the agent writes it after each load): ifindex 0 = no segmenter, GSO copies
 * are cut as a whole (counted in truncated_gso).
 */
struct mirror_segmenter {
	__u32 ifindex;         /* the tx end of the segmenter veth pair; 0 = none */
	__u32 pad;
};

/*
 * ==== Security groups and network ACLs (SPEC §5) ====
 * Evaluated by bpf/security.h before a packet is classified: a packet that the
 * source's network ACL or security groups drop is not mirrored. Compiled by
 * Sources/MirrorCompiler/SecurityCompiler.swift.
 */

/* ---- Map: mirror_security (HASH, BPF_F_NO_PREALLOC), double-buffered like
 * mirror_policy: one entry per (source device, generation slot, direction) for
 * sources with security groups or a network ACL; other sources pay one failed
 * lookup. ---- */
struct mirror_security_key {
	__u32 ifindex;         /* the source's host-side device */
	__u8 slot;             /* generation slot */
	__u8 direction;        /* enum mirror_direction */
	__u16 pad;             /* must be 0 */
};

/*
 * One ACL or security-group rule, matched like struct mirror_rule: the packet key
 * (MIRROR_KEY_*) & match_mask == match_value, then addresses and port ranges
 * (inclusive, host order). A security-group rule's `remote` is the source
 * address for ingress and the destination for egress; its `ports` are the
 * destination ports (SPEC §5); the compiler puts them in the right fields.
 */
struct mirror_security_rule {
	__u16 match_value;
	__u16 match_mask;
	__u16 src_port_min;
	__u16 src_port_max;
	__u16 dst_port_min;
	__u16 dst_port_max;
	__be32 src_addr_be[4];
	__be32 src_mask_be[4];
	__be32 dst_addr_be[4];
	__be32 dst_mask_be[4];
	__u16 priority;        /* the rule's priority (verdicts, explain) */
	__u8 group_index;      /* security groups: position in the source's securityGroups */
	__u8 flags;            /* enum mirror_security_rule_flags */
};

struct mirror_security {
	__u16 source_slot;     /* key part of security_stats (as source_stats) */
	__u8 flags;            /* enum mirror_security_flags */
	__u8 acl_rule_count;   /* <= MAX_RULES_PER_ACL_DIRECTION */
	__u16 group_rule_count; /* <= MAX_SECURITY_GROUP_RULES_PER_DIRECTION */
	__u16 pad;
	/* ascending priority */
	struct mirror_security_rule acl_rules[MAX_RULES_PER_ACL_DIRECTION];
	/* ascending priority, then group order */
	struct mirror_security_rule group_rules[MAX_SECURITY_GROUP_RULES_PER_DIRECTION];
};

/*
 * ---- Map: mirror_flows (LRU_HASH): connections the security groups allowed ----
 * SPEC §5: security groups are stateful. A flow whose first packet the groups
 * allowed (and the ACL let through) is established in both directions: the key
 * is seen from the ENI (local = the ENI's side), so a reply finds its request.
 * Only the attached programs record flows; the test-run twins only read them
 * (an explain must not open a connection).
 */
struct mirror_flow_key {
	__be32 local_be[4];    /* IPv4 in word 0 */
	__be32 remote_be[4];
	__u16 local_port;      /* host order; 0 when the packet shows no ports */
	__u16 remote_port;
	__u32 ifindex;         /* the source device */
	__u8 family;           /* 4 or 6 */
	__u8 protocol;
	__u16 pad;
};

struct mirror_flow {
	__u64 last_seen_ns;    /* bpf_ktime_get_ns of the last packet */
};

/* ---- security_stats (PERCPU_ARRAY, key mirror_source_stats_key(source_slot, direction)) ---- */
struct mirror_security_stats {
	__u64 suppressed_by_security_group;
	__u64 suppressed_by_acl;
	__u64 established;     /* allowed by the groups as part of a known flow */
};

/*
 * ---- Map: mirror_fragments (LRU_HASH): the decision of a datagram's first
 * fragment, for its later fragments (they show no ports; conntrack judges the
 * reassembled datagram once). Written by the attached programs only. ----
 */
struct mirror_fragment_key {
	__be32 src_be[4];      /* IPv4 in word 0 */
	__be32 dst_be[4];
	__u32 ifindex;         /* the source device */
	__u32 id;              /* IPv4 identification / IPv6 fragment identification, host order */
	__u8 family;           /* 4 or 6 */
	__u8 protocol;
	__u8 direction;        /* enum mirror_direction */
	__u8 pad;
};

struct mirror_fragment {
	__u64 seen_ns;         /* bpf_ktime_get_ns of the first fragment */
	__u32 verdict;         /* 0 = let through, else its suppression verdict */
	__u32 pad;
};

/*
 * ==== agentctl capture (SPEC §11, bpf/capture.h) ====
 * Only while a capture runs does the classifier copy what it mirrors into the ring
 * mirror_capture_ring. Captures are numbered 0..MIRROR_MAX_CAPTURES-1 by the agent,
 * one bit each.
 */

/* ---- Map: mirror_capture_want (ARRAY, key mirror_source_stats_key(source_slot,
 * direction)): which captures want what this source mirrors in this direction.
 * All zero = no capture here: the classifier's only cost. ---- */
struct mirror_capture_want {
	__u32 sources;         /* captures taking every packet mirrored here (--source) */
	__u32 sessions;        /* captures of one session that has this source (--session):
	                        * mirror_capture_session decides */
	__u32 snaplen;         /* the largest snaplen of those captures,
	                        * 1..MIRROR_CAPTURE_MAX_SNAPLEN */
	__u32 pad;
};

/* ---- Map: mirror_capture_session (ARRAY, key session_slot) ---- */
struct mirror_capture_session {
	__u32 captures;        /* captures of this session (--session) */
};

/* One record of mirror_capture_ring, followed by cap_len bytes of the packet from
 * its Ethernet header. */
struct mirror_capture_record {
	__u64 ktime_ns;        /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 captures;        /* the captures that want this packet */
	__u32 len;             /* the packet's length (skb->len) */
	__u32 ifindex;         /* the source device */
	__u16 session_slot;
	__u16 source_slot;
	__u16 rule_priority;   /* the accepting rule's priority */
	__u8 rule_index;
	__u8 direction;        /* enum mirror_direction */
	__u32 cap_len;         /* bytes of the packet that follow */
};

/* ---- Map: mirror_capture_scratch (PERCPU_ARRAY, 1 entry): a record is built here,
 * then copied into the ring with its actual length (bpf_ringbuf_reserve takes only
 * constant sizes). ---- */
struct mirror_capture_scratch {
	struct mirror_capture_record record;
	__u8 data[MIRROR_CAPTURE_MAX_SNAPLEN];
};

/* ---- capture_stats (PERCPU_ARRAY, key: capture number) ---- */
struct mirror_capture_stats {
	__u64 records;         /* written to the ring for this capture */
	__u64 lost;            /* wanted but not written: the ring was full (a slow reader) */
};

#endif /* MIRROR_STRUCTS_H */
