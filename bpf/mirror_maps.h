/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The map definitions every BPF object of the datapath includes (classify and
 * encap). All are pinned by name (LIBBPF_PIN_BY_NAME) under the pin directory
 * the agent gives libbpf, so the second object to load reuses the first one's
 * maps instead of creating its own. Keys and values: bpf/mirror_structs.h.
 */
#ifndef MIRROR_MAPS_H
#define MIRROR_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "mirror_abi.h"

/* The layout these maps have (mirror_consts.h), for the agent to read from the
 * object it is about to load (`BPFDatapath.layout(of:)`): an object built with
 * another layout says so itself. Not pinned, never read by a program. */
const volatile __u32 mirror_layout_version SEC(".rodata.layout") = MIRROR_LAYOUT_VERSION;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mirror_active);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_active SEC(".maps");

/* Hash without preallocation: memory follows the number of sources, and an
 * update replaces an element as a whole (readers see the old or the new list). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SOURCES * MIRROR_DIRECTIONS * MIRROR_GENERATION_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mirror_policy_key);
	__type(value, struct mirror_policy);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_policy SEC(".maps");

/* Preallocated (2 MiB): the index in front of mirror_policy (mirror_structs.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MIRROR_PREFILTER_ENTRIES);
	__type(key, __u32);
	__type(value, struct mirror_prefilter_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_prefilter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SESSIONS * MIRROR_GENERATION_SLOTS);
	__type(key, __u32);
	__type(value, struct mirror_session);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_session SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TARGETS * MIRROR_GENERATION_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct mirror_target);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_target SEC(".maps");

/* SPEC §10: written by the agent's health checks, read by stage 2. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MIRROR_TARGET_HEALTH_ENTRIES);
	__type(key, __u32);
	__type(value, struct mirror_target_health);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_target_health SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SESSIONS);
	__type(key, __u32);
	__type(value, struct mirror_session_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} session_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MIRROR_RULE_STATS_ENTRIES);
	__type(key, __u32);
	__type(value, struct mirror_rule_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rule_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MIRROR_SOURCE_STATS_ENTRIES);
	__type(key, __u32);
	__type(value, struct mirror_source_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} source_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MIRROR_ENCAP_STATS_ENTRIES);
	__type(key, __u32);
	__type(value, struct mirror_encap_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} encap_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MIRROR_MAX_ENCAP_TEMPLATES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mirror_encap_template_key);
	__type(value, struct mirror_encap_template);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_encap_templates SEC(".maps");

/* SPEC §10 (bpf/limits.h): each value has a bpf_spin_lock (unused now, kept for the
 * value's layout), so the map needs BTF, which libbpf gives every map of a .maps
 * section. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MIRROR_LIMITER_ENTRIES);
	__type(key, __u32);
	__type(value, struct mirror_limiter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_limiter SEC(".maps");

/* ---- Security groups and network ACLs (bpf/security.h) ---- */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SOURCES * MIRROR_DIRECTIONS * MIRROR_GENERATION_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mirror_security_key);
	__type(value, struct mirror_security);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_security SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MIRROR_FLOW_ENTRIES);
	__type(key, struct mirror_flow_key);
	__type(value, struct mirror_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MIRROR_SOURCE_STATS_ENTRIES);
	__type(key, __u32);
	__type(value, struct mirror_security_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} security_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MIRROR_FRAGMENT_ENTRIES);
	__type(key, struct mirror_fragment_key);
	__type(value, struct mirror_fragment);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mirror_fragments SEC(".maps");

#endif /* MIRROR_MAPS_H */
