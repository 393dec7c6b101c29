// libbpf (Debian libbpf-dev) for Swift. LIBBPF_OPTS and DECLARE_LIBBPF_OPTS do
// not import into Swift, so every call that takes an opts struct is wrapped
// here in a small static inline function (Swift compiles and calls those).
#ifndef CLIBBPF_SHIM_H
#define CLIBBPF_SHIM_H

#include <errno.h>
#include <string.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <sys/vfs.h>
#include <unistd.h>

/* 1 when path is on a bpffs mount, 0 when not, -errno when it cannot be read. */
static inline int clibbpf_is_bpffs(const char *path)
{
	struct statfs st;
	if (statfs(path, &st) != 0)
		return -errno;
	return st.f_type == 0xcafe4a11 /* BPF_FS_MAGIC */;
}

/* Open an object from memory; maps with LIBBPF_PIN_BY_NAME are pinned (or
 * reused when already pinned) under pin_root_path (NULL: no pinning). */
static inline struct bpf_object *clibbpf_open_mem(const void *buf, size_t size, const char *name,
                                                  const char *pin_root_path)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name, .pin_root_path = pin_root_path);
	return bpf_object__open_mem(buf, size, &opts);
}

/* libbpf's messages go to a buffer the caller reads (shim.c), so errors can
 * carry the verifier log instead of printing to stderr. */
void clibbpf_capture_log(bool debug);
/* Returns and clears what libbpf printed since the last call. */
const char *clibbpf_take_log(void);

/* Moves the calling thread into the network namespace at path (setns). */
int clibbpf_enter_netns(const char *path);

/* Creates the clsact qdisc. Returns 0 when created, -EEXIST when it was there. */
static inline int clibbpf_tc_hook_create(int ifindex)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);
	return bpf_tc_hook_create(&hook);
}

/* Destroys the clsact qdisc and every filter on it: only for hooks we created. */
static inline int clibbpf_tc_hook_destroy(int ifindex)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);
	return bpf_tc_hook_destroy(&hook);
}

/* egress: 1 for BPF_TC_EGRESS, 0 for BPF_TC_INGRESS. replace: replace the
 * filter at (handle, priority) if present. On success *prog_id is the attached id. */
static inline int clibbpf_tc_attach(int ifindex, int egress, int prog_fd, __u32 handle, __u32 priority,
                                    int replace, __u32 *prog_id)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = egress ? BPF_TC_EGRESS : BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .handle = handle, .priority = priority,
		    .flags = replace ? BPF_TC_F_REPLACE : 0);
	int err = bpf_tc_attach(&hook, &opts);
	if (!err && prog_id)
		*prog_id = opts.prog_id;
	return err;
}

static inline int clibbpf_tc_detach(int ifindex, int egress, __u32 handle, __u32 priority)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = egress ? BPF_TC_EGRESS : BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = priority);
	return bpf_tc_detach(&hook, &opts);
}

/* Returns 0 and the program id of the filter at (handle, priority), or -ENOENT. */
static inline int clibbpf_tc_query(int ifindex, int egress, __u32 handle, __u32 priority, __u32 *prog_id)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = egress ? BPF_TC_EGRESS : BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = priority);
	int err = bpf_tc_query(&hook, &opts);
	if (!err && prog_id)
		*prog_id = opts.prog_id;
	return err;
}

/* BPF_PROG_TEST_RUN on a frame. ifindex selects the device the skb claims to
 * be on (1 = lo); mark and cb0 are handed to the program in skb->mark, skb->cb[0]. */
static inline int clibbpf_test_run_skb(int prog_fd, const void *frame, __u32 size, __u32 ifindex, __u32 mark,
                                       __u32 cb0, __u32 repeat, __u32 *retval, __u32 *duration_ns)
{
	struct __sk_buff ctx;
	memset(&ctx, 0, sizeof(ctx));
	ctx.ifindex = ifindex;
	ctx.mark = mark;
	ctx.cb[0] = cb0;
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = size, .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx), .repeat = repeat);
	int err = bpf_prog_test_run_opts(prog_fd, &opts);
	if (err)
		return -errno;
	if (retval)
		*retval = opts.retval;
	if (duration_ns)
		*duration_ns = opts.duration;
	return 0;
}

/* BPF_PROG_TEST_RUN of stage 2 on a copy: skb->cb[0..4] as stage 1 leaves them.
 * The frame as the program leaves it is written to out (up to *out_size bytes;
 * *out_size is set to its length). */
static inline int clibbpf_test_run_skb_cb(int prog_fd, const void *frame, __u32 size, const __u32 cb[5],
                                          void *out, __u32 *out_size, __u32 *retval)
{
	struct __sk_buff ctx;
	memset(&ctx, 0, sizeof(ctx));
	ctx.ifindex = 1;
	for (int i = 0; i < 5; i++)
		ctx.cb[i] = cb[i];
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = size, .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx), .data_out = out, .data_size_out = *out_size, .repeat = 1);
	int err = bpf_prog_test_run_opts(prog_fd, &opts);
	if (err)
		return -errno;
	*out_size = opts.data_size_out;
	if (retval)
		*retval = opts.retval;
	return 0;
}

/* tcx (kernel >= 6.6): BPF links on a device's TC ingress/egress, without the
 * clsact qdisc and its filter walk. libbpf 1.1 and the 6.1 uapi headers here
 * predate it, so the attach types and the link type are spelled by number (they
 * are uapi, fixed) and the generic bpf_link_create/bpf_prog_query carry them. */
#define CLIBBPF_TCX_INGRESS 46
#define CLIBBPF_TCX_EGRESS 47
#define CLIBBPF_LINK_TYPE_TCX 11

static inline int clibbpf_tcx_type(int egress) { return egress ? CLIBBPF_TCX_EGRESS : CLIBBPF_TCX_INGRESS; }

/* A new tcx link running prog_fd on the hook, after the programs already there.
 * Returns the link fd or -errno (EINVAL on kernels without tcx). */
static inline int clibbpf_tcx_link_create(int prog_fd, int ifindex, int egress)
{
	int fd = bpf_link_create(prog_fd, ifindex, (enum bpf_attach_type)clibbpf_tcx_type(egress), NULL);
	return fd < 0 ? -errno : fd;
}

/* What a link fd is: 0 with its device (0 once the device is gone: a defunct
 * link), tcx attach type and program id; -EMEDIUMTYPE when it is not a tcx link. */
static inline int clibbpf_tcx_link_info(int link_fd, __u32 *ifindex, __u32 *attach_type, __u32 *prog_id)
{
	struct bpf_link_info info;
	memset(&info, 0, sizeof(info));
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(link_fd, &info, &len))
		return -errno;
	if (info.type != CLIBBPF_LINK_TYPE_TCX)
		return -EMEDIUMTYPE;
	/* The kernel's info.tcx {ifindex, attach_type} sits where the 6.1 header
	 * declares info.netns {netns_ino, attach_type}: same union, same offsets. */
	*ifindex = info.netns.netns_ino;
	*attach_type = info.netns.attach_type;
	*prog_id = info.prog_id;
	return 0;
}

/* Points an existing link at another program, atomically. */
/* Takes the program off the hook now: closing or unpinning the link's last
 * reference detaches it only when the kernel frees the link, a little later. */
static inline int clibbpf_link_detach(int link_fd)
{
	return bpf_link_detach(link_fd) ? -errno : 0;
}

static inline int clibbpf_link_update(int link_fd, int prog_fd)
{
	return bpf_link_update(link_fd, prog_fd, NULL) ? -errno : 0;
}

/* The ids of the programs on a tcx hook, in run order (at most *count).
 * -EINVAL when the kernel has no tcx. */
static inline int clibbpf_tcx_query(int ifindex, int egress, __u32 *prog_ids, __u32 *count)
{
	return bpf_prog_query(ifindex, (enum bpf_attach_type)clibbpf_tcx_type(egress), 0, NULL, prog_ids, count)
		? -errno : 0;
}

/* The id and name (BPF_OBJ_NAME_LEN) of a program. */
static inline int clibbpf_prog_id_name(int prog_fd, __u32 *id, char *name)
{
	struct bpf_prog_info info;
	memset(&info, 0, sizeof(info));
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(prog_fd, &info, &len))
		return -errno;
	*id = info.id;
	if (name)
		memcpy(name, info.name, sizeof(info.name));
	return 0;
}

/* The name of the program with this id (for listing a hook), or -errno. */
static inline int clibbpf_prog_name_by_id(__u32 id, char *name)
{
	int fd = bpf_prog_get_fd_by_id(id);
	if (fd < 0)
		return -errno;
	__u32 ignored;
	int rc = clibbpf_prog_id_name(fd, &ignored, name);
	close(fd);
	return rc;
}

static inline int clibbpf_obj_pin(int fd, const char *path) { return bpf_obj_pin(fd, path) ? -errno : 0; }
static inline int clibbpf_obj_get(const char *path) { int fd = bpf_obj_get(path); return fd < 0 ? -errno : fd; }

/* Negative errno of the last libbpf call that returned NULL. */
static inline int clibbpf_errno(void) { return errno; }

#endif
