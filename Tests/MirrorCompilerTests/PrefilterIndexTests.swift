import CMirrorABI
import MirrorCompiler
import MirrorCore
import Testing

/// The direct-mapped index in front of the policy map (bpf/mirror_abi.h,
/// mirror_prefilter). The kernel differential tests compare the classifier that
/// reads it with the oracle, with up to three sources per bucket.
@Suite struct PrefilterIndexTests {
    /// Sources on interfaces `ifindexes`, each with outbound UDP rules to port
    /// 6000 + its position and no inbound rules.
    static func image(_ ifindexes: [UInt32]) throws -> MapImage {
        var doc = Document()
        doc.targets = [Target(id: "t", type: .nic, address: IPAddress("192.0.2.1"))]
        doc.sources = ifindexes.indices.map { Source(id: "eni\($0)", interface: "tap\($0)") }
        doc.filters = ifindexes.indices.map {
            Filter(
                id: "f\($0)",
                outbound: [
                    Rule(
                        priority: 1, action: .accept, ethertype: .ipv4, protocol: .udp,
                        destinationPorts: PortRange(UInt16(6000 + $0), UInt16(6000 + $0)))
                ])
        }
        doc.sessions = ifindexes.indices.map {
            Session(id: "s\($0)", priority: 1, filter: "f\($0)", sources: ["eni\($0)"], target: "t", vni: 1 + $0)
        }
        let byName = Dictionary(uniqueKeysWithValues: ifindexes.enumerated().map { ("tap\($0.offset)", $0.element) })
        return try Compiler.compile(
            .init(
                document: doc, slots: try SlotAssignment.assign(document: doc),
                interfaceIndex: { byName[$0] }))
    }

    /// A source reads the bucket's 16-byte head and one 64-byte entry (ports,
    /// protocol, IPv4 and IPv6 bounds): a few cache lines of the 272, never the
    /// whole bucket.
    @Test func anEntryIsOneCacheLine() {
        #expect(MemoryLayout<mirror_prefilter>.size == 64)
        #expect(MemoryLayout<mirror_prefilter_bucket>.size == 16 + 4 * 64)
        #expect(Int(MIRROR_PREFILTER_ENTRIES) == Int(MIRROR_GENERATION_SLOTS) * PrefilterIndex.bucketCount)
        #expect(PrefilterIndex.bucketCount & (PrefilterIndex.bucketCount - 1) == 0)
    }

    /// A source in a way carries its policy's prefilter per direction; a direction
    /// without rules and an interface without a source read as no policy.
    @Test func waysCarryThePolicysPrefilter() throws {
        let image = try Self.image([7, 8])
        let buckets = PrefilterIndex.buckets(image.policies)
        #expect(buckets.count == 2)
        let b7 = try #require(buckets[7])
        let slot = try #require(image.policy(ifindex: 7, direction: .outbound)).value.source_slot
        #expect(
            PrefilterIndex.read(b7, ifindex: 7, direction: .outbound)
                == .prefilter(sourceSlot: slot, needsPorts: true, src: 0...65535, dst: 6000...6000))
        #expect(PrefilterIndex.read(b7, ifindex: 7, direction: .inbound) == .noPolicy)
        #expect(PrefilterIndex.read(b7, ifindex: 7 + UInt32(PrefilterIndex.bucketCount), direction: .outbound) == .noPolicy)
        #expect(b7.overflow == 0)
    }

    /// More sources in one bucket than it has ways: the lowest ifindexes get the
    /// ways whatever the order of the policies, and the rest are found through
    /// the policy map (overflow).
    @Test func aFullBucketSendsTheRestToThePolicyMap() throws {
        let n = UInt32(PrefilterIndex.bucketCount)
        let ifindexes: [UInt32] = [5 + 2 * n, 5, 5 + 3 * n, 5 + n]
        let image = try Self.image(ifindexes)
        let bucket = try #require(PrefilterIndex.buckets(image.policies)[5])
        let reversed = try #require(PrefilterIndex.buckets(image.policies.reversed())[5])
        #expect(withUnsafeBytes(of: bucket) { Array($0) } == withUnsafeBytes(of: reversed) { Array($0) })
        #expect(bucket.overflow == 1)
        for (i, ifindex) in ifindexes.enumerated() {
            let reading = PrefilterIndex.read(bucket, ifindex: ifindex, direction: .outbound)
            if ifindex < 5 + 2 * n {
                let p = try #require(image.policy(ifindex: ifindex, direction: .outbound)).value
                #expect(
                    reading
                        == .prefilter(
                            sourceSlot: p.source_slot, needsPorts: true, src: 0...65535,
                            dst: UInt16(6000 + i)...UInt16(6000 + i)))
            } else {
                #expect(reading == .policyMap)
            }
        }
        // An interface without a source in an overflowing bucket: only the policy map can tell.
        #expect(PrefilterIndex.read(bucket, ifindex: 5 + 9 * n, direction: .outbound) == .policyMap)
    }
}
