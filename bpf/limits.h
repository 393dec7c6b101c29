/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * SPEC §10, production first: a session's sampleOneIn and rateLimit and the host's
 * mirroring budget (mirror-agent --max-mirror-bps). The classifier asks
 * `mirror_limits` about each packet a session accepted, BEFORE it clones: a copy
 * that is skipped costs no skb, no head copy and no encapsulation. In this order:
 *
 * 1. Sampling, per packet: the packet is mirrored when bpf_get_prandom_u32() % N
 *    is 0 (the kernel's per-CPU pseudo-random numbers; the modulo bias is below
 *    N / 2^32). Not per flow: SPEC §10 promises one packet in N, which per flow
 *    would only hold for flows of equal size (one elephant flow would be all or
 *    nothing), and random rather than every N-th so that periodic traffic cannot
 *    alias with the sampler, as sFlow (RFC 3176 §4.2.2) argues.
 * 2. The session's rate limit, packets and bits together (either may be 0 = none).
 * 3. The host budget, bits only, all sessions together. A copy skipped by its
 *    session's limit never takes from the host budget; one the host budget skips
 *    has already spent its session's tokens (the session's limit stays an upper
 *    bound, which is what an operator set it as).
 *
 * Limits are GCRA (the virtual-scheduling form of a token bucket) in
 * mirror_limiter, one bucket per session slot and one for the host, shared by all
 * CPUs and updated by compare-and-swap (gcra_take): exact across CPUs, at the price
 * of one or two atomic operations per copy for sessions that have a limit
 * (sessions without a limit never touch a bucket). A
 * bucket admits a copy while it is at most MIRROR_LIMIT_BURST_NS in debt, then
 * charges it: a copy larger than the burst still goes out and the debt delays the
 * next ones, so the long-run rate is exact for any copy size. A unit's cost comes
 * precomputed (mirror_session.packet_cost_ns, bit_cost_fs), so a copy costs two
 * multiplications, not two 64-bit divisions; time is bpf_ktime_get_coarse_ns.
 *
 * Bits count the copy as it will be sent (SPEC §10), outer headers included, as a
 * qdisc on the underlay counts it (skb->len: Ethernet header, no FCS): the inner
 * frame cut to mirror_session.copy_max_len, plus copy_overhead. What stage 1
 * cannot know exactly it estimates: a load balancer that mixes address families
 * is charged the IPv6 overhead for every copy (at most 20 bytes a copy too
 * many); a GSO super-packet counts as its gso_segs wire copies, each with its
 * own outer headers and cut on its own, the headers of each full segment
 * estimated as Ethernet + IPv4/IPv6 without options + TCP with timestamps (32) or
 * UDP (8) (exact for Linux TCP; a few bytes off otherwise).
 */
#ifndef MIRROR_LIMITS_H
#define MIRROR_LIMITS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "mirror_abi.h"
#include "parse.h"

#define MIRROR_FS_PER_NS 1000000ULL

/* One GCRA clock: admitted when it is at most the burst ahead of now, and then
 * charged, by compare-and-swap rather than under the bucket's bpf_spin_lock. The
 * lock (a helper call that also saves and disables interrupts) cost 10 ns a copy
 * more in `mirror-bench classifier` (1x1_limits 49 against 39 ns, side by side on
 * a quiet host). A clock another CPU moved in between is read again; after four
 * such races, rare with two writers, the copy is admitted and charged by an
 * atomic add, so the clock never loses a charge. */
static __always_inline int gcra_take(__u64 *tat, __u64 now, __u64 cost)
{
	for (int i = 0; i < 4; i++) {
		__u64 old = *(volatile __u64 *)tat;
		__u64 base = old > now ? old : now;
		if (base - now > MIRROR_LIMIT_BURST_NS)
			return 0;
		if (__sync_val_compare_and_swap(tat, old, base + cost) == old)
			return 1;
	}
	__sync_fetch_and_add(tat, cost);
	return 1;
}

/* Both of a bucket's clocks: admitted only when neither is more than the burst
 * ahead of now. A copy the bit clock refuses gives the packet clock its charge
 * back, so each clock is charged only for copies that are made. */
static __always_inline int limiter_admit(struct mirror_limiter *l, __u64 now, __u64 packet_cost_ns,
					 __u64 bit_cost_ns)
{
	if (packet_cost_ns && !gcra_take(&l->packets_tat_ns, now, packet_cost_ns))
		return 0;
	if (bit_cost_ns && !gcra_take(&l->bits_tat_ns, now, bit_cost_ns)) {
		if (packet_cost_ns)
			__sync_fetch_and_add(&l->packets_tat_ns, -packet_cost_ns);
		return 0;
	}
	return 1;
}

/* The bytes the copy (all its wire segments) will put on the underlay: see the
 * header comment. */
static __always_inline __u64 copy_wire_bytes(const struct __sk_buff *skb, const struct mirror_session *sess,
					     const struct mirror_packet *pkt, __u32 segs)
{
	__u32 max = sess->copy_max_len;
	__u32 overhead = sess->copy_overhead;
	__u32 len = skb->len;
	__u32 gso_size = skb->gso_size;
	if (segs <= 1 || !gso_size) {
		if (max && len > max)
			len = max;
		return (__u64)len + overhead;
	}
	__u32 headers = ETH_HLEN_ + (pkt->family == 6 ? 40 : 20) + (pkt->protocol == IPPROTO_TCP_ ? 32 : 8);
	__u32 full = gso_size + headers;
	__u64 before_last = (__u64)(segs - 1) * gso_size;
	__u32 last = len > before_last ? (__u32)(len - before_last) : headers;
	if (max) {
		if (full > max)
			full = max;
		if (last > max)
			last = max;
	}
	return (__u64)(segs - 1) * (full + overhead) + last + overhead;
}

/*
 * Whether the copy of an accepted packet is made: MIRROR_SKIP_NONE, or why not
 * (enum mirror_skip_reason). `segs` is the packet's wire packets (gso_segs, at
 * least 1). Sessions without sampleOneIn or a rate limit on a host without a
 * budget pay two array lookups and nothing else.
 */
/* A global function: the verifier checks it once, not at every state of the
 * classifier that reaches an accept (which took the classifier over its million
 * instructions). */
__noinline __u32 mirror_limits(struct __sk_buff *skb, const struct mirror_packet *pkt, __u32 slot, __u32 session_slot,
			       __u32 segs)
{
	if (!skb || !pkt)
		return MIRROR_SKIP_NONE;
	__u32 skey = slot * MAX_SESSIONS + session_slot;
	const struct mirror_session *sess = bpf_map_lookup_elem(&mirror_session, &skey);
	if (!sess)
		return MIRROR_SKIP_NONE;
	__u32 n = sess->sample_one_in;
	if (n > 1 && bpf_get_prandom_u32() % n)
		return MIRROR_SKIP_SAMPLED_OUT;

	__u32 hkey = MIRROR_LIMITER_HOST;
	struct mirror_limiter *host = bpf_map_lookup_elem(&mirror_limiter, &hkey);
	/* Read without the lock: one aligned word the agent writes whole. */
	__u64 budget_fs = host ? host->budget_bit_cost_fs : 0;
	__u64 packet_ns = sess->packet_cost_ns, bit_fs = sess->bit_cost_fs;
	if (!packet_ns && !bit_fs && !budget_fs)
		return MIRROR_SKIP_NONE;

	__u64 bits = 0;
	if (bit_fs || budget_fs) {
		bits = copy_wire_bytes(skb, sess, pkt, segs) * 8;
		if (bits > MIRROR_LIMIT_MAX_COPY_BITS)
			bits = MIRROR_LIMIT_MAX_COPY_BITS;
	}
	/* The coarse clock (the last tick's time) costs a load where bpf_ktime_get_ns
	 * reads the clock source; a tick (1-4 ms) is well inside the burst, and the
	 * long-run rate does not depend on the clock's resolution. */
	__u64 now = bpf_ktime_get_coarse_ns();
	if (packet_ns || bit_fs) {
		__u32 lkey = session_slot;
		struct mirror_limiter *l = bpf_map_lookup_elem(&mirror_limiter, &lkey);
		if (l && !limiter_admit(l, now, segs * packet_ns, bits * bit_fs / MIRROR_FS_PER_NS))
			return MIRROR_SKIP_RATE_LIMIT;
	}
	if (budget_fs && host && !limiter_admit(host, now, 0, bits * budget_fs / MIRROR_FS_PER_NS))
		return MIRROR_SKIP_HOST_BUDGET;
	return MIRROR_SKIP_NONE;
}

#endif /* MIRROR_LIMITS_H */
