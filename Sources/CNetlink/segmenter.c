// The segmenter veth pair (CNetlink.h, bpf/mirror_abi.h "The segmenter").
#include "CNetlink.h"
#include "context.h"

#include <errno.h>
#include <string.h>
#include <net/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>

#include <netlink/netlink.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>

#define SEGMENTER_MTU 65535  // veth's max: whatever the sources' MTU, a segment passes

// 1: `tx` is a veth whose peer is `rx`; 0: neither exists; -EEXIST: a name is taken
// by something else. Sets the ifindexes when 1.
static int pair_state(cnl_context *ctx, const char *tx, const char *rx, int *txi, int *rxi) {
    struct rtnl_link *t = NULL, *r = NULL;
    int terr = rtnl_link_get_kernel(ctx->sock, 0, tx, &t);
    int rerr = rtnl_link_get_kernel(ctx->sock, 0, rx, &r);
    int rc;
    if (terr < 0 && rerr < 0) {
        rc = cnl_from_nle(terr) == -ENODEV && cnl_from_nle(rerr) == -ENODEV ? 0 : cnl_from_nle(terr);
    } else if (terr < 0 || rerr < 0) {
        rc = -EEXIST;  // only one of the names exists: not our pair
    } else {
        const char *type = rtnl_link_get_type(t);
        int ours = type && strcmp(type, "veth") == 0 && rtnl_link_get_link(t) == rtnl_link_get_ifindex(r);
        if (ours) { *txi = rtnl_link_get_ifindex(t); *rxi = rtnl_link_get_ifindex(r); }
        rc = ours ? 1 : -EEXIST;
    }
    if (t) rtnl_link_put(t);
    if (r) rtnl_link_put(r);
    return rc;
}

// libnl 3.7 cannot set gso_max_segs: one RTM_NEWLINK (change) carrying it.
static int set_gso_max_segs(cnl_context *ctx, int ifindex, uint32_t segs) {
    struct nl_msg *msg = nlmsg_alloc_simple(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
    if (!msg) return -ENOMEM;
    struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex };
    int err = nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO);
    if (err == 0) err = nla_put_u32(msg, IFLA_GSO_MAX_SEGS, segs);
    if (err < 0) { nlmsg_free(msg); return cnl_from_nle(err); }
    return cnl_from_nle(nl_send_sync(ctx->sock, msg));  // frees msg
}

// IPv6 off (best effort, as on the mirror device: no MLD reports, router or
// neighbour solicitations of the pair's own, which its rx end would drop and
// count), MTU, then up.
static int configure(cnl_context *ctx, const char *name) {
    struct rtnl_link *current = NULL, *change = NULL;
    (void)cnl_link_disable_ipv6(ctx, name);
    int err = rtnl_link_get_kernel(ctx->sock, 0, name, &current);
    if (err < 0) return cnl_from_nle(err);
    change = rtnl_link_alloc();
    if (!change) { rtnl_link_put(current); return -ENOMEM; }
    if (rtnl_link_get_mtu(current) != SEGMENTER_MTU) rtnl_link_set_mtu(change, SEGMENTER_MTU);
    rtnl_link_set_flags(change, IFF_UP);
    err = rtnl_link_change(ctx->sock, current, change, 0);
    rtnl_link_put(change);
    rtnl_link_put(current);
    return cnl_from_nle(err);
}

int cnl_segmenter_ensure(cnl_context *ctx, const char *tx, const char *rx, int *tx_ifindex, int *rx_ifindex) {
    int txi = 0, rxi = 0;
    int rc = pair_state(ctx, tx, rx, &txi, &rxi);
    if (rc < 0) return rc;
    if (rc == 0) {
        struct rtnl_link *link = rtnl_link_veth_alloc();
        if (!link) return -ENOMEM;
        struct rtnl_link *peer = rtnl_link_veth_get_peer(link);
        rtnl_link_set_name(link, tx);
        rtnl_link_set_mtu(link, SEGMENTER_MTU);
        if (peer) { rtnl_link_set_name(peer, rx); rtnl_link_set_mtu(peer, SEGMENTER_MTU); rtnl_link_put(peer); }
        int err = rtnl_link_add(ctx->sock, link, NLM_F_CREATE | NLM_F_EXCL);
        rtnl_link_veth_release(link);
        if (err < 0) return cnl_from_nle(err);
        rc = pair_state(ctx, tx, rx, &txi, &rxi);
        if (rc < 0) return rc;
        if (rc == 0) return -ENODEV;
    }
    rc = set_gso_max_segs(ctx, txi, 1);
    if (rc == 0) rc = configure(ctx, rx);
    if (rc == 0) rc = configure(ctx, tx);
    if (rc < 0) return rc;
    *tx_ifindex = txi;
    *rx_ifindex = rxi;
    return 0;
}

int cnl_segmenter_remove(cnl_context *ctx, const char *tx, const char *rx) {
    int txi = 0, rxi = 0;
    int rc = pair_state(ctx, tx, rx, &txi, &rxi);
    if (rc <= 0) return rc == -EEXIST ? 0 : rc;
    rc = cnl_link_delete(ctx, tx);  // the peer goes with it
    return rc == 0 ? 1 : (rc == -ENODEV ? 0 : rc);
}

int cnl_link_gso_max_segs(cnl_context *ctx, const char *name, uint32_t *out) {
    struct rtnl_link *link = NULL;
    int err = rtnl_link_get_kernel(ctx->sock, 0, name, &link);
    if (err < 0) return cnl_from_nle(err);
    uint32_t v = 0;
    err = rtnl_link_get_gso_max_segs(link, &v);
    rtnl_link_put(link);
    if (err < 0) return cnl_from_nle(err);
    *out = v;
    return 0;
}
