#define _GNU_SOURCE
#include <sched.h>
#include <fcntl.h>
#include <unistd.h>
#include <pthread.h>
// The libbpf log capture: C globals must live in a .c file, not in an imported header.
#include "CLibbpf.h"

/* libbpf's messages go to a buffer the caller reads, so errors can carry the
 * verifier log instead of printing to stderr. */
static char clibbpf_log_buf[65536];
static size_t clibbpf_log_len;
static bool clibbpf_log_debug;
/* Objects may load on several threads at once (BPFDatapath+Programs.swift). */
static pthread_mutex_t clibbpf_log_lock = PTHREAD_MUTEX_INITIALIZER;

static int clibbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !clibbpf_log_debug)
		return 0;
	pthread_mutex_lock(&clibbpf_log_lock);
	int n = 0;
	if (clibbpf_log_len < sizeof(clibbpf_log_buf) - 1) {
		n = vsnprintf(clibbpf_log_buf + clibbpf_log_len, sizeof(clibbpf_log_buf) - clibbpf_log_len, fmt, args);
		if (n > 0) {
			clibbpf_log_len += (size_t)n;
			if (clibbpf_log_len > sizeof(clibbpf_log_buf) - 1)
				clibbpf_log_len = sizeof(clibbpf_log_buf) - 1;
		}
	}
	pthread_mutex_unlock(&clibbpf_log_lock);
	return n;
}

void clibbpf_capture_log(bool debug)
{
	clibbpf_log_debug = debug;
	libbpf_set_print(clibbpf_print);
}

/* Returns and clears what libbpf printed since the last call. */
const char *clibbpf_take_log(void)
{
	static char out[65536];
	pthread_mutex_lock(&clibbpf_log_lock);
	memcpy(out, clibbpf_log_buf, clibbpf_log_len);
	out[clibbpf_log_len] = 0;
	clibbpf_log_len = 0;
	pthread_mutex_unlock(&clibbpf_log_lock);
	return out;
}


int clibbpf_enter_netns(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = setns(fd, CLONE_NEWNET);
	int err = errno;
	close(fd);
	return rc == 0 ? 0 : -err;
}
