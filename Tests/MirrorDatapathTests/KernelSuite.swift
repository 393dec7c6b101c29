import Testing

/// Every kernel suite nests in this one so they run one at a time (they share
/// the kernel, lo and CPU time with the rest of the build). Without root they are
/// reported as skipped, with the reason, not as passed: CI runs them as root.
@Suite(.serialized, .enabled(if: Kernel.isRoot, "kernel tests need root: BPF, bpffs mounts, network namespaces"))
struct KernelTests {}
