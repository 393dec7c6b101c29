#define _GNU_SOURCE
#include "CNetlink.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <netlink/netlink.h>
#include <netlink/errno.h>
#include <netlink/socket.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/classifier.h>
#include <linux/pkt_sched.h>

#include "context.h"

struct cnl_monitor {
    struct nl_sock *sock;
    cnl_link_event *buf;
    int max;
    int count;
};

// libnl returns its own NLE_* codes; the API promises negative errno values.
static int from_nle(int err) {
    if (err >= 0) return 0;
    switch (-err) {
    case NLE_EXIST: return -EEXIST;
    case NLE_OBJ_NOTFOUND: case NLE_NODEV: return -ENODEV;
    case NLE_PERM: return -EPERM;
    case NLE_NOMEM: return -ENOMEM;
    case NLE_INVAL: return -EINVAL;
    case NLE_OPNOTSUPP: return -EOPNOTSUPP;
    case NLE_BUSY: return -EBUSY;
    case NLE_NOACCESS: return -EACCES;
    case NLE_RANGE: return -ERANGE;
    case NLE_AGAIN: return -EAGAIN;
    default: return -EIO;
    }
}

int cnl_from_nle(int err) { return from_nle(err); }

// Enters `netns_path` (NULL: stays) on the calling thread only, so callers on a
// thread pool are safe; *saved is what leave_netns restores.
static int enter_netns(const char *netns_path, int *saved) {
    *saved = -1;
    if (!netns_path) return 0;
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0) return -errno;
    int target = open(netns_path, O_RDONLY | O_CLOEXEC);
    if (target < 0) { int rc = -errno; close(self); return rc; }
    int rc = setns(target, CLONE_NEWNET) < 0 ? -errno : 0;
    close(target);
    if (rc < 0) { close(self); return rc; }
    *saved = self;
    return 0;
}

// Back to where enter_netns was called; -errno should never happen.
static int leave_netns(int saved) {
    if (saved < 0) return 0;
    int rc = setns(saved, CLONE_NEWNET) < 0 ? -errno : 0;
    close(saved);
    return rc;
}

// Creates a connected route socket inside `netns_path` (NULL: here). The socket
// stays bound to the namespace it was created in.
static int open_socket(const char *netns_path, struct nl_sock **out) {
    int saved, rc = enter_netns(netns_path, &saved);
    if (rc < 0) return rc;
    struct nl_sock *sock = nl_socket_alloc();
    if (!sock) rc = -ENOMEM;
    else {
        int err = nl_connect(sock, NETLINK_ROUTE);
        if (err < 0) { rc = from_nle(err); nl_socket_free(sock); sock = NULL; }
    }
    int back = leave_netns(saved);
    if (back < 0 && rc == 0) rc = back;
    if (rc == 0) *out = sock; else if (sock) nl_socket_free(sock);
    return rc;
}

int cnl_context_open(const char *netns_path, cnl_context **out) {
    struct nl_sock *sock = NULL;
    int rc = open_socket(netns_path, &sock);
    if (rc < 0) return rc;
    cnl_context *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) { nl_socket_free(sock); return -ENOMEM; }
    ctx->sock = sock;
    if (netns_path && !(ctx->netns_path = strdup(netns_path))) {
        nl_socket_free(sock);
        free(ctx);
        return -ENOMEM;
    }
    *out = ctx;
    return 0;
}

void cnl_context_close(cnl_context *ctx) {
    if (!ctx) return;
    nl_socket_free(ctx->sock);
    free(ctx->netns_path);
    free(ctx);
}

// rtnetlink has no attribute for an interface's disable_ipv6 (the IPv6 link
// attributes set only the token and the address generation mode, and "no address"
// still leaves a forwarding host's all-routers reports), so this writes the sysctl.
// Net sysctls belong to the namespace of whoever opens them: the file is opened
// inside the context's namespace.
int cnl_link_disable_ipv6(cnl_context *ctx, const char *name) {
    if (!name[0] || strchr(name, '/') || strlen(name) >= IFNAMSIZ) return -EINVAL;
    char path[96];
    snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
    int saved, rc = enter_netns(ctx->netns_path, &saved);
    if (rc < 0) return rc;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) rc = -errno;
    int back = leave_netns(saved);
    if (back < 0 && rc == 0) rc = back;
    if (fd < 0) return rc;
    if (write(fd, "1\n", 2) != 2 && rc == 0) rc = -errno;
    close(fd);
    return rc;
}

int cnl_link_ifindex(cnl_context *ctx, const char *name, int *ifindex_out) {
    struct rtnl_link *link = NULL;
    int err = rtnl_link_get_kernel(ctx->sock, 0, name, &link);
    if (err < 0) return from_nle(err);
    *ifindex_out = rtnl_link_get_ifindex(link);
    rtnl_link_put(link);
    return 0;
}

int cnl_vxlan_external_create(cnl_context *ctx, const char *name, uint16_t dstport, uint32_t mtu) {
    struct rtnl_link *link = rtnl_link_vxlan_alloc();
    if (!link) return -ENOMEM;
    rtnl_link_set_name(link, name);
    int err = rtnl_link_vxlan_set_collect_metadata(link, 1);
    if (err == 0) err = rtnl_link_vxlan_set_port(link, dstport);
    if (err == 0) err = rtnl_link_vxlan_set_learning(link, 0);
    if (err == 0 && mtu > 0) rtnl_link_set_mtu(link, mtu);
    if (err == 0) err = rtnl_link_add(ctx->sock, link, NLM_F_CREATE | NLM_F_EXCL);
    rtnl_link_put(link);
    if (err < 0) return from_nle(err);

    // Only copies may leave the device: with IPv6 on, it would send MLD reports and
    // DAD solicitations of its own as soon as it is up (stage 2 drops them, but
    // counts them as foreign frames). Best effort: without IPv6 (no such sysctl)
    // there is nothing to silence.
    (void)cnl_link_disable_ipv6(ctx, name);

    // Up in a second step: the kernel applies IFF_UP from RTM_NEWLINK only for some
    // link kinds, and a change request is explicit.
    struct rtnl_link *current = NULL, *change = NULL;
    err = rtnl_link_get_kernel(ctx->sock, 0, name, &current);
    if (err < 0) return from_nle(err);
    change = rtnl_link_alloc();
    if (!change) { rtnl_link_put(current); return -ENOMEM; }
    rtnl_link_set_flags(change, IFF_UP);
    err = rtnl_link_change(ctx->sock, current, change, 0);
    rtnl_link_put(change);
    rtnl_link_put(current);
    return from_nle(err);
}

int cnl_vxlan_external_info(cnl_context *ctx, const char *name, int *is_external, uint16_t *dstport, int *is_up) {
    struct rtnl_link *link = NULL;
    int err = rtnl_link_get_kernel(ctx->sock, 0, name, &link);
    if (err < 0) return from_nle(err);
    const char *type = rtnl_link_get_type(link);
    if (!type || strcmp(type, "vxlan") != 0) { rtnl_link_put(link); return -EINVAL; }
    int md = rtnl_link_vxlan_get_collect_metadata(link);
    *is_external = md > 0 ? 1 : 0;
    uint32_t port = 0;
    if (rtnl_link_vxlan_get_port(link, &port) == 0) *dstport = (uint16_t)port; else *dstport = 0;
    *is_up = (rtnl_link_get_flags(link) & IFF_UP) ? 1 : 0;
    rtnl_link_put(link);
    return 0;
}

/* Sends one request built on `msg` (freed here) outside libnl's sequence
 * bookkeeping, and returns the raw answer in `*buf_out` (free() it) and its length.
 * No ACK is asked for (it would stay queued and be taken for the answer to the
 * socket's next request) and no sequence number is taken from the socket (its
 * expected number would go out of step). For `ip route get`/`ip neigh get`, which
 * libnl's cache objects do not model. */
static int raw_query(cnl_context *ctx, struct nl_msg *msg, unsigned char **buf_out) {
    nlmsg_hdr(msg)->nlmsg_flags = NLM_F_REQUEST;
    nlmsg_hdr(msg)->nlmsg_seq = 0;
    int err = nl_send(ctx->sock, msg);
    nlmsg_free(msg);
    if (err < 0) return from_nle(err);
    struct sockaddr_nl peer;
    int n = nl_recv(ctx->sock, &peer, buf_out, NULL);
    if (n <= 0) { free(*buf_out); *buf_out = NULL; return n < 0 ? from_nle(n) : -EIO; }
    return n;
}

/* RTM_GETROUTE toward `addr`; the answer (free() it) in `*buf_out`. */
static int route_get(cnl_context *ctx, int family, const uint8_t *addr, unsigned char **buf_out) {
    if (family != AF_INET && family != AF_INET6) return -EAFNOSUPPORT;
    int alen = family == AF_INET ? 4 : 16;
    struct nl_msg *msg = nlmsg_alloc_simple(RTM_GETROUTE, NLM_F_REQUEST);
    if (!msg) return -ENOMEM;
    struct rtmsg rtm = { .rtm_family = (unsigned char)family, .rtm_dst_len = (unsigned char)(alen * 8) };
    int err = nlmsg_append(msg, &rtm, sizeof(rtm), NLMSG_ALIGNTO);
    if (err == 0) err = nla_put(msg, RTA_DST, alen, addr);
    if (err < 0) { nlmsg_free(msg); return from_nle(err); }
    return raw_query(ctx, msg, buf_out);
}

int cnl_route_mtu(cnl_context *ctx, int family, const uint8_t *addr, int *mtu_out, int *oif_out) {
    unsigned char *buf = NULL;
    int n = route_get(ctx, family, addr, &buf);
    if (n < 0) return n;
    struct nlmsghdr *hdr = (struct nlmsghdr *)buf;
    int rc = -ENOENT, mtu = 0, oif = 0;
    for (; nlmsg_ok(hdr, n); hdr = nlmsg_next(hdr, &n)) {
        if (hdr->nlmsg_type == NLMSG_ERROR) {
            struct nlmsgerr *e = nlmsg_data(hdr);
            rc = e->error < 0 ? e->error : -EIO;
            break;
        }
        if (hdr->nlmsg_type != RTM_NEWROUTE) continue;
        struct nlattr *tb[RTA_MAX + 1];
        if (nlmsg_parse(hdr, sizeof(struct rtmsg), tb, RTA_MAX, NULL) < 0) { rc = -EIO; break; }
        if (tb[RTA_OIF]) oif = (int)nla_get_u32(tb[RTA_OIF]);
        if (tb[RTA_METRICS]) {
            struct nlattr *mx[RTAX_MAX + 1];
            if (nla_parse_nested(mx, RTAX_MAX, tb[RTA_METRICS], NULL) == 0 && mx[RTAX_MTU])
                mtu = (int)nla_get_u32(mx[RTAX_MTU]);
        }
        rc = 0;
        break;
    }
    free(buf);
    if (rc < 0) return rc;
    if (mtu == 0 && oif > 0) {
        struct rtnl_link *link = NULL;
        int lerr = rtnl_link_get_kernel(ctx->sock, oif, NULL, &link);
        if (lerr < 0) return from_nle(lerr);
        if (!link) return -EIO;
        mtu = (int)rtnl_link_get_mtu(link);
        rtnl_link_put(link);
    }
    if (mtu == 0) return -ENOENT;
    *mtu_out = mtu;
    if (oif_out) *oif_out = oif;
    return 0;
}

int cnl_encap_path_lookup(cnl_context *ctx, int family, const uint8_t *dst, cnl_encap_path *out) {
    memset(out, 0, sizeof(*out));
    if (family != AF_INET && family != AF_INET6) return -EAFNOSUPPORT;
    const int alen = family == AF_INET ? 4 : 16;
    unsigned char *buf = NULL;
    int n = route_get(ctx, family, dst, &buf);
    if (n < 0) return n;
    int rc = -ENOENT, have_src = 0;
    memcpy(out->nexthop, dst, alen);
    for (struct nlmsghdr *hdr = (struct nlmsghdr *)buf; nlmsg_ok(hdr, n); hdr = nlmsg_next(hdr, &n)) {
        if (hdr->nlmsg_type == NLMSG_ERROR) {
            struct nlmsgerr *e = nlmsg_data(hdr);
            rc = e->error < 0 ? e->error : -EIO;
            break;
        }
        if (hdr->nlmsg_type != RTM_NEWROUTE) continue;
        struct rtmsg *rtm = nlmsg_data(hdr);
        struct nlattr *tb[RTA_MAX + 1];
        if (nlmsg_parse(hdr, sizeof(struct rtmsg), tb, RTA_MAX, NULL) < 0) { rc = -EIO; break; }
        // Local, broadcast or multicast destinations are not sent out of a device.
        if (rtm->rtm_type != RTN_UNICAST || !tb[RTA_OIF]) { rc = -EHOSTUNREACH; break; }
        out->oif = (int)nla_get_u32(tb[RTA_OIF]);
        if (tb[RTA_PREFSRC] && nla_len(tb[RTA_PREFSRC]) == alen) { memcpy(out->src_ip, nla_data(tb[RTA_PREFSRC]), alen); have_src = 1; }
        if (tb[RTA_GATEWAY] && nla_len(tb[RTA_GATEWAY]) == alen) memcpy(out->nexthop, nla_data(tb[RTA_GATEWAY]), alen);
        rc = 0;
        break;
    }
    free(buf);
    if (rc < 0) return rc;
    if (!have_src) return -EADDRNOTAVAIL;

    struct rtnl_link *link = NULL;
    int lerr = rtnl_link_get_kernel(ctx->sock, out->oif, NULL, &link);
    if (lerr < 0) return from_nle(lerr);
    if (!link) return -EIO;
    struct nl_addr *lladdr = rtnl_link_get_addr(link);
    int mac_ok = lladdr && nl_addr_get_len(lladdr) == 6;
    if (mac_ok) memcpy(out->src_mac, nl_addr_get_binary_addr(lladdr), 6);
    rtnl_link_put(link);
    if (!mac_ok) return -EPFNOSUPPORT;  // not an Ethernet device

    // `ip neigh get HOP dev OIF`: the next hop's MAC, when the entry is usable.
    struct nl_msg *msg = nlmsg_alloc_simple(RTM_GETNEIGH, NLM_F_REQUEST);
    if (!msg) return -ENOMEM;
    struct ndmsg ndm = { .ndm_family = (unsigned char)family, .ndm_ifindex = out->oif };
    int err = nlmsg_append(msg, &ndm, sizeof(ndm), NLMSG_ALIGNTO);
    if (err == 0) err = nla_put(msg, NDA_DST, alen, out->nexthop);
    if (err < 0) { nlmsg_free(msg); return from_nle(err); }
    n = raw_query(ctx, msg, &buf);
    if (n < 0) return n == -ENOENT ? -EAGAIN : n;
    rc = -EAGAIN;
    for (struct nlmsghdr *hdr = (struct nlmsghdr *)buf; nlmsg_ok(hdr, n); hdr = nlmsg_next(hdr, &n)) {
        if (hdr->nlmsg_type == NLMSG_ERROR) {
            struct nlmsgerr *e = nlmsg_data(hdr);
            rc = e->error == -ENOENT ? -EAGAIN : (e->error < 0 ? e->error : -EIO);
            break;
        }
        if (hdr->nlmsg_type != RTM_NEWNEIGH) continue;
        struct ndmsg *nd = nlmsg_data(hdr);
        struct nlattr *tb[NDA_MAX + 1];
        if (nlmsg_parse(hdr, sizeof(struct ndmsg), tb, NDA_MAX, NULL) < 0) { rc = -EIO; break; }
        const int usable = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;
        if ((nd->ndm_state & usable) && tb[NDA_LLADDR] && nla_len(tb[NDA_LLADDR]) == 6) {
            memcpy(out->dst_mac, nla_data(tb[NDA_LLADDR]), 6);
            rc = 0;
        }
        break;
    }
    free(buf);
    return rc;
}

// --- managed neighbour entries (collector next hops) ---------------------------

// A request the kernel acknowledges (NLM_F_ACK): 0 or its negative errno. As
// raw_query, sequence number 0 and the socket's own numbering untouched.
static int acked_request(cnl_context *ctx, struct nl_msg *msg, int flags) {
    nlmsg_hdr(msg)->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | NLM_F_ACK | flags);
    nlmsg_hdr(msg)->nlmsg_seq = 0;
    int err = nl_send(ctx->sock, msg);
    nlmsg_free(msg);
    if (err < 0) return from_nle(err);
    struct sockaddr_nl peer;
    unsigned char *buf = NULL;
    int n = nl_recv(ctx->sock, &peer, &buf, NULL);
    if (n <= 0) { free(buf); return n < 0 ? from_nle(n) : -EIO; }
    int rc = -EIO;
    for (struct nlmsghdr *hdr = (struct nlmsghdr *)buf; nlmsg_ok(hdr, n); hdr = nlmsg_next(hdr, &n)) {
        if (hdr->nlmsg_type == NLMSG_ERROR) { rc = ((struct nlmsgerr *)nlmsg_data(hdr))->error; break; }
    }
    free(buf);
    return rc;
}

static struct nl_msg *neigh_msg(int type, int family, int ifindex, const uint8_t *addr) {
    struct nl_msg *msg = nlmsg_alloc_simple(type, NLM_F_REQUEST);
    if (!msg) return NULL;
    struct ndmsg ndm = { .ndm_family = (unsigned char)family, .ndm_ifindex = ifindex };
    if (nlmsg_append(msg, &ndm, sizeof(ndm), NLMSG_ALIGNTO) < 0 ||
        nla_put(msg, NDA_DST, family == AF_INET ? 4 : 16, addr) < 0) {
        nlmsg_free(msg);
        return NULL;
    }
    return msg;
}

typedef struct {
    uint16_t state;
    uint8_t flags;
    uint32_t ext_flags;
    int protocol;  // -1: none
} neigh_info;

// `ip neigh get ADDR dev IFINDEX`: 0 and *info, -ENOENT when there is no entry.
static int neigh_get(cnl_context *ctx, int family, int ifindex, const uint8_t *addr, neigh_info *info) {
    struct nl_msg *msg = neigh_msg(RTM_GETNEIGH, family, ifindex, addr);
    if (!msg) return -ENOMEM;
    unsigned char *buf = NULL;
    int n = raw_query(ctx, msg, &buf);
    if (n < 0) return n;
    int rc = -ENOENT;
    for (struct nlmsghdr *hdr = (struct nlmsghdr *)buf; nlmsg_ok(hdr, n); hdr = nlmsg_next(hdr, &n)) {
        if (hdr->nlmsg_type == NLMSG_ERROR) {
            struct nlmsgerr *e = nlmsg_data(hdr);
            rc = e->error < 0 ? e->error : -EIO;
            break;
        }
        if (hdr->nlmsg_type != RTM_NEWNEIGH) continue;
        struct ndmsg *nd = nlmsg_data(hdr);
        struct nlattr *tb[NDA_MAX + 1];
        if (nlmsg_parse(hdr, sizeof(struct ndmsg), tb, NDA_MAX, NULL) < 0) { rc = -EIO; break; }
        info->state = nd->ndm_state;
        info->flags = nd->ndm_flags;
        info->ext_flags = tb[NDA_FLAGS_EXT] ? nla_get_u32(tb[NDA_FLAGS_EXT]) : 0;
        info->protocol = tb[NDA_PROTOCOL] ? nla_get_u8(tb[NDA_PROTOCOL]) : -1;
        rc = 0;
        break;
    }
    free(buf);
    return rc;
}

int cnl_neigh_ensure_managed(cnl_context *ctx, int family, int ifindex, const uint8_t *addr) {
    if (family != AF_INET && family != AF_INET6) return -EAFNOSUPPORT;
    neigh_info info;
    int rc = neigh_get(ctx, family, ifindex, addr, &info);
    if (rc == 0) {
        int managed = (info.ext_flags & NTF_EXT_MANAGED) != 0;
        if (info.protocol == CNL_NEIGH_PROTOCOL && managed) return 1;
        // An administrator's static entry, or one another owner manages: theirs.
        if ((info.state & (NUD_PERMANENT | NUD_NOARP)) || (info.flags & NTF_EXT_LEARNED) || managed) return 0;
    } else if (rc != -ENOENT) {
        return rc;
    }
    // Created, or an entry the kernel learnt made managed: with the managed flag
    // the kernel keeps the entry's state and MAC (__neigh_update) and starts
    // resolving it when it is not valid.
    struct nl_msg *msg = neigh_msg(RTM_NEWNEIGH, family, ifindex, addr);
    if (!msg) return -ENOMEM;
    uint32_t ext = NTF_EXT_MANAGED;
    if (nla_put(msg, NDA_FLAGS_EXT, sizeof(ext), &ext) < 0 || nla_put_u8(msg, NDA_PROTOCOL, CNL_NEIGH_PROTOCOL) < 0) {
        nlmsg_free(msg);
        return -ENOMEM;
    }
    rc = acked_request(ctx, msg, NLM_F_CREATE);
    return rc < 0 ? rc : 2;
}

int cnl_neigh_delete_own(cnl_context *ctx, int family, int ifindex, const uint8_t *addr) {
    if (family != AF_INET && family != AF_INET6) return -EAFNOSUPPORT;
    neigh_info info;
    int rc = neigh_get(ctx, family, ifindex, addr, &info);
    if (rc == -ENOENT || rc == -ENODEV) return 0;
    if (rc < 0) return rc;
    if (info.protocol != CNL_NEIGH_PROTOCOL) return 0;
    struct nl_msg *msg = neigh_msg(RTM_DELNEIGH, family, ifindex, addr);
    if (!msg) return -ENOMEM;
    rc = acked_request(ctx, msg, 0);
    if (rc == -ENOENT || rc == -ENODEV) return 0;
    return rc < 0 ? rc : 1;
}

int cnl_neigh_list_own(cnl_context *ctx, cnl_neigh_key *out, int max) {
    struct nl_msg *msg = nlmsg_alloc_simple(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP);
    if (!msg) return -ENOMEM;
    struct ndmsg ndm = { .ndm_family = AF_UNSPEC };
    if (nlmsg_append(msg, &ndm, sizeof(ndm), NLMSG_ALIGNTO) < 0) { nlmsg_free(msg); return -ENOMEM; }
    nlmsg_hdr(msg)->nlmsg_seq = 0;
    int err = nl_send(ctx->sock, msg);
    nlmsg_free(msg);
    if (err < 0) return from_nle(err);
    int count = 0, done = 0, rc = 0;
    while (!done) {
        struct sockaddr_nl peer;
        unsigned char *buf = NULL;
        int n = nl_recv(ctx->sock, &peer, &buf, NULL);
        if (n <= 0) { free(buf); return n < 0 ? from_nle(n) : -EIO; }
        for (struct nlmsghdr *hdr = (struct nlmsghdr *)buf; nlmsg_ok(hdr, n); hdr = nlmsg_next(hdr, &n)) {
            if (hdr->nlmsg_type == NLMSG_DONE) { done = 1; break; }
            if (hdr->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = nlmsg_data(hdr);
                rc = e->error < 0 ? e->error : -EIO;
                done = 1;
                break;
            }
            if (hdr->nlmsg_type != RTM_NEWNEIGH) continue;
            struct ndmsg *nd = nlmsg_data(hdr);
            struct nlattr *tb[NDA_MAX + 1];
            if (nlmsg_parse(hdr, sizeof(struct ndmsg), tb, NDA_MAX, NULL) < 0) continue;
            if (!tb[NDA_PROTOCOL] || nla_get_u8(tb[NDA_PROTOCOL]) != CNL_NEIGH_PROTOCOL || !tb[NDA_DST]) continue;
            int alen = nd->ndm_family == AF_INET ? 4 : nd->ndm_family == AF_INET6 ? 16 : 0;
            if (!alen || nla_len(tb[NDA_DST]) != alen) continue;
            if (count < max) {
                memset(&out[count], 0, sizeof(out[count]));
                out[count].family = nd->ndm_family;
                out[count].ifindex = nd->ndm_ifindex;
                memcpy(out[count].addr, nla_data(tb[NDA_DST]), alen);
            }
            count++;
        }
        free(buf);
    }
    return rc < 0 ? rc : count;
}

int cnl_clsact_filter_count(cnl_context *ctx, int ifindex) {
    int total = 0;
    uint32_t parents[2] = { TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS), TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS) };
    for (int i = 0; i < 2; i++) {
        struct nl_cache *cache = NULL;
        int err = rtnl_cls_alloc_cache(ctx->sock, ifindex, parents[i], &cache);
        if (err < 0) return from_nle(err);
        total += nl_cache_nitems(cache);
        nl_cache_free(cache);
    }
    return total;
}

int cnl_link_delete(cnl_context *ctx, const char *name) {
    struct rtnl_link *link = rtnl_link_alloc();
    if (!link) return -ENOMEM;
    rtnl_link_set_name(link, name);
    int err = rtnl_link_delete(ctx->sock, link);
    rtnl_link_put(link);
    return from_nle(err);
}

// --- link events -------------------------------------------------------------

static int on_link_message(struct nl_msg *msg, void *arg) {
    cnl_monitor *mon = arg;
    struct nlmsghdr *hdr = nlmsg_hdr(msg);
    if (hdr->nlmsg_type != RTM_NEWLINK && hdr->nlmsg_type != RTM_DELLINK) return NL_OK;
    if (mon->count >= mon->max) return NL_OK;  // caller polls again; the kernel keeps the rest queued
    if (!nlmsg_valid_hdr(hdr, sizeof(struct ifinfomsg))) return NL_OK;
    struct ifinfomsg *ifi = nlmsg_data(hdr);
    struct nlattr *attr = nlmsg_find_attr(hdr, sizeof(struct ifinfomsg), IFLA_IFNAME);
    cnl_link_event *ev = &mon->buf[mon->count];
    memset(ev, 0, sizeof(*ev));
    ev->ifindex = ifi->ifi_index;
    ev->added = hdr->nlmsg_type == RTM_NEWLINK;
    ev->up = (ifi->ifi_flags & IFF_UP) ? 1 : 0;
    if (attr) nla_strlcpy(ev->name, attr, sizeof(ev->name));
    mon->count++;
    return NL_OK;
}

int cnl_monitor_open(const char *netns_path, cnl_monitor **out) {
    cnl_monitor *mon = calloc(1, sizeof(*mon));
    if (!mon) return -ENOMEM;
    int rc = open_socket(netns_path, &mon->sock);
    if (rc < 0) { free(mon); return rc; }
    nl_socket_disable_seq_check(mon->sock);
    nl_socket_modify_cb(mon->sock, NL_CB_VALID, NL_CB_CUSTOM, on_link_message, mon);
    int err = nl_socket_add_membership(mon->sock, RTNLGRP_LINK);
    if (err == 0) err = nl_socket_set_nonblocking(mon->sock);
    if (err < 0) { nl_socket_free(mon->sock); free(mon); return from_nle(err); }
    *out = mon;
    return 0;
}

void cnl_monitor_close(cnl_monitor *mon) {
    if (!mon) return;
    nl_socket_free(mon->sock);
    free(mon);
}

int cnl_monitor_next(cnl_monitor *mon, int timeout_ms, cnl_link_event *events, int max) {
    struct pollfd pfd = { .fd = nl_socket_get_fd(mon->sock), .events = POLLIN };
    int n = poll(&pfd, 1, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    if (n == 0) return 0;
    mon->buf = events; mon->max = max; mon->count = 0;
    int err = nl_recvmsgs_default(mon->sock);
    int count = mon->count;
    mon->buf = NULL; mon->max = 0; mon->count = 0;
    // ENOBUFS: the kernel dropped events because we were slow; the caller resyncs.
    if (err < 0 && err != -NLE_AGAIN && count == 0) return from_nle(err) == -EIO ? -ENOBUFS : from_nle(err);
    return count;
}

const char *cnl_strerror(int code) {
    return strerror(code < 0 ? -code : code);
}
