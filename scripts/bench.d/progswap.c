// For the bench's unmatched breakdown: one tcx ingress link on IFNAME whose program
// is swapped atomically (BPF_LINK_UPDATE; detached for `none`) every interval
// under one continuous sender, CYCLES times, each cycle's order the reverse of
// the last's. After each swap and a settle time it samples COUNTER (a packet
// counter file) for SECONDS and prints one JSON line per sample:
//   {"variant": "...", "cycle": N, "pps": X}
// A VARIANT is LABEL=SPEC (LABEL names it in the output); SPEC is `none`, `OBJ:PROG` (loaded with PINROOT as libbpf's pin_root_path,
// so the classifier's maps are the agent's pinned ones) or `link:PATH` (the
// program of a pinned tcx link: the agent's own classifier). The agent's link
// at AGENTLINK is detached first, so that only this link's program runs.
// Why C and not a shell loop of bpftool calls: a swap must be one syscall,
// between two samples, without process start-up inside the measured interval.
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TCX_INGRESS 46 /* BPF_TCX_INGRESS: libbpf 1.1's headers may predate it */

static unsigned long long read_counter(const char *path) {
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1) v = 0;
        fclose(f);
    }
    return v;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int program_fd(const char *variant, const char *pinroot) {
    if (!strcmp(variant, "none")) return -1;
    if (!strncmp(variant, "link:", 5)) {
        int link = bpf_obj_get(variant + 5);
        if (link < 0) { fprintf(stderr, "progswap: no link pinned at %s\n", variant + 5); exit(1); }
        struct bpf_link_info info;
        __u32 len = sizeof info;
        memset(&info, 0, sizeof info);
        if (bpf_obj_get_info_by_fd(link, &info, &len)) { fprintf(stderr, "progswap: link info of %s\n", variant + 5); exit(1); }
        close(link);
        int fd = bpf_prog_get_fd_by_id(info.prog_id);
        if (fd < 0) { fprintf(stderr, "progswap: program %u of %s\n", info.prog_id, variant + 5); exit(1); }
        return fd;
    }
    char path[512];
    snprintf(path, sizeof path, "%s", variant);
    char *colon = strchr(path, ':');
    if (!colon) { fprintf(stderr, "progswap: variant %s is not none, OBJ:PROG or link:PATH\n", variant); exit(2); }
    *colon = 0;
    LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pinroot);
    struct bpf_object *obj = bpf_object__open_file(path, &opts);
    if (!obj) { fprintf(stderr, "progswap: open %s\n", path); exit(1); }
    struct bpf_program *p;
    bpf_object__for_each_program(p, obj) bpf_program__set_autoload(p, !strcmp(bpf_program__name(p), colon + 1));
    if (bpf_object__load(obj)) { fprintf(stderr, "progswap: load %s\n", variant); exit(1); }
    struct bpf_program *prog = bpf_object__find_program_by_name(obj, colon + 1);
    if (!prog) { fprintf(stderr, "progswap: no program %s in %s\n", colon + 1, path); exit(1); }
    return bpf_program__fd(prog);
}

int main(int argc, char **argv) {
    if (argc < 9) {
        fprintf(stderr, "usage: progswap COUNTER SECONDS SETTLE CYCLES IFNAME PINROOT AGENTLINK VARIANT...\n");
        return 2;
    }
    const char *counter = argv[1];
    double seconds = atof(argv[2]), settle = atof(argv[3]);
    int cycles = atoi(argv[4]);
    int ifindex = if_nametoindex(argv[5]);
    if (!ifindex) { fprintf(stderr, "progswap: no device %s\n", argv[5]); return 1; }
    int n = argc - 8;
    char *variants[16];
    int fds[16];
    if (n > 16) { fprintf(stderr, "progswap: at most 16 variants\n"); return 2; }
    for (int i = 0; i < n; i++) {
        char *eq = strchr(argv[8 + i], '=');
        if (!eq) { fprintf(stderr, "progswap: variant %s is not LABEL=SPEC\n", argv[8 + i]); return 2; }
        *eq = 0;
        variants[i] = argv[8 + i];
        fds[i] = program_fd(eq + 1, argv[6]);
    }
    int agent = bpf_obj_get(argv[7]);
    if (agent < 0 || bpf_link_detach(agent)) { fprintf(stderr, "progswap: cannot detach the agent's link %s\n", argv[7]); return 1; }
    close(agent);
    int link = -1;
    for (int c = 1; c <= cycles; c++) {
        for (int k = 0; k < n; k++) {
            int i = c % 2 ? k : n - 1 - k;
            if (fds[i] < 0) {
                if (link >= 0) { bpf_link_detach(link); close(link); link = -1; }
            } else if (link < 0) {
                link = bpf_link_create(fds[i], ifindex, TCX_INGRESS, NULL);
                if (link < 0) { fprintf(stderr, "progswap: tcx link: %d\n", link); return 1; }
            } else if (bpf_link_update(link, fds[i], NULL)) {
                fprintf(stderr, "progswap: link update failed\n");
                return 1;
            }
            usleep((useconds_t)(settle * 1e6));
            unsigned long long c0 = read_counter(counter);
            double t0 = now();
            usleep((useconds_t)(seconds * 1e6));
            unsigned long long c1 = read_counter(counter);
            double t1 = now();
            printf("{\"variant\": \"%s\", \"cycle\": %d, \"pps\": %.0f}\n", variants[i], c, (c1 - c0) / (t1 - t0));
            fflush(stdout);
        }
    }
    if (link >= 0) { bpf_link_detach(link); close(link); }
    return 0;
}
