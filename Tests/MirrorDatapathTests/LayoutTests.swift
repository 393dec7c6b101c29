import MirrorDatapath
import Testing

/// Issue 18, "Rolling upgrades": the pinned maps' layout is versioned, and a change
/// of their definitions without a new version is caught here (opening an object
/// needs no privileges).
@Suite struct LayoutTests {
    @Test func theObjectsSayTheLayoutTheABIHeaderNames() throws {
        #expect(try BPFDatapath.layout(of: EmbeddedBPF.classifyObject).version == MapLayout.compiled)
        #expect(try BPFDatapath.layout(of: EmbeddedBPF.encapObject).version == MapLayout.compiled)
    }

    /// bpf/mirror_consts.h records the fingerprint of the pinned maps of
    /// MIRROR_LAYOUT_VERSION. When the maps change this fails: a new version (and its
    /// fingerprint) is due, so that an agent over the old pins moves to new ones
    /// instead of failing to reuse them (bpf/README.md, "Map layouts").
    @Test func changedPinnedMapsNeedANewLayoutVersion() throws {
        let layout = try BPFDatapath.layout(of: EmbeddedBPF.classifyObject)
        #expect(
            layout.fingerprint == MapLayout.compiledFingerprint,
            """
            the pinned maps' definitions changed (fingerprint \(MapLayout.hex(layout.fingerprint)), \
            bpf/mirror_consts.h records \(MapLayout.hex(MapLayout.compiledFingerprint)) for layout \(layout.version)): \
            bump MIRROR_LAYOUT_VERSION and set MIRROR_LAYOUT_FINGERPRINT to \(MapLayout.hex(layout.fingerprint))ULL
            """)
    }

    @Test func layoutDirectoriesAreNamedByVersion() {
        #expect(MapLayout.directoryName(7) == "layout-7")
        #expect(MapLayout.version(ofDirectory: "layout-7") == 7)
        #expect(MapLayout.version(ofDirectory: "layout-") == nil)
        #expect(MapLayout.version(ofDirectory: "links") == nil)
        #expect(MapLayout.version(ofDirectory: "mirror_active") == nil)
    }
}
