import CMirrorABI
import CNetlink
import Foundation
import MirrorCore

public struct NetlinkError: Error, CustomStringConvertible {
    public var operation: String
    public var code: Int32
    public init(_ operation: String, _ code: Int32) { self.operation = operation; self.code = code }
    public var description: String { "\(operation): \(String(cString: cnl_strerror(code)))" }
}

/// A route-netlink socket (libnl-route-3 through CNetlink), bound to one network
/// namespace for its whole life. Not thread-safe: one owner at a time.
public final class NetlinkContext {
    var ctx: OpaquePointer?  // internal: Segmenter.swift calls CNetlink with it

    /// `netns`: a namespace file such as /run/netns/NAME; nil = this process's.
    public init(netns: String? = nil) throws {
        var p: OpaquePointer?
        let rc = netns.map { cnl_context_open($0, &p) } ?? cnl_context_open(nil, &p)
        guard rc == 0, let p else { throw NetlinkError("open route netlink socket\(netns.map { " in \($0)" } ?? "")", rc) }
        ctx = p
    }

    deinit { cnl_context_close(ctx) }

    /// The interface's ifindex, nil when there is no such interface.
    public func ifindex(_ name: String) throws -> Int? {
        var i: Int32 = 0
        let rc = cnl_link_ifindex(ctx, name, &i)
        if rc == -ENODEV { return nil }
        guard rc == 0 else { throw NetlinkError("look up interface \(name)", rc) }
        return Int(i)
    }

    /// How many tc filters (anyone's) the clsact qdisc of `ifindex` holds, both hooks.
    public func clsactFilterCount(ifindex: Int) throws -> Int {
        let n = cnl_clsact_filter_count(ctx, Int32(ifindex))
        guard n >= 0 else { throw NetlinkError("list tc filters of ifindex \(ifindex)", n) }
        return Int(n)
    }

    /// Creates a VXLAN `external` (collect_md) device, learning off, and sets it up.
    public func createVXLANExternal(name: String, port: UInt16 = MirrorDevice.vxlanPort, mtu: UInt32 = 0) throws {
        let rc = cnl_vxlan_external_create(ctx, name, port, mtu)
        guard rc == 0 else { throw NetlinkError("create VXLAN external device \(name) (dstport \(port))", rc) }
    }

    /// IPv6 off on `name` (no addresses, MLD reports or neighbour discovery of its
    /// own). Throws with ENOENT when the kernel has no IPv6 or there is no such link.
    public func disableIPv6(_ name: String) throws {
        let rc = cnl_link_disable_ipv6(ctx, name)
        guard rc == 0 else { throw NetlinkError("turn IPv6 off on \(name)", rc) }
    }

    public struct VXLANInfo: Hashable, Sendable {
        public var external: Bool
        public var port: UInt16
        public var up: Bool
    }

    /// nil when `name` does not exist; throws when it exists but is not VXLAN.
    public func vxlanInfo(_ name: String) throws -> VXLANInfo? {
        var external: Int32 = 0, up: Int32 = 0
        var port: UInt16 = 0
        let rc = cnl_vxlan_external_info(ctx, name, &external, &port, &up)
        if rc == -ENODEV { return nil }
        if rc == -EINVAL { throw NetlinkError("\(name) exists and is not a VXLAN device", rc) }
        guard rc == 0 else { throw NetlinkError("read VXLAN device \(name)", rc) }
        return VXLANInfo(external: external != 0, port: port, up: up != 0)
    }

    /// The path MTU toward `address` (route mtu metric, else the output device's MTU);
    /// nil when there is no route.
    public func pathMTU(to address: IPAddress) throws -> Int? {
        var mtu: Int32 = 0, oif: Int32 = 0
        let bytes = address.bytes
        let family = address.ethertype == .ipv4 ? AF_INET : AF_INET6
        let rc = bytes.withUnsafeBufferPointer { cnl_route_mtu(ctx, family, $0.baseAddress, &mtu, &oif) }
        if rc == -ENETUNREACH || rc == -EHOSTUNREACH || rc == -ENOENT { return nil }
        guard rc == 0 else { throw NetlinkError("route lookup toward \(address)", rc) }
        return Int(mtu)
    }

    /// The ifindex of the device the route toward `address` leaves through; nil when
    /// there is no route.
    public func outputInterface(to address: IPAddress) -> Int? {
        var mtu: Int32 = 0, oif: Int32 = 0
        let bytes = address.bytes
        let family = address.ethertype == .ipv4 ? AF_INET : AF_INET6
        let rc = bytes.withUnsafeBufferPointer { cnl_route_mtu(ctx, family, $0.baseAddress, &mtu, &oif) }
        return rc == 0 && oif > 0 ? Int(oif) : nil
    }

    /// What a route and neighbour lookup found toward a collector (`encapPath`).
    public enum EncapPathLookup {
        /// Route, source address and next-hop MAC known.
        case resolved(cnl_encap_path)
        /// Route and source known; the next hop's MAC not (yet): the kernel resolves it.
        case unresolved(cnl_encap_path)
        /// Nothing can be sent there: no unicast route, or no source address for it.
        case noRoute(Int32)
        /// A route the template cannot describe (not out of an Ethernet device), or
        /// the lookup itself failed: no template.
        case unknown(Int32)
    }

    /// What the datapath needs to push outer headers toward a collector of either
    /// family itself (bpf/mirror_abi.h, "Encapsulation templates").
    public func encapPath(to address: IPAddress) -> EncapPathLookup {
        var out = cnl_encap_path()
        let family = address.ethertype == .ipv4 ? AF_INET : AF_INET6
        let rc = address.bytes.withUnsafeBufferPointer { cnl_encap_path_lookup(ctx, family, $0.baseAddress, &out) }
        switch rc {
        case 0: return .resolved(out)
        case -EAGAIN: return .unresolved(out)
        case -ENETUNREACH, -EHOSTUNREACH, -ENOENT, -EADDRNOTAVAIL, -EACCES, -EPERM, -EINVAL: return .noRoute(rc)
        default: return .unknown(rc)
        }
    }

    /// A neighbour entry of the agent's (tagged CNL_NEIGH_PROTOCOL): a collector's
    /// next hop (network order, 4 or 16 bytes) on the device its route leaves by.
    public struct NeighbourKey: Hashable, Sendable {
        public var ifindex: Int32
        public var address: [UInt8]
        public init(ifindex: Int32, address: [UInt8]) { self.ifindex = ifindex; self.address = address }
        var family: Int32 { address.count == 16 ? AF_INET6 : AF_INET }
    }

    /// Whose a next hop's neighbour entry is (`ensureManagedNeighbour`).
    public enum NeighbourOwnership: Sendable {
        /// Made now (or a learnt entry made managed and the agent's): being resolved.
        case madeNow
        /// The agent's managed entry already.
        case ours
        /// An administrator's static entry or another owner's managed one: left alone.
        case theirs
    }

    /// A managed neighbour entry for `key` (the kernel resolves and re-probes it by
    /// itself), tagged as the agent's; an administrator's static entry or another
    /// owner's managed one is left alone.
    @discardableResult
    public func ensureManagedNeighbour(_ key: NeighbourKey) throws -> NeighbourOwnership {
        let rc = key.address.withUnsafeBufferPointer { cnl_neigh_ensure_managed(ctx, key.family, key.ifindex, $0.baseAddress) }
        guard rc >= 0 else { throw NetlinkError("add a managed neighbour entry on ifindex \(key.ifindex)", rc) }
        return rc == 2 ? .madeNow : rc == 1 ? .ours : .theirs
    }

    /// Deletes the entry for `key` when it is the agent's; true when it was.
    @discardableResult
    public func deleteOwnNeighbour(_ key: NeighbourKey) throws -> Bool {
        let rc = key.address.withUnsafeBufferPointer { cnl_neigh_delete_own(ctx, key.family, key.ifindex, $0.baseAddress) }
        guard rc >= 0 else { throw NetlinkError("delete the agent's neighbour entry on ifindex \(key.ifindex)", rc) }
        return rc == 1
    }

    /// Every neighbour entry tagged as the agent's, of both families.
    public func ownNeighbours() throws -> [NeighbourKey] {
        var capacity = 64
        while true {
            var buf = [cnl_neigh_key](repeating: cnl_neigh_key(), count: capacity)
            let n = cnl_neigh_list_own(ctx, &buf, Int32(capacity))
            guard n >= 0 else { throw NetlinkError("list the agent's neighbour entries", n) }
            if Int(n) > capacity { capacity = Int(n) * 2; continue }
            return buf.prefix(Int(n)).map { k in
                let len = k.family == AF_INET6 ? 16 : 4
                return NeighbourKey(ifindex: Int32(k.ifindex), address: withUnsafeBytes(of: k.addr) { Array($0.prefix(len)) })
            }
        }
    }

    /// Returns false when there was no such interface.
    @discardableResult
    public func deleteLink(_ name: String) throws -> Bool {
        let rc = cnl_link_delete(ctx, name)
        if rc == -ENODEV { return false }
        guard rc == 0 else { throw NetlinkError("delete interface \(name)", rc) }
        return true
    }
}

/// The mirror device: the VXLAN `external` device copies leave through.
public enum MirrorDevice {
    public static let defaultName = "mirror0"
    public static let vxlanPort = UInt16(MIRROR_VXLAN_PORT)

    /// Creates the device, or adopts an existing one when it is exactly what the agent
    /// would have made (after a restart). Anything else by that name is refused, never
    /// replaced: it may belong to someone else. Returns its ifindex.
    ///
    /// Only copies leave it: IPv6 is off on it (created so, and turned off on an
    /// adopted one, which an older agent may have left on), so that it sends no MLD
    /// reports or neighbour solicitations that stage 2 would count as foreign frames.
    @discardableResult
    public static func ensure(_ nl: NetlinkContext, name: String = defaultName) throws -> Int {
        if let info = try nl.vxlanInfo(name) {
            guard info.external, info.port == vxlanPort else {
                throw NetlinkError(
                    "\(name) exists but is not a VXLAN external device on port \(vxlanPort) (found external=\(info.external) port=\(info.port)); remove it or choose another name",
                    -EEXIST)
            }
            try? nl.disableIPv6(name)  // best effort, as at creation: no IPv6, nothing to silence
        } else {
            try nl.createVXLANExternal(name: name, port: vxlanPort)
        }
        guard let i = try nl.ifindex(name) else { throw NetlinkError("\(name) vanished after creation", -ENODEV) }
        return i
    }

    /// `cleanup`: deletes the device only when it is a VXLAN external device (ours).
    @discardableResult
    public static func remove(_ nl: NetlinkContext, name: String = defaultName) throws -> Bool {
        let info: NetlinkContext.VXLANInfo?
        do { info = try nl.vxlanInfo(name) } catch let e as NetlinkError where e.code == -EINVAL {
            return false  // not VXLAN: someone else's
        }
        guard let info, info.external else { return false }
        return try nl.deleteLink(name)
    }
}

public struct LinkEvent: Hashable, Sendable {
    public var name: String
    public var ifindex: Int
    /// true: the link exists (new or changed); false: removed.
    public var present: Bool
    public var up: Bool
}

/// Watches RTNLGRP_LINK on its own thread and reports links added and removed, so
/// that pending sources get attached when their interface appears.
public final class LinkMonitor: @unchecked Sendable {
    /// Shared with the thread, which must not retain the monitor (deinit stops it).
    private final class Flag: @unchecked Sendable {
        let lock = NSLock()
        var running = false
        let finished = DispatchSemaphore(value: 0)
        var isRunning: Bool { lock.withLock { running } }
    }
    private struct Handle: @unchecked Sendable { let pointer: OpaquePointer }

    private let mon: Handle
    private let flag = Flag()

    public init(netns: String? = nil) throws {
        var p: OpaquePointer?
        let rc = netns.map { cnl_monitor_open($0, &p) } ?? cnl_monitor_open(nil, &p)
        guard rc == 0, let p else { throw NetlinkError("open link monitor\(netns.map { " in \($0)" } ?? "")", rc) }
        mon = Handle(pointer: p)
    }

    deinit {
        stop()
        cnl_monitor_close(mon.pointer)
    }

    /// Calls `handler` on the monitor's thread for every event. `onError` gets receive
    /// errors (events may have been lost, e.g. ENOBUFS): the owner should resync.
    public func start(
        _ handler: @escaping @Sendable (LinkEvent) -> Void,
        onError: @escaping @Sendable (NetlinkError) -> Void = { _ in }
    ) {
        let alreadyRunning = self.flag.lock.withLock { () -> Bool in
            defer { self.flag.running = true }
            return self.flag.running
        }
        guard !alreadyRunning else { return }
        let mon = self.mon, flag = self.flag
        let t = Thread {
            var events = [cnl_link_event](repeating: cnl_link_event(), count: 64)
            while flag.isRunning {
                let n = cnl_monitor_next(mon.pointer, 200, &events, Int32(events.count))
                if n < 0 { onError(NetlinkError("receive link events", n)); continue }
                for e in events.prefix(Int(n)) {
                    let name = withUnsafeBytes(of: e.name) { raw in
                        String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                    }
                    handler(LinkEvent(name: name, ifindex: Int(e.ifindex), present: e.added != 0, up: e.up != 0))
                }
            }
            flag.finished.signal()
        }
        t.name = "link-monitor"
        t.start()
    }

    public enum Update: Sendable {
        case link(LinkEvent)
        /// Events may have been lost (e.g. ENOBUFS): the owner should resync.
        case lost(NetlinkError)
    }

    /// The events in order as an async sequence: the monitor's thread runs until the
    /// sequence ends (its consumer is cancelled or drops it).
    public func updates() -> AsyncStream<Update> {
        let (stream, sink) = AsyncStream.makeStream(of: Update.self)
        sink.onTermination = { _ in self.stop() }
        start({ sink.yield(.link($0)) }, onError: { sink.yield(.lost($0)) })
        return stream
    }

    /// Stops the thread and waits for it (at most one poll interval).
    public func stop() {
        let wasRunning = flag.lock.withLock { () -> Bool in
            defer { flag.running = false }
            return flag.running
        }
        if wasRunning { flag.finished.wait() }
    }
}
