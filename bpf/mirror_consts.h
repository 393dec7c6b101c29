/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The numbers the BPF datapath and Swift agree on: quotas and map sizes, flag
 * bits, the words stage 1 leaves in skb->cb for stage 2, the test-run verdict
 * encoding, and the encapsulation's port and overheads. Included through
 * mirror_abi.h (Swift: CMirrorABI), each defined once.
 */
#ifndef MIRROR_CONSTS_H
#define MIRROR_CONSTS_H

#include <linux/types.h>

/* ---- The pinned maps' layout (issue 18, "Rolling upgrades"; bpf/README.md) ----
 * The agent pins its maps under <bpffs>/layout-MIRROR_LAYOUT_VERSION, and an agent
 * that finds another layout's directory builds its own maps beside it, fills them
 * and moves every attachment over (Sources/MirrorDatapath/Kernel/LayoutMove.swift).
 * Bump the version on any change of a pinned map's type, key, value, max_entries
 * or flags, or of what a program expects of a map or of the other stage (the
 * skb->cb words below). MIRROR_LAYOUT_FINGERPRINT is the hash of the pinned maps'
 * definitions this version has (LayoutTests computes it from the built object and
 * fails, naming the new value, when they changed and the version did not).
 * Overridable only so that a test can build an object of another layout
 * (Tests/e2e/cases/rolling_upgrade.sh). */
#ifndef MIRROR_LAYOUT_VERSION
#define MIRROR_LAYOUT_VERSION 2
#endif
#define MIRROR_LAYOUT_FINGERPRINT 0xc9a4265ade3ce45bULL

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

/* SPEC §5 (bpf/security.h) */
#define MAX_SECURITY_GROUPS_PER_SOURCE 5       /* Quota.securityGroupsPerSource */
#define MAX_RULES_PER_SECURITY_GROUP 100       /* Quota.rulesPerSecurityGroup */
#define MAX_RULES_PER_ACL_DIRECTION 20         /* Quota.rulesPerAclDirection */
/* The rules of all groups of one source and direction, merged (5 x 100). */
#define MAX_SECURITY_GROUP_RULES_PER_DIRECTION 500

#define MIRROR_GENERATION_SLOTS 2
#define MIRROR_DIRECTIONS 2

/* SPEC §4: seen from the ENI. Inbound = TC egress of the host-side device. */
enum mirror_direction {
	MIRROR_DIR_INBOUND = 0,
	MIRROR_DIR_OUTBOUND = 1,
};

/* ---- Map sizes that are not a quota (literals, so that Swift imports them) ---- */
#define MIRROR_PREFILTER_BUCKETS 16384   /* a power of two */
#define MIRROR_PREFILTER_WAYS 2
#define MIRROR_PREFILTER_ENTRIES 32768   /* MIRROR_GENERATION_SLOTS * MIRROR_PREFILTER_BUCKETS */
#define MIRROR_RULE_STATS_ENTRIES 400000 /* MAX_SESSIONS * MIRROR_DIRECTIONS * MAX_RULES_PER_DIRECTION */
#define MIRROR_SOURCE_STATS_ENTRIES 16384 /* MAX_SOURCES * MIRROR_DIRECTIONS */
/* encap_stats: one entry per session slot, and MIRROR_ENCAP_STATS_NOT_COPY for
 * frames on the mirror device that are not copies. */
#define MIRROR_ENCAP_STATS_NOT_COPY MAX_SESSIONS
#define MIRROR_ENCAP_STATS_ENTRIES 20001 /* MAX_SESSIONS + 1 */
#define MIRROR_MAX_ENCAP_TEMPLATES (MAX_TARGETS * MAX_BACKENDS)
/* mirror_target_health: keyed like mirror_target (slot * MAX_TARGETS + index). */
#define MIRROR_TARGET_HEALTH_ENTRIES 40000 /* MIRROR_GENERATION_SLOTS * MAX_TARGETS */
#define MIRROR_FLOW_ENTRIES 65536
/* A flow idle this long is forgotten (conntrack keeps UDP 120 s, TCP longer). */
#define MIRROR_FLOW_IDLE_NS 300000000000ULL
/* Overridable for the same test as MIRROR_LAYOUT_VERSION (a changed pinned map). */
#ifndef MIRROR_FRAGMENT_ENTRIES
#define MIRROR_FRAGMENT_ENTRIES 16384
#endif
/* As the kernel's reassembly timeout (net.ipv4.ipfrag_time). */
#define MIRROR_FRAGMENT_IDLE_NS 30000000000ULL

/* ---- Production first (SPEC §10, bpf/limits.h) ---- */
#define MIRROR_LIMITER_HOST MAX_SESSIONS /* mirror_limiter's entry for the host budget */
#define MIRROR_LIMITER_ENTRIES 20001     /* MAX_SESSIONS + 1 */
/* How far ahead of now a bucket may run: a copy is admitted while its bucket is at
 * most this much in debt. 10 ms of the rate can go out at once after a quiet spell
 * (at 1,000 pps: 10 packets), as a Linux policer's burst of rate/HZ would. */
#define MIRROR_LIMIT_BURST_NS 10000000ULL
/* A copy is charged at most this many bits (2^24: 2 MB, far above any GSO copy),
 * so that bits x mirror_session.bit_cost_fs cannot overflow (bitsPerSecond >= 1000:
 * bit_cost_fs <= 10^12). */
#define MIRROR_LIMIT_MAX_COPY_BITS 16777216ULL
/* Why an accepted packet got no copy (session_stats skipped_*). */
enum mirror_skip_reason {
	MIRROR_SKIP_NONE = 0,
	MIRROR_SKIP_SAMPLED_OUT = 1,
	MIRROR_SKIP_RATE_LIMIT = 2,
	MIRROR_SKIP_HOST_BUDGET = 3,
};

/* ---- mirror_active.slot ---- */
#define MIRROR_ACTIVE_SLOT 0x1        /* the generation slot in force */
#define MIRROR_ACTIVE_SECURITY 0x100  /* some source has security groups or an ACL */

/* ---- Rule flags and the packet's match key ---- */
enum mirror_rule_flags {
	MIRROR_RULE_ACCEPT = 1 << 0,      /* else reject */
	MIRROR_RULE_IPV6 = 1 << 1,        /* ethertype ipv6, else ipv4 */
	/* A rule of a disabled session. A policy lists them after every enabled
	 * session's rules (sessions in priority order, as the enabled ones): they
	 * decide nothing (SPEC §4 skips disabled sessions), but the first of them to
	 * match a packet no enabled rule took says whether a disabled session would
	 * have mirrored it (MIRROR_OUTCOME_SESSION_DISABLED) or not (NO_MATCH). */
	MIRROR_RULE_DISABLED = 1 << 2,
};

/*
 * A packet's match key (bpf/parse.h, mirror_packet_key): family, whether the
 * transport protocol is known, whether ports are visible, and the protocol. A
 * rule holds the bits it cares about in match_mask and their wanted values in
 * match_value, so ethertype, protocol and "has ports" are checked with one
 * comparison: (packet key & match_mask) == match_value.
 */
#define MIRROR_KEY_IPV6 0x800             /* family IPv6 */
#define MIRROR_KEY_IPV4 0x400             /* family IPv4 */
#define MIRROR_KEY_PORTS 0x200            /* TCP/UDP ports visible (SPEC §4) */
#define MIRROR_KEY_PROTOCOL_KNOWN 0x100   /* the transport protocol was found */
#define MIRROR_KEY_PROTOCOL 0xff          /* the IP protocol, when known */

/* A protocol number no rule carries: the transport protocol could not be found
 * (bpf/parse.h's mirror_packet.protocol; mirror_policy's protocol bounds). */
#define MIRROR_PROTO_UNKNOWN 256

/* mirror_policy.families: some rule of the policy can match this family. */
#define MIRROR_POLICY_IPV4 0x1
#define MIRROR_POLICY_IPV6 0x2

enum mirror_prefilter_flags {
	MIRROR_PREFILTER_POLICY = 1 << 0,       /* the source has a policy in this direction */
	MIRROR_PREFILTER_NEEDS_PORTS = 1 << 1,  /* mirror_policy.needs_ports */
	MIRROR_PREFILTER_IPV4 = 1 << 2,         /* mirror_policy.families & MIRROR_POLICY_IPV4 */
	MIRROR_PREFILTER_IPV6 = 1 << 3,         /* mirror_policy.families & MIRROR_POLICY_IPV6 */
};

enum mirror_target_kind {
	MIRROR_TARGET_NIC = 0,
	MIRROR_TARGET_LOAD_BALANCER = 1,
};

enum mirror_security_rule_flags {
	MIRROR_SECURITY_RULE_ALLOW = 1 << 0,   /* else deny */
	MIRROR_SECURITY_RULE_IPV6 = 1 << 1,    /* ethertype ipv6, else ipv4 */
};

enum mirror_security_flags {
	MIRROR_SECURITY_HAS_ACL = 1 << 0,      /* no ACL = allow everything */
	MIRROR_SECURITY_HAS_GROUPS = 1 << 1,   /* no groups = allow everything */
};

/* Parsing (bpf/parse.h, Swift PacketParser): only this many leading bytes of a
 * frame are looked at; a header reaching beyond counts as truncated. */
#define MIRROR_PARSE_WINDOW 256
/* IPv6 extension headers walked (hop-by-hop, routing, fragment, destination
 * options, AH) before the transport protocol counts as unknown. */
#define MAX_IPV6_EXT_HEADERS 6

/* ---- Encapsulation (SPEC §6, §11) ---- */
/* A target's `encapsulation` (mirror_target.encapsulation); 0 is the default. */
enum mirror_encapsulation {
	MIRROR_ENCAP_VXLAN = 0,        /* RFC 7348, UDP 4789 */
	MIRROR_ENCAP_GENEVE = 1,       /* RFC 8926, UDP 6081, no options */
	MIRROR_ENCAP_ERSPAN = 2,       /* ERSPAN type II over GRE (0x88BE, sequence numbers) */
};
#define MIRROR_VXLAN_PORT 4789
#define MIRROR_GENEVE_PORT 6081
/* ERSPAN's session ID has 10 bits: a session at an erspan target has vni 0-1023. */
#define MIRROR_ERSPAN_MAX_SESSION_ID 1023
/*
 * What a copy adds to the path, counted as SPEC §6 counts it: outer IP + the
 * tunnel headers + the inner Ethernet header 14. The tunnel headers are 16 bytes
 * for every kind: UDP 8 + VXLAN 8, UDP 8 + GENEVE 8 (no options), or GRE 8 (with
 * its sequence number) + ERSPAN type II 8. So the overhead depends only on the
 * outer family. The longest inner frame (from its Ethernet header) that fits a
 * path MTU is MTU - overhead + 14.
 */
#define MIRROR_TUNNEL_HEADER_LEN 16
#define MIRROR_VXLAN_OVERHEAD_IPV4 50
#define MIRROR_VXLAN_OVERHEAD_IPV6 70
#define MIRROR_GENEVE_OVERHEAD_IPV4 50
#define MIRROR_GENEVE_OVERHEAD_IPV6 70
#define MIRROR_ERSPAN_OVERHEAD_IPV4 50
#define MIRROR_ERSPAN_OVERHEAD_IPV6 70

/* mirror_encap_template.state: what the agent found toward one collector. */
enum mirror_path_state {
	MIRROR_PATH_RESOLVED = 1,      /* route and next-hop MAC known: bpf_redirect */
	MIRROR_PATH_UNRESOLVED = 2,    /* route known, next hop not yet: dropped (neighbor_unresolved) */
	MIRROR_PATH_NONE = 3,          /* no route (or not out of an Ethernet device): nothing can leave */
};

/*
 * ---- Copy metadata, carried in skb->cb[0..4] from classify to encap ----
 * Written on the clone just before bpf_clone_redirect; the original's cb[0] is
 * cleared again afterwards so that it is still classified by other sources (then
 * the attached program marks it for this hook only: MIRROR_SEEN_MAGIC below).
 *   cb[0] = MIRROR_COPY_MAGIC (a copy is never classified again, SPEC §6)
 *   cb[1] = mirror_meta_word1(session_slot, generation slot, direction)
 *   cb[2] = symmetric inner flow hash (same for both directions of a 5-tuple):
 *           picks the backend (mirror_pick_backend, mirror_backend.h); also the
 *           UDP source port entropy
 *   cb[3] = source_slot
 *   cb[4] = 0; MIRROR_META_SEGMENTED on a segment back from the segmenter
 */
#define MIRROR_COPY_MAGIC 0x4d495252u /* "MIRR" */
/*
 * On an original (not a copy) that a classifier of ours has decided on a hook:
 *   cb[0] = MIRROR_SEEN_MAGIC, cb[1] = mirror_seen_word(ifindex, direction)
 * A second classifier of ours on the same hook (a tcx link and a clsact filter
 * while an attachment moves from one to the other: the kernel runs both, tcx
 * first, on the same skb) passes such a packet without deciding again, so it is
 * never mirrored twice. Another hook (another device, or the other direction)
 * classifies it as usual (SPEC §4). Stage 2 never sees it: it is not a copy.
 */
#define MIRROR_SEEN_MAGIC 0x5345454eu /* "SEEN" */
static inline __u32 mirror_seen_word(__u32 ifindex, __u32 direction)
{
	return (ifindex << 1) | (direction & 1);
}
#define MIRROR_META_SEGMENTED 0x53454753u /* cb[4] of a segment: never diverted again */
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

/*
 * ---- Test-run verdicts ----
 * The mirror_test_* programs return the decision instead of cloning:
 *   bits 28..31 outcome (enum mirror_outcome)
 *   bit  24     generation slot used
 *   bits 16..23 rule_index (accept/reject); for a suppression, the security
 *               group's position in the source's securityGroups
 *   bits  0..15 session_slot (accept/reject); for a suppression, the deciding
 *               rule's priority (0 = no rule matched: default deny)
 */
enum mirror_outcome {
	MIRROR_OUTCOME_NO_POLICY = 1,  /* the interface has no policy in this slot */
	MIRROR_OUTCOME_COPY = 2,       /* carries MIRROR_COPY_MAGIC: never classified */
	MIRROR_OUTCOME_NOT_IP = 3,
	MIRROR_OUTCOME_NO_MATCH = 4,
	MIRROR_OUTCOME_REJECT = 5,
	MIRROR_OUTCOME_ACCEPT = 6,
	MIRROR_OUTCOME_SUPPRESSED_BY_SECURITY_GROUP = 7,  /* SPEC §5 */
	MIRROR_OUTCOME_SUPPRESSED_BY_ACL = 8,
	/* Not mirrored: no enabled session's rule matched, and the first rule of a
	 * disabled session that matched accepts (MIRROR_RULE_DISABLED). */
	MIRROR_OUTCOME_SESSION_DISABLED = 9,
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

/* ---- agentctl capture (SPEC §11, bpf/capture.h) ---- */
/* Captures at once: one bit each in mirror_capture_want and mirror_capture_session. */
#define MIRROR_MAX_CAPTURES 8
/* The most bytes of one packet a capture takes: the per-CPU scratch buffer's size
 * (a per-CPU map value may not exceed 32 KiB). */
#define MIRROR_CAPTURE_MAX_SNAPLEN 16384
/* The ring the classifier writes captured packets to, shared by every capture (a
 * power of two of pages). */
#define MIRROR_CAPTURE_RING_BYTES 4194304

#endif /* MIRROR_CONSTS_H */
