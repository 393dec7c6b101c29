#ifndef CNETLINK_CONTEXT_H
#define CNETLINK_CONTEXT_H
// Private to the CNetlink target: the context behind the opaque cnl_context.
#include <netlink/socket.h>

struct cnl_context {
    struct nl_sock *sock;
    char *netns_path;  // the namespace the socket lives in; NULL: the caller's
};

// libnl NLE_* code to a negative errno (netlink.c).
int cnl_from_nle(int err);

#endif
