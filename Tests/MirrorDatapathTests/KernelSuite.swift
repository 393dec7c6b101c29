import Testing

/// Every kernel suite nests in this one so they run one at a time (they share
/// the kernel, lo and CPU time with the rest of the build).
@Suite(.serialized) struct KernelTests {}
