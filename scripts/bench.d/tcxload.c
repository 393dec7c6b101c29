// For the bench's `tcxhook` mode: attaches the first program of OBJ to IFNAME's tcx
// ingress and egress (kernel >= 6.6; libbpf 1.1 has no tcx API, so the link is made
// with the generic bpf_link_create and the attach types' numbers) and pins the two
// links under PINDIR as tcx0/tcx1. Removing the pins detaches them.
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <net/if.h>
int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: tcxload OBJ IFNAME PINDIR\n"); return 2; }
    struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
    if (!obj || bpf_object__load(obj)) { fprintf(stderr, "load failed\n"); return 1; }
    struct bpf_program *p = bpf_object__next_program(obj, NULL);
    int fd = bpf_program__fd(p);
    int ifindex = if_nametoindex(argv[2]);
    int types[2] = {46 /* BPF_TCX_INGRESS */, 47 /* BPF_TCX_EGRESS */};
    for (int i = 0; i < 2; i++) {
        int l = bpf_link_create(fd, ifindex, types[i], NULL);
        if (l < 0) { fprintf(stderr, "link_create %d: %d\n", types[i], l); return 1; }
        char path[512]; snprintf(path, sizeof path, "%s/tcx%d", argv[3], i);
        if (bpf_obj_pin(l, path)) { fprintf(stderr, "pin failed\n"); return 1; }
    }
    printf("attached\n");
    return 0;
}
