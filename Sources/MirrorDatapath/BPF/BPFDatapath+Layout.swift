import CLibbpf
import CMirrorABI
import Foundation
import Glibc

/// The layout of the pinned maps (issue 18, "Rolling upgrades"): which version an
/// object's maps have, and a fingerprint of their definitions.
public struct MapLayout: Hashable, Sendable, CustomStringConvertible {
    /// `MIRROR_LAYOUT_VERSION` as the object was built with it (bpf/mirror_maps.h
    /// puts it in the object's `.rodata.layout`).
    public var version: UInt32
    /// FNV-1a (64 bits) over one line per pinned map, sorted by name:
    /// "name type key_size value_size max_entries map_flags". A change of any of
    /// these is a change libbpf refuses to reuse a pin over.
    public var fingerprint: UInt64
    public var description: String { "layout \(version) (fingerprint \(Self.hex(fingerprint)))" }
    public static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    /// The directory the maps of layout `version` are pinned in, under the agent's bpffs.
    public static func directoryName(_ version: UInt32) -> String { "layout-\(version)" }
    /// The version a directory name says ("layout-N"), nil for anything else.
    public static func version(ofDirectory name: String) -> UInt32? {
        guard name.hasPrefix("layout-") else { return nil }
        return UInt32(name.dropFirst("layout-".count))
    }

    /// The layout the running build was compiled with (the ABI header).
    public static var compiled: UInt32 { UInt32(MIRROR_LAYOUT_VERSION) }
    public static var compiledFingerprint: UInt64 { UInt64(MIRROR_LAYOUT_FINGERPRINT) }
}

extension BPFDatapath {
    /// Reads the layout of a classifier object without loading it (no privileges needed).
    public static func layout(of object: [UInt8]) throws(DatapathError) -> MapLayout {
        guard !object.isEmpty else { throw DatapathError("open BPF object classify", detail: "the object is empty") }
        _ = clibbpf_take_log()
        // A pin root makes libbpf give LIBBPF_PIN_BY_NAME maps their pin path (nothing is
        // pinned: the object is only opened).
        let obj: OpaquePointer? = object.withUnsafeBytes { raw in
            clibbpf_open_mem(raw.baseAddress, raw.count, "classify", "/nonexistent")
        }
        guard let obj, libbpf_get_error(UnsafeRawPointer(obj)) == 0 else {
            throw DatapathError("open BPF object classify", errno: clibbpf_errno(), log: String(cString: clibbpf_take_log()))
        }
        defer { bpf_object__close(obj) }
        var lines: [String] = []
        var version: UInt32?
        var map = bpf_object__next_map(obj, nil)
        while let m = map {
            let name = String(cString: bpf_map__name(m))
            if name == ".rodata.layout" {
                var size = 0
                if let p = bpf_map__initial_value(m, &size), size >= 4 { version = p.loadUnaligned(as: UInt32.self) }
            } else if bpf_map__pin_path(m) != nil {
                lines.append(
                    "\(name) \(bpf_map__type(m).rawValue) \(bpf_map__key_size(m)) \(bpf_map__value_size(m)) "
                        + "\(bpf_map__max_entries(m)) \(bpf_map__map_flags(m))")
            }
            map = bpf_object__next_map(obj, m)
        }
        guard let version else {
            throw DatapathError(
                "read the layout of BPF object classify", detail: "it has no .rodata.layout (built before layouts were versioned)")
        }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for line in lines.sorted() {
            for b in line.utf8 + [UInt8(ascii: "\n")] {
                hash ^= UInt64(b)
                hash = hash &* 0x100_0000_01b3
            }
        }
        return MapLayout(version: version, fingerprint: hash)
    }
}

extension BPFDatapath {
    /// What `carry(fromPinDirectory:)` took over from another layout's maps.
    public struct Carried: Sendable, CustomStringConvertible {
        /// Map name → entries added (counters) or copied (flows).
        public var maps: [String: Int] = [:]
        /// Map name → why it was not taken over (its definition changed, or it is not there).
        public var skipped: [String: String] = [:]
        public var description: String {
            (maps.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                + skipped.sorted { $0.key < $1.key }.map { "\($0.key) skipped (\($0.value))" }).joined(separator: ", ")
        }
    }

    /// The counters whose values another layout's maps hold (per-CPU arrays of u64).
    public static let carriedCounters: [ClassifierMap] = [.sessionStats, .ruleStats, .sourceStats, .encapStats, .securityStats]
    /// The state another layout's maps hold that decisions depend on (SPEC §5: the
    /// flows security groups allow, the first fragments' decisions).
    public static let carriedState: [ClassifierMap] = [.flows, .fragments]

    /// Takes over what the maps pinned under `directory` (another layout's) hold and
    /// ours cannot rebuild from the document: `maps` among `carriedCounters` are
    /// added to ours (the other layout's programs counted them; counters continue
    /// across the upgrade), `carriedState` ones are copied where ours has no entry.
    /// A map whose type, key or value size differs is skipped (said in the result):
    /// its counters then restart, which MetricsContinuity shows as a reset.
    public func carry(fromPinDirectory directory: String, maps: [ClassifierMap]) -> Carried {
        var out = Carried()
        for m in maps {
            let old = clibbpf_obj_get(directory + "/" + m.rawValue)
            guard old >= 0 else { out.skipped[m.rawValue] = "not pinned there"; continue }
            defer { Glibc.close(old) }
            guard let fd = try? mapFD(m), let mine = Self.mapInfo(fd), let theirs = Self.mapInfo(old) else {
                out.skipped[m.rawValue] = "no map information"
                continue
            }
            guard mine.type == theirs.type, mine.key_size == theirs.key_size, mine.value_size == theirs.value_size else {
                out.skipped[m.rawValue] = "its definition changed"
                continue
            }
            if mine.type == BPF_MAP_TYPE_PERCPU_ARRAY.rawValue {
                out.maps[m.rawValue] = addCounters(
                    from: old, to: fd, entries: min(mine.max_entries, theirs.max_entries), valueSize: Int(mine.value_size))
            } else {
                out.maps[m.rawValue] = copyEntries(from: old, to: fd, keySize: Int(mine.key_size), valueSize: Int(mine.value_size))
            }
        }
        return out
    }

    static func mapInfo(_ fd: Int32) -> bpf_map_info? {
        var info = bpf_map_info()
        var len = UInt32(MemoryLayout<bpf_map_info>.size)
        return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info : nil
    }

    /// Every entry of a per-CPU array of u64 counters, in batches.
    private static func readPerCPU(_ fd: Int32, entries: UInt32, stride: Int) -> [UInt64]? {
        let words = stride / 8
        var values = [UInt64](repeating: 0, count: Int(entries) * words)
        var keys = [UInt32](repeating: 0, count: Int(entries))
        var done: UInt32 = 0
        var token: UInt32 = 0
        var first = true
        while done < entries {
            var count = entries - done
            var next: UInt32 = 0
            let rc = keys.withUnsafeMutableBufferPointer { k in
                values.withUnsafeMutableBufferPointer { v in
                    withUnsafeMutablePointer(to: &token) { inBatch in
                        bpf_map_lookup_batch(
                            fd, first ? nil : UnsafeMutableRawPointer(inBatch), &next, k.baseAddress! + Int(done),
                            v.baseAddress! + Int(done) * words, &count, nil)
                    }
                }
            }
            let e = rc == 0 ? 0 : (rc == -1 ? Glibc.errno : -rc)
            done += count
            if e == ENOENT { break }
            if e != 0 { return nil }
            token = next
            first = false
        }
        return done == entries ? values : nil
    }

    /// Adds the per-CPU counters of `old` to those of `new`, keys 0..<entries; returns
    /// how many keys had counted something. Counts `new` makes between its read and
    /// the write (microseconds) are lost.
    private func addCounters(from old: Int32, to new: Int32, entries: UInt32, valueSize: Int) -> Int {
        let cpus = max(1, Int(libbpf_num_possible_cpus()))
        let stride = cpus * ((valueSize + 7) / 8 * 8)
        guard let theirs = Self.readPerCPU(old, entries: entries, stride: stride),
            let ours = Self.readPerCPU(new, entries: entries, stride: stride)
        else { return 0 }
        let words = stride / 8
        var keys: [UInt32] = []
        var values: [UInt64] = []
        for k in 0..<Int(entries) {
            let range = (k * words)..<((k + 1) * words)
            guard theirs[range].contains(where: { $0 != 0 }) else { continue }
            keys.append(UInt32(k))
            for i in range { values.append(ours[i] &+ theirs[i]) }
        }
        guard !keys.isEmpty else { return 0 }
        var count = UInt32(keys.count)
        let rc = keys.withUnsafeMutableBytes { k in
            values.withUnsafeMutableBytes { v in bpf_map_update_batch(new, k.baseAddress, v.baseAddress, &count, nil) }
        }
        return rc == 0 ? keys.count : Int(count)
    }

    /// Copies every entry of the hash `old` into `new` where `new` has none yet.
    private func copyEntries(from old: Int32, to new: Int32, keySize: Int, valueSize: Int) -> Int {
        var prev = [UInt8](repeating: 0, count: keySize)
        var key = [UInt8](repeating: 0, count: keySize)
        var value = [UInt8](repeating: 0, count: valueSize)
        var first = true
        var copied = 0
        func next() -> Bool {
            prev.withUnsafeMutableBytes { p in
                key.withUnsafeMutableBytes { k in bpf_map_get_next_key(old, first ? nil : p.baseAddress, k.baseAddress) == 0 }
            }
        }
        while next() {
            first = false
            prev = key
            guard bpf_map_lookup_elem(old, &key, &value) == 0 else { continue }
            if bpf_map_update_elem(new, &key, &value, UInt64(BPF_NOEXIST)) == 0 { copied += 1 }
        }
        return copied
    }
}
