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
        .executable(name: "mirror-controller", targets: ["mirror-controller"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // etcd v3 over gRPC (SPEC §9): messages and client stubs are generated once by
        // scripts/gen-etcd-stubs and committed under Sources/EtcdClient/Generated.
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        // SHA-256 names the region's content-addressed chunks (already in the graph
        // through swift-certificates).
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
    ],
    targets: [
        .target(name: "MirrorCore"),
        // The etcd v3 client: generated KV/Watch/Lease stubs plus a thin wrapper
        // (endpoints with failover, TLS with client certificates). No kernel, no model.
        .target(
            name: "EtcdClient",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Fleet mode: key layout, the region store, the controller's reconciliation and
        // the agent's sync, on top of EtcdClient and MirrorCore's pure region rendering.
        .target(
            name: "MirrorFleet",
            dependencies: [
                "MirrorCore", "MirrorAPI", "EtcdClient", "CMalloc",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        // The command-line flags every etcd-facing command shares (--etcd and its TLS files).
        .target(
            name: "EtcdCommandLine",
            dependencies: ["EtcdClient", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(
            name: "mirror-controller",
            dependencies: [
                "MirrorFleet", "EtcdClient", "EtcdCommandLine", "MirrorCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
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
        .executableTarget(
            name: "mirror-bench",
            dependencies: [
                "MirrorDatapath", "MirrorCompiler", "MirrorCore", "CMirrorABI", "CLibbpf", "MirrorTestSupport", "MirrorFleet",
                "EtcdClient",
            ]),
        // Seeded RNG and random valid documents/packets, shared by several test targets.
        .target(name: "MirrorTestSupport", dependencies: ["MirrorCore", "EtcdClient"]),
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
                "MirrorCore", "MirrorAPI", "MirrorCompiler", "MirrorDatapath", "CMalloc", "MirrorFleet", "EtcdClient",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .executableTarget(
            name: "mirror-agent",
            dependencies: [
                "MirrorAgent", "MirrorFleet", "EtcdClient", "EtcdCommandLine", "MirrorCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .executableTarget(
            name: "agentctl",
            dependencies: [
                "MirrorCore", "MirrorAPI", "MirrorFleet", "EtcdClient", "EtcdCommandLine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Against a real 3-member etcd with client-certificate TLS (MirrorTestSupport.EtcdCluster).
        .testTarget(
            name: "MirrorFleetTests",
            dependencies: ["MirrorFleet", "EtcdClient", "MirrorCore", "MirrorTestSupport"]),
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
