/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one ABI between the BPF datapath (bpf/NAME.bpf.c) and Swift userspace
 * (imported as the C module CMirrorABI). Every map key and value and every
 * constant lives here; nothing is defined twice (shared/STYLE.md).
 *
 * Byte order: fields ending in `_be` hold network order; every other field is
 * host order. Addresses are 16 bytes; IPv4 sits in word 0 (`[0]`), like
 * MirrorCore's IPAddress.bytes.
 *
 * Policy is double-buffered (SPEC §8): `mirror_active` names the generation slot
 * (0 or 1) in force. Every per-packet policy lookup is keyed by that slot, so a
 * packet reads the slot once and is then evaluated wholly under one policy. The
 * agent writes the inactive slot completely, then flips `mirror_active`.
 */
#ifndef MIRROR_ABI_H
#define MIRROR_ABI_H

#include <linux/types.h>

/* ---- Quotas (SPEC §3; must equal Sources/MirrorCore/Model/Quotas.swift) ---- */
#define MAX_SESSIONS_PER_SOURCE 3      /* Quota.sessionsPerSource */
#define MAX_RULES_PER_DIRECTION 10     /* Quota.rulesPerFilterDirection */
#define MAX_SESSIONS 20000             /* Quota.sessionsPerAgent */
#define MAX_SOURCES 8192               /* Quota.sourcesPerAgent */
#define MAX_BACKENDS 16                /* Quota.backendsPerLoadBalancer */
#define MAX_TARGETS 20000              /* Quota.targetsPerAgent */
/* One source and direction: MAX_SESSIONS_PER_SOURCE x MAX_RULES_PER_DIRECTION
 * rules, flattened in order (a literal so that Swift imports it). */
#define MAX_RULES_PER_POLICY 30

#define MIRROR_GENERATION_SLOTS 2
#define MIRROR_DIRECTIONS 2

/* SPEC §4: seen from the ENI. Inbound = TC egress of the host-side device. */
enum mirror_direction {
	MIRROR_DIR_INBOUND = 0,
	MIRROR_DIR_OUTBOUND = 1,
};

/* ---- Map: mirror_active (ARRAY, 1 entry, key __u32 0) ---- */
struct mirror_active {
	__u32 slot;            /* bit 0 (MIRROR_ACTIVE_SLOT): generation slot in force;
	                        * MIRROR_ACTIVE_SECURITY: some source has security groups
	                        * or an ACL in that generation. One word, written at once. */
	__u32 mirror_ifindex;  /* where bpf_clone_redirect sends copies; 0 = nowhere */
	__u64 generation;      /* monotonically increasing apply counter (metrics) */
};

#define MIRROR_ACTIVE_SLOT 0x1
#define MIRROR_ACTIVE_SECURITY 0x100

/* ---- Map: mirror_policy (HASH, BPF_F_NO_PREALLOC) ---- */
struct mirror_policy_key {
	__u32 ifindex;         /* the source's host-side device */
	__u8 slot;             /* generation slot */
	__u8 direction;        /* enum mirror_direction */
	__u16 pad;             /* must be 0 */
};

enum mirror_rule_flags {
	MIRROR_RULE_ACCEPT = 1 << 0,      /* else reject */
	MIRROR_RULE_IPV6 = 1 << 1,        /* ethertype ipv6, else ipv4 */
};

/*
 * A packet's match key (bpf/parse.h computes it): family, whether the transport
 * protocol is known, whether ports are visible, and the protocol. A rule holds
 * the bits it cares about in match_mask and their wanted values in match_value,
 * so ethertype, protocol and "has ports" are checked with one comparison:
 * (packet key & match_mask) == match_value.
 */
#define MIRROR_KEY_IPV6 0x800             /* family IPv6 */
#define MIRROR_KEY_IPV4 0x400             /* family IPv4 */
#define MIRROR_KEY_PORTS 0x200            /* TCP/UDP ports visible (SPEC §4) */
#define MIRROR_KEY_PROTOCOL_KNOWN 0x100   /* the transport protocol was found */
#define MIRROR_KEY_PROTOCOL 0xff          /* the IP protocol, when known */

/*
 * One rule of the flattened list, laid out so that an IPv4 rule is decided from
 * its first 32 bytes. Address match: (addr & mask_be) == addr_be, word 0 here,
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
	__u32 pad;
	struct mirror_rule rules[MAX_RULES_PER_POLICY];
};

/*
 * ---- Map: mirror_prefilter (ARRAY, key mirror_prefilter_key(ifindex, slot)) ----
 * A direct-mapped index in front of mirror_policy, so that traffic its source's
 * prefilter turns away costs no hash lookup (SPEC §8: unmatched traffic pays
 * almost nothing). Bucket = ifindex modulo MIRROR_PREFILTER_BUCKETS; each bucket
 * (one cache line) holds up to MIRROR_PREFILTER_WAYS sources of one generation
 * slot, both directions each: the policy's source slot and prefilter. A source
 * that does not fit (more sources share the bucket than it has ways) is only in
 * mirror_policy, and the bucket says so with `overflow`. So for an ifindex:
 * in a way = its policy's prefilter (flags 0 for a direction: no policy there);
 * not in a way and no overflow = no policy; not in a way and overflow = look in
 * mirror_policy. Host ifindexes are allocated in ascending order, so the sources
 * of one host rarely share a bucket. The agent derives it from the policies
 * (Swift: PrefilterIndex) and writes it with them, in the same slot.
 */
#define MIRROR_PREFILTER_BUCKETS 16384   /* a power of two */
#define MIRROR_PREFILTER_WAYS 2

enum mirror_prefilter_flags {
	MIRROR_PREFILTER_POLICY = 1 << 0,       /* the source has a policy in this direction */
	MIRROR_PREFILTER_NEEDS_PORTS = 1 << 1,  /* mirror_policy.needs_ports */
};

struct mirror_prefilter {
	__u16 src_port_lo;     /* mirror_policy's bounds, host order */
	__u16 src_port_hi;
	__u16 dst_port_lo;
	__u16 dst_port_hi;
	__u16 source_slot;     /* mirror_policy.source_slot */
	__u8 flags;            /* enum mirror_prefilter_flags */
	__u8 pad;
};

struct mirror_prefilter_bucket {
	__u32 ifindex[MIRROR_PREFILTER_WAYS];  /* 0 = a free way */
	__u32 overflow;        /* 1: further sources of this bucket are only in mirror_policy */
	__u32 pad;
	struct mirror_prefilter entry[MIRROR_PREFILTER_WAYS][MIRROR_DIRECTIONS];
};

#define MIRROR_PREFILTER_ENTRIES 32768   /* MIRROR_GENERATION_SLOTS * MIRROR_PREFILTER_BUCKETS */

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
	__u8 pad;
	__u32 pad2;
};

/* ---- Map: mirror_target (HASH, BPF_F_NO_PREALLOC, key slot * MAX_TARGETS + target_index) ---- */
enum mirror_target_kind {
	MIRROR_TARGET_NIC = 0,
	MIRROR_TARGET_LOAD_BALANCER = 1,
};

struct mirror_target {
	__u8 kind;             /* enum mirror_target_kind */
	__u8 family;           /* 4 or 6: all backends of this family; 0 = mixed (see backend_v6_mask) */
	__u8 backend_count;    /* 1 for nic; 1..MAX_BACKENDS for loadBalancer */
	__u8 pad;
	__u16 path_mtu;        /* underlay path MTU toward the collectors */
	__u16 max_inner_len;   /* SPEC §6: longest inner frame (from its Ethernet header)
	                        * that fits: path_mtu - overhead + 14; copies are truncated to it */
	__u32 backend_v6_mask; /* bit i set: backends_be[i] is IPv6 (else IPv4 in word 0) */
	__u32 pad2;
	__be32 backends_be[MAX_BACKENDS][4]; /* nic: [0]; IPv4 in word 0 */
};

/* SPEC §6: outer IPv4 + UDP + VXLAN + inner Ethernet header. */
#define MIRROR_VXLAN_OVERHEAD_IPV4 50
#define MIRROR_VXLAN_OVERHEAD_IPV6 70
#define MIRROR_VXLAN_PORT 4789

/*
 * ---- Copy metadata, carried in skb->cb[0..4] from classify to encap ----
 * Written on the clone just before bpf_clone_redirect; the original's cb[0] is
 * cleared again afterwards so that it is still classified by other sources.
 *   cb[0] = MIRROR_COPY_MAGIC (a copy is never classified again, SPEC §6)
 *   cb[1] = session_slot | generation slot << 16 | direction << 24
 *   cb[2] = symmetric inner flow hash (same for both directions of a 5-tuple):
 *           pick backend = hash % backend_count; also the UDP source port entropy
 *   cb[3] = source_slot
 *   cb[4] = 0; MIRROR_META_SEGMENTED on a segment back from the segmenter
 * struct mirror_copy_meta is the same 20 bytes viewed as a struct (little endian).
 */
#define MIRROR_COPY_MAGIC 0x4d495252u /* "MIRR" */
/*
 * A copy that already left stage 2 may carry skb->mark == MIRROR_COPY_MARK (the
 * encapsulated VXLAN packet the host itself sends). The classifier never
 * classifies such a packet, so copies routed out through another source device
 * (a collector VM on this host) are not mirrored again (SPEC §6). Stage 2 may set
 * it when the host has no fwmark routing rules that the value would trip.
 */
#define MIRROR_COPY_MARK 0x4d495252u
static inline __u32 mirror_meta_word1(__u32 session_slot, __u32 slot, __u32 direction)
{
	return session_slot | (slot << 16) | (direction << 24);
}
static inline __u32 mirror_meta_session_slot(__u32 word1) { return word1 & 0xffff; }
static inline __u32 mirror_meta_slot(__u32 word1) { return (word1 >> 16) & 0xff; }
static inline __u32 mirror_meta_direction(__u32 word1) { return (word1 >> 24) & 0xff; }

struct mirror_copy_meta {
	__u32 magic;
	__u16 session_slot;
	__u8 slot;
	__u8 direction;
	__u32 flow_hash;
	__u32 source_slot;
	__u32 reserved;
};

/* ---- Counters (PERCPU_ARRAY; userspace sums the CPUs) ---- */

/* session_stats: key session_slot (stable across applies). */
struct mirror_session_stats {
	__u64 packets;        /* wire packets: a GSO super-packet counts gso_segs */
	__u64 bytes;          /* skb->len of the originals (before any truncation) */
};

/* rule_stats: key mirror_rule_stats_key(session_slot, direction, rule_index). */
static inline __u32 mirror_rule_stats_key(__u32 session_slot, __u32 direction, __u32 rule_index)
{
	return (session_slot * MIRROR_DIRECTIONS + direction) * MAX_RULES_PER_DIRECTION + rule_index;
}
#define MIRROR_RULE_STATS_ENTRIES 400000 /* MAX_SESSIONS * MIRROR_DIRECTIONS * MAX_RULES_PER_DIRECTION */

struct mirror_rule_stats {
	__u64 hits;
};

/* source_stats: key mirror_source_stats_key(source_slot, direction). */
static inline __u32 mirror_source_stats_key(__u32 source_slot, __u32 direction)
{
	return source_slot * MIRROR_DIRECTIONS + direction;
}
#define MIRROR_SOURCE_STATS_ENTRIES 16384 /* MAX_SOURCES * MIRROR_DIRECTIONS */

struct mirror_source_stats {
	__u64 seen;           /* packets classified on this source and direction */
	__u64 mirrored;       /* accepted and cloned */
	__u64 rejected;       /* a reject rule decided */
	__u64 no_match;       /* no rule matched */
	__u64 not_ip;         /* ARP, other ethertypes, malformed IP */
	__u64 clone_errors;   /* bpf_clone_redirect failed, or no mirror device set */
};

/*
 * ---- Test-run verdicts ----
 * The mirror_test_* programs return the decision instead of cloning:
 *   bits 28..31 outcome (enum mirror_outcome)
 *   bits 16..23 rule_index (accept/reject)
 *   bits  0..15 session_slot (accept/reject)
 *   bit  24     generation slot used
 */
enum mirror_outcome {
	MIRROR_OUTCOME_NO_POLICY = 1,  /* the interface has no policy in this slot */
	MIRROR_OUTCOME_COPY = 2,       /* carries MIRROR_COPY_MAGIC: never classified */
	MIRROR_OUTCOME_NOT_IP = 3,
	MIRROR_OUTCOME_NO_MATCH = 4,
	MIRROR_OUTCOME_REJECT = 5,
	MIRROR_OUTCOME_ACCEPT = 6,
};
/* skb->cb[0] of a test run that should update the counters like the attached
 * programs do (by default a test run, e.g. an explain, counts nothing). */
#define MIRROR_TEST_COUNT 0x54455354u /* "TEST" */

static inline __u32 mirror_verdict(__u32 outcome, __u32 session_slot, __u32 rule_index, __u32 slot)
{
	return (outcome << 28) | ((slot & 1) << 24) | ((rule_index & 0xff) << 16) | (session_slot & 0xffff);
}
static inline __u32 mirror_verdict_outcome(__u32 v) { return v >> 28; }
static inline __u32 mirror_verdict_slot(__u32 v) { return (v >> 24) & 0x1; }
static inline __u32 mirror_verdict_rule_index(__u32 v) { return (v >> 16) & 0xff; }
static inline __u32 mirror_verdict_session_slot(__u32 v) { return v & 0xffff; }

/* Parsing (bpf/parse.h, Swift PacketParser): only this many leading bytes of a
 * frame are looked at; a header reaching beyond counts as truncated. */
#define MIRROR_PARSE_WINDOW 256
/* IPv6 extension headers walked (hop-by-hop, routing, fragment, destination
 * options, AH) before the transport protocol counts as unknown. */
#define MAX_IPV6_EXT_HEADERS 6

/*
 * ---- encap_stats (PERCPU_ARRAY, key session_slot; key MIRROR_ENCAP_STATS_NOT_COPY
 * counts frames on the mirror device that are not copies) ----
 * Written by stage 2 (encap.bpf.c).
 */
#define MIRROR_ENCAP_STATS_NOT_COPY MAX_SESSIONS
#define MIRROR_ENCAP_STATS_ENTRIES 20001 /* MAX_SESSIONS + 1 */

struct mirror_encap_stats {
	__u64 sent;                    /* copies handed to the VXLAN device */
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
	 * the underlay device (below), not handed to the VXLAN device. */
	__u64 sent_direct;
	/* Pushing the outer headers failed half way (the copy was already changed). */
	__u64 dropped_encap_direct;
};

/*
 * ---- Map: mirror_encap_templates (HASH, key: IPv4 collector address, network order) ----
 * Encapsulation templates. For an IPv4 collector whose next hop is resolved, the
 * agent writes what the outer headers need (netlink route and neighbour lookups,
 * refreshed every second and on each apply). Stage 2 then pushes outer Ethernet,
 * IPv4, UDP and VXLAN headers itself (bpf_skb_adjust_room) and redirects the copy
 * to the underlay device: no per-copy route lookup, no VXLAN device transmit, no
 * netfilter OUTPUT (shared/NOTES.md measured ~1.3x the VXLAN device path). GSO
 * copies, IPv6 collectors and collectors without an entry go through the VXLAN
 * device as before. Not double-buffered: an entry describes the network, not the
 * policy, and each is written in one update.
 */
#define MIRROR_MAX_ENCAP_TEMPLATES (MAX_TARGETS * MAX_BACKENDS)
#define MIRROR_VXLAN_OVERHEAD_IPV4 50   /* outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 */

struct mirror_encap_template {
	__u32 ifindex;         /* the underlay device the route leaves by */
	__be32 src_ipv4_be;    /* the route's preferred source address */
	__u8 dst_mac[6];       /* the next hop */
	__u8 src_mac[6];       /* the underlay device */
	__u16 dst_port;        /* host order: the VXLAN port (4789) */
	__u16 pad;
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
#define MIRROR_META_SEGMENTED 0x53454753u /* cb[4] of a segment: never diverted again */

/*
 * ==== Security groups and network ACLs (SPEC §5) ====
 * Evaluated by bpf/security.h before a packet is classified: a packet that the
 * source's network ACL or security groups drop is not mirrored. Compiled by
 * Sources/MirrorCompiler/SecurityCompiler.swift.
 */
#define MAX_SECURITY_GROUPS_PER_SOURCE 5       /* Quota.securityGroupsPerSource */
#define MAX_RULES_PER_SECURITY_GROUP 100       /* Quota.rulesPerSecurityGroup */
#define MAX_RULES_PER_ACL_DIRECTION 20         /* Quota.rulesPerAclDirection */
/* The rules of all groups of one source and direction, merged (5 x 100). */
#define MAX_SECURITY_GROUP_RULES_PER_DIRECTION 500

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

enum mirror_security_rule_flags {
	MIRROR_SECURITY_RULE_ALLOW = 1 << 0,   /* else deny */
	MIRROR_SECURITY_RULE_IPV6 = 1 << 1,    /* ethertype ipv6, else ipv4 */
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

enum mirror_security_flags {
	MIRROR_SECURITY_HAS_ACL = 1 << 0,      /* no ACL = allow everything */
	MIRROR_SECURITY_HAS_GROUPS = 1 << 1,   /* no groups = allow everything */
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
#define MIRROR_FLOW_ENTRIES 65536
/* A flow idle this long is forgotten (conntrack keeps UDP 120 s, TCP longer). */
#define MIRROR_FLOW_IDLE_NS 300000000000ULL

/* ---- security_stats (PERCPU_ARRAY, key mirror_source_stats_key(source_slot, direction)) ---- */
struct mirror_security_stats {
	__u64 suppressed_by_security_group;
	__u64 suppressed_by_acl;
	__u64 established;     /* allowed by the groups as part of a known flow */
};

/*
 * Test-run verdicts of suppression: mirror_verdict(outcome, priority, group_index, slot),
 * that is bits 0..15 the deciding rule's priority (0 = no rule matched: default
 * deny) and bits 16..23 the group's position in the source's securityGroups.
 */
#define MIRROR_OUTCOME_SUPPRESSED_BY_SECURITY_GROUP 7
#define MIRROR_OUTCOME_SUPPRESSED_BY_ACL 8
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
#define MIRROR_FRAGMENT_ENTRIES 16384
/* As the kernel's reassembly timeout (net.ipv4.ipfrag_time). */
#define MIRROR_FRAGMENT_IDLE_NS 30000000000ULL

/* ==== end of security groups and network ACLs ==== */


#endif /* MIRROR_ABI_H */
