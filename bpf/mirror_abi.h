/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one ABI between the BPF datapath (bpf/NAME.bpf.c) and Swift userspace,
 * which imports this header as the C module CMirrorABI. Split by role, as
 * katran's balancer headers are; nothing is defined twice (shared/STYLE.md):
 *
 *   mirror_consts.h   quotas, map sizes, flag bits, skb->cb words, verdicts,
 *                     the VXLAN port and overheads
 *   mirror_structs.h  every map key and value
 *   mirror_backend.h  the load-balancer backend choice (rendezvous hashing), the
 *                     same code in stage 2 and in Swift
 *   mirror_maps.h     the map definitions (BPF objects only, not part of this)
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

#include "mirror_consts.h"
#include "mirror_structs.h"
#include "mirror_backend.h"

#endif /* MIRROR_ABI_H */
