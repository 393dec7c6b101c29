/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * agentctl capture (SPEC §11): the classifier hands what it mirrors to the agent
 * through a BPF ring buffer, only while a capture runs.
 *
 * Cost: with no capture, one load of a global (mirror_capture_running, zero) and a
 * branch per mirrored packet; unmatched traffic never gets here. While captures run,
 * one array read more (mirror_capture_want of the packet's source and direction,
 * nonzero only where a capture wants it) for every mirrored packet.
 *
 * Why a ring buffer written with bpf_ringbuf_output from a per-CPU scratch buffer:
 *  - bpf_ringbuf_reserve takes only a constant size, so every record would take the
 *    largest snaplen in the ring (16 KiB for a 64-byte packet);
 *    bpf_ringbuf_output copies a bounded variable length.
 *  - bpf_skb_output / bpf_perf_event_output copy from the skb without the scratch
 *    step, but into one perf buffer per CPU: the agent would merge them by time, and
 *    a flood on one CPU fills that CPU's buffer alone. One ring keeps the packets of
 *    every CPU in the order they were written and has one place to lose them.
 *  - Either way the copy never touches the skb (bpf_skb_load_bytes reads it), so the
 *    clone already sent to stage 2 and the original are what they would be without
 *    the capture, and a full ring is a counted loss, never a wait (the datapath never
 *    blocks on a reader).
 *
 * The maps are declared here, not in mirror_maps.h: only the classifier writes them
 * (stage 2 never captures and must not create a ring of its own). They are pinned
 * like every other map, so a restarted agent reads the same ring and clears the
 * wants a dead agent left behind (BPFDatapath+Capture.swift). The global switch is
 * not: each load of the classifier starts with it off.
 */
#ifndef MIRROR_CAPTURE_H
#define MIRROR_CAPTURE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "mirror_abi.h"

/* Nonzero while any capture runs; the agent writes it (BPFDatapath+Capture.swift). In a
 * section of its own, so that it is the whole value of its map (libbpf's internal map
 * ".bss.capture"). Not pinned: each load starts at zero, and the agent loads the
 * classifier (and puts it on every hook) before it takes any capture. */
volatile __u32 mirror_capture_running SEC(".bss.capture");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MIRROR_SOURCE_STATS_ENTRIES);
	__type(key, __u32);
	__type(value, struct mirror_capture_want);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_capture_want SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SESSIONS);
	__type(key, __u32);
	__type(value, struct mirror_capture_session);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_capture_session SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MIRROR_CAPTURE_RING_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_capture_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mirror_capture_scratch);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_capture_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MIRROR_MAX_CAPTURES);
	__type(key, __u32);
	__type(value, struct mirror_capture_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} capture_stats SEC(".maps");

static __always_inline void capture_count(__u32 captures, int written)
{
	for (__u32 i = 0; i < MIRROR_MAX_CAPTURES; i++) {
		if (!(captures & (1u << i)))
			continue;
		__u32 key = i;
		struct mirror_capture_stats *s = bpf_map_lookup_elem(&capture_stats, &key);
		if (!s)
			continue;
		if (written)
			s->records++;
		else
			s->lost++;
	}
}

/*
 * The part that runs only while some capture wants this source and direction
 * (`source_key`, mirror_source_stats_key). A global function: the verifier checks it
 * once, on its own, instead of at every iteration of the classifier's rule loop that
 * can accept (inlined there it made loading the classifier take half as long again).
 * `rule` packs the accepting rule: index in bits 16..23, priority in bits 0..15.
 */
__noinline int mirror_capture_packet(struct __sk_buff *skb, __u32 source_key, __u32 session_slot, __u32 rule)
{
	const struct mirror_capture_want *want = bpf_map_lookup_elem(&mirror_capture_want, &source_key);
	if (!want)
		return 0;
	__u32 captures = want->sources;
	if (want->sessions) {
		const struct mirror_capture_session *s = bpf_map_lookup_elem(&mirror_capture_session, &session_slot);
		if (s)
			captures |= want->sessions & s->captures;
	}
	if (!captures)
		return 0;
	__u32 zero = 0;
	struct mirror_capture_scratch *buf = bpf_map_lookup_elem(&mirror_capture_scratch, &zero);
	if (!buf)
		return 0;
	__u32 len = skb->len;
	__u32 snaplen = want->snaplen;
	if (len > snaplen)
		len = snaplen;
	if (len > MIRROR_CAPTURE_MAX_SNAPLEN)
		len = MIRROR_CAPTURE_MAX_SNAPLEN;
	if (len == 0)
		return 0;
	buf->record.ktime_ns = bpf_ktime_get_ns();
	buf->record.captures = captures;
	buf->record.len = skb->len;
	buf->record.ifindex = skb->ifindex;
	buf->record.session_slot = session_slot;
	buf->record.source_slot = source_key / MIRROR_DIRECTIONS;
	buf->record.rule_priority = rule & 0xffff;
	buf->record.rule_index = (rule >> 16) & 0xff;
	buf->record.direction = source_key % MIRROR_DIRECTIONS;
	buf->record.cap_len = len;
	if (bpf_skb_load_bytes(skb, 0, buf->data, len) != 0 ||
	    bpf_ringbuf_output(&mirror_capture_ring, buf, sizeof(buf->record) + len, 0) != 0) {
		capture_count(captures, 0);
		return 0;
	}
	capture_count(captures, 1);
	return 1;
}

/*
 * A packet the classifier mirrors (SPEC §11: what the session or the source and
 * direction mirrors): with no capture, one load and a branch.
 */
static __always_inline void capture_mirrored(struct __sk_buff *skb, __u32 source_slot, __u32 direction,
					     __u32 session_slot, __u32 rule)
{
#ifdef MIRROR_BENCH_NO_CAPTURE /* only the benchmark's baseline builds without it (scripts/bench-classifier) */
	return;
#endif
	if (!mirror_capture_running)
		return;
	__u32 key = mirror_source_stats_key(source_slot, direction);
	const struct mirror_capture_want *want = bpf_map_lookup_elem(&mirror_capture_want, &key);
	if (want && (want->sources | want->sessions))
		mirror_capture_packet(skb, key, session_slot, rule);
}

#endif /* MIRROR_CAPTURE_H */
