import Foundation

/// The repository root, found from this file's path (Tests/MirrorCoreTests/...).
let repositoryRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

func readExample(_ name: String) throws -> [UInt8] {
    Array(try Data(contentsOf: repositoryRoot.appendingPathComponent("examples").appendingPathComponent(name)))
}
