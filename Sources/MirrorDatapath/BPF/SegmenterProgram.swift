import CLibbpf
import CMirrorABI
import Glibc

// The segmenter (bpf/mirror_abi.h, "The segmenter"; SPEC §6): stage 2 sends GSO copies
// whose segments do not fit to the egress of a veth pair's tx end (gso_max_segs 1, so
// the kernel segments them in software); `mirror_segmented` on the rx end's ingress
// sends each segment back to the mirror device's egress. The agent owns the pair.
extension BPFDatapath {
    /// Attaches `mirror_segmented` (encap object) on the TC ingress of the
    /// segmenter's rx end, same handle/priority rules as every filter of ours.
    @discardableResult
    public func attachSegmenter(rxInterface: String) throws(DatapathError) -> Attachment {
        try loadEncap()
        guard let obj = encapObject, let prog = bpf_object__find_program_by_name(obj, EncapProgram.segmented.rawValue) else {
            throw DatapathError("find program mirror_segmented", detail: "not in the encap object")
        }
        let ifindex = try Self.ifindex(of: rxInterface)
        return try attach(ifindex: ifindex, name: rxInterface, hook: .ingress, programFD: bpf_program__fd(prog))
    }

    /// Tells stage 2 (the loaded encap object) where GSO copies are segmented: the
    /// tx end's ifindex, 0 = nowhere (GSO copies that do not fit are cut as a whole).
    /// Call before `attachEncap` so that the attached program has it from the start.
    public func setSegmenter(ifindex: UInt32) throws(DatapathError) {
        let fd = try segmenterMapFD()
        var key: UInt32 = 0
        var v = mirror_segmenter()
        v.ifindex = ifindex
        try DatapathError.check(bpf_map_update_elem(fd, &key, &v, UInt64(BPF_ANY)), "write mirror_segmenter")
    }

    /// The ifindex stage 2 diverts GSO copies to (0 = none).
    public func segmenterIfindex() throws(DatapathError) -> UInt32 {
        let fd = try segmenterMapFD()
        var key: UInt32 = 0
        var v = mirror_segmenter()
        try DatapathError.check(bpf_map_lookup_elem(fd, &key, &v), "read mirror_segmenter")
        return v.ifindex
    }

    private func segmenterMapFD() throws(DatapathError) -> Int32 {
        try loadEncap()
        guard let obj = encapObject, let map = bpf_object__find_map_by_name(obj, EncapMap.segmenter.rawValue) else {
            throw DatapathError("find map mirror_segmenter", detail: "not in the encap object")
        }
        return bpf_map__fd(map)
    }
}
