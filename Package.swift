// swift-tools-version:6.1
// Layers (shared/STYLE.md): MirrorCore is pure (no kernel, no I/O); MirrorDatapath is
// the only target that touches the kernel; MirrorAgent reconciles; agentctl is a thin
// client that shares MirrorAPI with the agent.
import PackageDescription

let package = Package(
    name: "traffic-mirror",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "mirror-agent", targets: ["mirror-agent"]),
        .executable(name: "agentctl", targets: ["agentctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .target(name: "MirrorCore"),
        .target(name: "MirrorAPI", dependencies: ["MirrorCore"]),
        // Seeded RNG and random valid documents/packets, shared by several test targets.
        .target(name: "MirrorTestSupport", dependencies: ["MirrorCore"]),
        .target(name: "MirrorAgent", dependencies: ["MirrorCore", "MirrorAPI"]),
        .executableTarget(
            name: "mirror-agent",
            dependencies: [
                "MirrorAgent",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "agentctl",
            dependencies: [
                "MirrorCore", "MirrorAPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "MirrorCoreTests", dependencies: ["MirrorCore", "MirrorTestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
