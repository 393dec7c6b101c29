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

/* Negative errno of the last libbpf call that returned NULL. */
static inline int clibbpf_errno(void) { return errno; }

#endif
