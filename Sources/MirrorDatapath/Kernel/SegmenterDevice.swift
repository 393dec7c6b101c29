import CNetlink
import Foundation
import Logging

/// The segmenter veth pair (bpf/mirror_abi.h, "The segmenter"; SPEC §6): GSO copies
/// whose wire segments do not fit the path MTU or packetLength are segmented by the
/// kernel on its tx end (gso_max_segs 1) before each segment is truncated. Created
/// and removed with the mirror device; a restarted agent adopts it.
public enum SegmenterDevice {
    /// The pair that belongs to `mirrorDevice`: mirseg0/mirseg1 for mirror0, else
    /// derived from its name (at most 15 bytes).
    public static func names(forMirrorDevice name: String) -> (tx: String, rx: String) {
        if name == MirrorDevice.defaultName { return ("mirseg0", "mirseg1") }
        let base = String(decoding: Array(name.utf8.prefix(11)), as: UTF8.self)
        return (base + "-sg0", base + "-sg1")
    }

    /// Creates the pair or adopts ours; refuses names that belong to something else.
    @discardableResult
    public static func ensure(_ nl: NetlinkContext, mirrorDevice: String = MirrorDevice.defaultName) throws -> (tx: Int, rx: Int) {
        let (tx, rx) = names(forMirrorDevice: mirrorDevice)
        var txi: Int32 = 0, rxi: Int32 = 0
        let rc = cnl_segmenter_ensure(nl.ctx, tx, rx, &txi, &rxi)
        guard rc == 0 else {
            throw NetlinkError(
                rc == -EEXIST
                    ? "segmenter \(tx)/\(rx): a name is taken by something that is not our veth pair; remove it or choose another mirror device name"
                    : "create the segmenter veth pair \(tx)/\(rx)", rc)
        }
        return (Int(txi), Int(rxi))
    }

    /// `cleanup`: deletes the pair only when it is ours (a veth pair of those names).
    @discardableResult
    public static func remove(_ nl: NetlinkContext, mirrorDevice: String = MirrorDevice.defaultName) throws -> Bool {
        let (tx, rx) = names(forMirrorDevice: mirrorDevice)
        let rc = cnl_segmenter_remove(nl.ctx, tx, rx)
        guard rc >= 0 else { throw NetlinkError("remove the segmenter veth pair \(tx)/\(rx)", rc) }
        return rc == 1
    }

    /// gso_max_segs of `name` (nil when absent).
    public static func gsoMaxSegs(_ nl: NetlinkContext, _ name: String) throws -> UInt32? {
        var v: UInt32 = 0
        let rc = cnl_link_gso_max_segs(nl.ctx, name, &v)
        if rc == -ENODEV { return nil }
        guard rc == 0 else { throw NetlinkError("read gso_max_segs of \(name)", rc) }
        return v
    }
}

extension KernelDatapath {
    /// Called by `start()` before stage 2 is attached: the pair, `mirror_segmented` on
    /// its rx end, and stage 2 told where to divert. Not fatal: without a segmenter a
    /// GSO copy that does not fit is cut as a whole (counted as truncated_gso).
    /// Whether the segmenter is in place.
    @discardableResult
    static func startSegmenter(_ nl: NetlinkContext, mirrorDevice: String, datapath dp: BPFDatapath?, logger: Logger) -> Bool {
        guard let dp else { return false }
        do {
            let (tx, _) = try SegmenterDevice.ensure(nl, mirrorDevice: mirrorDevice)
            try dp.attachSegmenter(rxInterface: SegmenterDevice.names(forMirrorDevice: mirrorDevice).rx)
            try dp.setSegmenter(ifindex: UInt32(tx))
            return true
        } catch {
            try? dp.setSegmenter(ifindex: 0)
            logger.warning("no segmenter: GSO copies that do not fit will be cut as a whole (SPEC §6)", metadata: ["error": "\(error)"])
            return false
        }
    }
}
