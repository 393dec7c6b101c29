// swift-tools-version:6.1
// Layers (shared/STYLE.md): MirrorCore is pure (no kernel, no I/O); MirrorDatapath is
// the only target that touches the kernel; MirrorAgent reconciles; agentctl is a thin
// client that shares MirrorAPI with the agent.
// Linux only (libbpf, netlink, nftables): no `platforms`, whose entries name Apple OS
// versions this package does not build on.
import PackageDescription

let package = Package(
    name: "traffic-mirror",
    products: [
        .executable(name: "mirror-agent", targets: ["mirror-agent"]),
        .executable(name: "agentctl", targets: ["agentctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        .target(name: "MirrorCore"),
        .target(name: "MirrorAPI", dependencies: ["MirrorCore"]),
        // Datapath: the BPF ABI header as a C module, libbpf, the compiler
        // from a validated document to map images, and the kernel-facing layer.
        .target(name: "CMirrorABI"),
        // libbpf (Debian libbpf-dev) with its opts macros wrapped in C functions.
        .target(name: "CLibbpf", linkerSettings: [.linkedLibrary("bpf")]),
        .plugin(name: "BPFObjectPlugin", capability: .buildTool()),
        .target(name: "MirrorCompiler", dependencies: ["MirrorCore", "CMirrorABI"]),
        .target(
            name: "MirrorDatapath",
            dependencies: [
                "MirrorCore", "MirrorCompiler", "CMirrorABI", "CLibbpf", "CNetlink",
                .product(name: "Logging", package: "swift-log"),
            ],
            plugins: ["BPFObjectPlugin"]),
        .executableTarget(name: "mirror-bench", dependencies: ["MirrorDatapath", "MirrorCompiler", "MirrorCore", "CMirrorABI", "CLibbpf"]),
        // Seeded RNG and random valid documents/packets, shared by several test targets.
        .target(name: "MirrorTestSupport", dependencies: ["MirrorCore"]),
        // libnl-route-3 (Debian libnl-route-3-dev) behind plain C functions: its macros
        // and inline helpers do not import into Swift, and Swift never sees libnl types.
        .target(
            name: "CNetlink",
            cSettings: [.unsafeFlags(["-I/usr/include/libnl3"])],
            linkerSettings: [.linkedLibrary("nl-route-3"), .linkedLibrary("nl-3")]),
        // glibc's malloc tuning (malloc_trim, mallopt), which the Glibc module does not export.
        .target(name: "CMalloc"),
        .target(
            name: "MirrorAgent",
            dependencies: [
                "MirrorCore", "MirrorAPI", "MirrorCompiler", "MirrorDatapath", "CMalloc",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .executableTarget(
            name: "mirror-agent",
            dependencies: [
                "MirrorAgent",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .executableTarget(
            name: "agentctl",
            dependencies: [
                "MirrorCore", "MirrorAPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "MirrorCoreTests", dependencies: ["MirrorCore", "MirrorTestSupport"]),
        .testTarget(name: "MirrorAPITests", dependencies: ["MirrorAPI", "MirrorCore"]),
        .testTarget(name: "MirrorCompilerTests", dependencies: ["MirrorCompiler", "MirrorCore", "MirrorTestSupport", "CMirrorABI"]),
        .testTarget(
            name: "MirrorDatapathTests",
            dependencies: ["MirrorDatapath", "MirrorCompiler", "MirrorCore", "MirrorTestSupport", "CMirrorABI"]),
        .testTarget(
            name: "MirrorAgentTests",
            dependencies: [
                "MirrorAgent", "MirrorAPI", "MirrorCore", "MirrorCompiler", "MirrorDatapath", "MirrorTestSupport", "CNetlink",
                "CMirrorABI", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
    ],
    swiftLanguageModes: [.v5]
)
