import CLibbpf
import MirrorDatapath
import Testing

/// The Swift names of maps and programs (ObjectNames.swift) are the objects' own:
/// opening an object needs no privileges, so this runs everywhere.
@Suite struct ObjectNamesTests {
    /// The non-internal maps and the programs of an embedded object, by name.
    static func names(of bytes: [UInt8], _ label: String) throws -> (maps: Set<String>, programs: Set<String>) {
        let obj: OpaquePointer? = bytes.withUnsafeBytes { clibbpf_open_mem($0.baseAddress, $0.count, label, nil) }
        guard let obj, libbpf_get_error(UnsafeRawPointer(obj)) == 0 else { throw TestFailure("open \(label)") }
        defer { bpf_object__close(obj) }
        var maps = Set<String>(), programs = Set<String>()
        var m = bpf_object__next_map(obj, nil)
        while let map = m {
            // .rodata, .bss and the like are the compiler's, not names Swift uses.
            if !bpf_map__is_internal(map) { maps.insert(String(cString: bpf_map__name(map))) }
            m = bpf_object__next_map(obj, map)
        }
        var p = bpf_object__next_program(obj, nil)
        while let prog = p {
            programs.insert(String(cString: bpf_program__name(prog)))
            p = bpf_object__next_program(obj, prog)
        }
        return (maps, programs)
    }

    @Test func classifierMapsAndProgramsAreTheObjectsOwn() throws {
        let o = try Self.names(of: EmbeddedBPF.classifyObject, "classify")
        #expect(o.maps == Set(ClassifierMap.allCases.map(\.rawValue)))
        #expect(o.programs == Set(ClassifierProgram.allCases.map(\.rawValue)))
    }

    @Test func encapMapsAndProgramsAreTheObjectsOwn() throws {
        let o = try Self.names(of: EmbeddedBPF.encapObject, "encap")
        // Stage 2 shares the classifier's maps by name (BPFDatapath.loadEncap); a map it
        // declares that is neither shared nor its own would be created empty and unread.
        let own = Set(EncapMap.allCases.map(\.rawValue))
        #expect(own.isSubset(of: o.maps))
        #expect(o.maps.subtracting(own).isSubset(of: Set(ClassifierMap.allCases.map(\.rawValue))))
        #expect(o.programs == Set(EncapProgram.allCases.map(\.rawValue)))
    }
}
