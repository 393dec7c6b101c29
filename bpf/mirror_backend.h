/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The load-balancer backend of a copy (SPEC §2: every copy of one flow, both
 * directions, goes to the same healthy backend; SPEC §10: when one backend changes
 * state, only its own flows move). Rendezvous (highest random weight) hashing:
 * each healthy backend scores the flow from the flow hash (skb->cb[2], the same for
 * both directions) and its own address, and the highest score wins. Taking a
 * backend away moves exactly the flows it won, each to the runner-up; bringing it
 * back takes back exactly those. Scores depend on the address, not the backend's
 * position, so reordering the backends of a target moves no flow.
 *
 * Included through mirror_abi.h: stage 2 (encap.bpf.c) runs it per copy and Swift
 * (CMirrorABI) calls the very same functions, so there is no twin to keep in step.
 * At most MAX_BACKENDS scores per copy, a few multiplications each.
 */
#ifndef MIRROR_BACKEND_H
#define MIRROR_BACKEND_H

#include <linux/types.h>
#include "mirror_consts.h"
#include "mirror_structs.h"

/* murmur3's fmix32: every input bit moves every output bit. */
static inline __u32 mirror_mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* A backend's weight for a flow: the flow hash mixed with the backend's address
 * (network order, IPv4 in word 0 and zeros after it). */
static inline __u32 mirror_backend_score(__u32 flow_hash, const __be32 addr_be[4])
{
	__u32 seed = mirror_mix32(addr_be[0] ^ 0x9e3779b9u);
	seed = mirror_mix32(seed ^ addr_be[1]);
	seed = mirror_mix32(seed ^ addr_be[2]);
	seed = mirror_mix32(seed ^ addr_be[3]);
	return mirror_mix32(flow_hash ^ seed);
}

/* The index in t->backends_be of the flow's backend, or -1 when every backend is
 * down. down_mask bit i: backend i is unhealthy (mirror_target_health). The best
 * so far is kept as one number, (score << 8) | (index + 1), 0 for none: one
 * comparison per backend, and no branch on a value the verifier knows, so it
 * does not walk the loop once per possible winner. Equal scores (distinct
 * addresses rarely tie) go to the higher index. */
static inline int mirror_pick_backend(const struct mirror_target *t, __u32 down_mask, __u32 flow_hash)
{
	if (t->backend_count <= 1)
		return t->backend_count == 1 && !(down_mask & 1) ? 0 : -1;
	__u64 best = 0;
	for (__u32 i = 0; i < MAX_BACKENDS; i++) {
		if (i >= t->backend_count)
			break;
		if ((down_mask >> i) & 1)
			continue;
		__u64 key = ((__u64)mirror_backend_score(flow_hash, t->backends_be[i]) << 8) | (i + 1);
		if (key > best)
			best = key;
	}
	return (int)(best & 0xff) - 1;
}

#endif /* MIRROR_BACKEND_H */
