#ifndef CNETLINK_H
#define CNETLINK_H
// A narrow C API over libnl-route-3 for the agent: the mirror VXLAN device, ifindex
// lookups and link events. libnl's types stay behind these functions (its macros and
// inline helpers do not import into Swift). Every function returns 0 or a negative
// errno-style code; cnl_strerror() turns it into text.

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A route-netlink socket bound to one network namespace.
typedef struct cnl_context cnl_context;

/// Opens a context. `netns_path` NULL = the calling thread's namespace; otherwise a
/// path such as /run/netns/NAME: the socket is created inside it (the thread switches
/// in and back out within this call only).
int cnl_context_open(const char *netns_path, cnl_context **out);
void cnl_context_close(cnl_context *ctx);

/// ifindex of `name`, or -ENODEV when there is no such link.
int cnl_link_ifindex(cnl_context *ctx, const char *name, int *ifindex_out);

/// Creates `name` as a VXLAN device in collect_md (`external`) mode, UDP destination
/// port `dstport`, learning off, IPv6 off (cnl_link_disable_ipv6), and sets it up.
/// -EEXIST when it already exists.
int cnl_vxlan_external_create(cnl_context *ctx, const char *name, uint16_t dstport, uint32_t mtu);

/// Turns IPv6 off on `name` (net.ipv6.conf.NAME.disable_ipv6 = 1, in the context's
/// namespace): no addresses, no MLD reports, no neighbour discovery from it.
/// -ENOENT when the kernel has no IPv6 or no such interface.
int cnl_link_disable_ipv6(cnl_context *ctx, const char *name);

/// Reads back whether `name` is a VXLAN device in collect_md mode and its port.
/// -EINVAL if the link exists but is not such a device.
int cnl_vxlan_external_info(cnl_context *ctx, const char *name, int *is_external, uint16_t *dstport, int *is_up);

/// The MTU of the path toward `addr` (4 or 16 bytes, network order, by `family`
/// AF_INET/AF_INET6): the route's mtu metric when set (including a learned PMTU),
/// else the MTU of the route's output device. `oif_out` may be NULL.
/// -ENETUNREACH (or another negative errno) when there is no route.
int cnl_route_mtu(cnl_context *ctx, int family, const uint8_t *addr, int *mtu_out, int *oif_out);

/// What the datapath needs to build outer headers toward a collector itself
/// (bpf/mirror_abi.h, "Encapsulation templates"): the route's output device and
/// preferred source address, that device's MAC, the next hop (the gateway, or the
/// collector when on link) and its MAC. Addresses are 4 (AF_INET) or 16 bytes.
typedef struct {
    int oif;
    uint8_t src_ip[16];
    uint8_t nexthop[16];
    uint8_t src_mac[6];
    uint8_t dst_mac[6];
} cnl_encap_path;

/// Fills `out` for `dst` (network order, 4 or 16 bytes by `family`). -EAGAIN while
/// the next hop has no usable neighbour entry (not resolved yet: everything but
/// dst_mac is filled); another negative errno when there is no unicast route out
/// of an Ethernet device (-ENETUNREACH and the like: no route at all).
int cnl_encap_path_lookup(cnl_context *ctx, int family, const uint8_t *dst, cnl_encap_path *out);

/// The NDA_PROTOCOL the agent tags the neighbour entries it creates with (iproute2
/// shows it as `proto 236`): only entries with it are ever removed by the agent.
#define CNL_NEIGH_PROTOCOL 236

/// A managed neighbour entry (NTF_EXT_MANAGED, Linux >= 5.16) for `addr` (4 or 16
/// bytes by `family`) on `ifindex`, tagged CNL_NEIGH_PROTOCOL: the kernel resolves it
/// and re-probes it by itself (every interval_probe_time_ms), with no traffic needed.
/// Creates it, or makes an existing learned entry managed and ours (its state and
/// MAC are kept). Leaves alone permanent, noarp, externally learned and other
/// owners' managed entries. 2 when it was made (or made ours) now, 1 when it was
/// ours already, 0 when left alone.
int cnl_neigh_ensure_managed(cnl_context *ctx, int family, int ifindex, const uint8_t *addr);

/// Deletes the entry for `addr` on `ifindex` when it carries CNL_NEIGH_PROTOCOL:
/// 1 deleted, 0 absent or someone else's.
int cnl_neigh_delete_own(cnl_context *ctx, int family, int ifindex, const uint8_t *addr);

/// One neighbour entry tagged CNL_NEIGH_PROTOCOL (cnl_neigh_list_own).
typedef struct {
    int family;
    int ifindex;
    uint8_t addr[16];
} cnl_neigh_key;

/// Fills up to `max` entries tagged CNL_NEIGH_PROTOCOL (both families) and returns
/// how many there are (may exceed `max`), or a negative errno.
int cnl_neigh_list_own(cnl_context *ctx, cnl_neigh_key *out, int max);

/// How many tc filters (anyone's) sit on the clsact qdisc of ifindex, ingress and
/// egress together; -EINVAL or -ENOENT style errors when there is no such qdisc.
int cnl_clsact_filter_count(cnl_context *ctx, int ifindex);

/// Deletes link `name`; -ENODEV when absent.
int cnl_link_delete(cnl_context *ctx, const char *name);

/// The segmenter (bpf/mirror_abi.h): a veth pair `tx`/`rx` whose `tx` end has
/// gso_max_segs 1, so the kernel segments every GSO skb sent on it in software.
/// Creates the pair, or adopts it when `tx` is a veth whose peer is `rx`; either way
/// sets gso_max_segs 1 on `tx`, MTU 65535 and IPv6 address generation off on both
/// (best effort) and both up. -EEXIST when either name belongs to something else.
int cnl_segmenter_ensure(cnl_context *ctx, const char *tx, const char *rx, int *tx_ifindex, int *rx_ifindex);

/// Deletes the pair when `tx` is a veth whose peer is `rx` (1), else leaves
/// everything alone (0: absent or someone else's).
int cnl_segmenter_remove(cnl_context *ctx, const char *tx, const char *rx);

/// gso_max_segs of link `name` (tests and adoption checks).
int cnl_link_gso_max_segs(cnl_context *ctx, const char *name, uint32_t *out);

/// Link events (RTNLGRP_LINK).
typedef struct cnl_monitor cnl_monitor;

typedef struct cnl_link_event {
    int ifindex;
    int added;  // 1: new or changed link, 0: removed
    int up;     // IFF_UP
    char name[16];  // IFNAMSIZ
} cnl_link_event;

int cnl_monitor_open(const char *netns_path, cnl_monitor **out);
void cnl_monitor_close(cnl_monitor *mon);
/// Waits up to `timeout_ms` for events and stores up to `max` of them.
/// Returns the number stored (0 on timeout) or a negative error.
int cnl_monitor_next(cnl_monitor *mon, int timeout_ms, cnl_link_event *events, int max);

const char *cnl_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
