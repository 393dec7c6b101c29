import CMirrorABI
import MirrorCompiler
import MirrorCore
import MirrorDatapath
import Testing

extension KernelTests {
    @Suite struct LoadTests {
        @Test func objectLoadsAndPassesTheVerifier() throws {
            try Kernel.withBPFFS { dir in
                let dp = try BPFDatapath(pinDirectory: dir)
                defer { dp.close() }
                for p in ClassifierProgram.allCases { #expect(dp.programFD(p) >= 0) }
                let v = Verdict(try dp.testRun(.testIngress, frame: FrameBuilder.arp()).retval)
                #expect(v.outcome == .noPolicy)
                // Stage 2 (bpf/encap.bpf.c) loads too, sharing the classifier's maps.
                try dp.loadEncap()
                dp.unpinMaps()
            }
        }
    }
}
