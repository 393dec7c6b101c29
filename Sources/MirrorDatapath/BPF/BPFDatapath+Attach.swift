import CLibbpf
import CMirrorABI
import Foundation
import Glibc
import MirrorCompiler
import MirrorCore

/// Hooks: the classifier and stage 2 on tcx links (pinned) or clsact filters.
extension BPFDatapath {
    // MARK: interfaces

    public static func ifindex(of interface: String) throws(DatapathError) -> Int32 {
        let i = if_nametoindex(interface)
        guard i != 0 else { throw DatapathError("interface \(interface)", errno: Glibc.errno) }
        return Int32(i)
    }

    // MARK: attach / detach

    /// How programs sit on a device's TC hooks.
    public enum AttachMode: String, Sendable, CaseIterable {
        /// tcx links (kernel >= 6.6): no qdisc, no filter walk; the hook costs nothing
        /// measurable (BENCHMARKS.md). Links are pinned under `<pinDirectory>/links`,
        /// so they outlive the agent as tc filters do.
        case tcx
        /// A direct-action filter (our fixed handle and priority) on the clsact qdisc.
        case clsact

        /// tcx when the running kernel has it (a BPF_PROG_QUERY on lo answers), else clsact.
        public static func probe() -> AttachMode {
            var ids = [UInt32](repeating: 0, count: 1)
            var count: UInt32 = 1
            return clibbpf_tcx_query(1, 0, &ids, &count) == 0 ? .tcx : .clsact
        }
    }

    /// What `attach` did, so `detach` undoes exactly that.
    public struct Attachment: Hashable, Sendable {
        public var interface: String
        public var ifindex: Int32
        public var hook: TCHook
        /// The clsact qdisc was created by this attach (it did not exist before).
        public var createdHook: Bool
        public var programID: UInt32
        public var mode: AttachMode = .clsact
        /// A new tcx link was created (one RCU grace period under rtnl, ~12 ms here).
        public var createdLink = false
    }

    /// Attaches the classifier for `hook` on `interface` (name, or "#<ifindex>").
    /// Attaching twice never duplicates: tcx finds our pinned link and points it at
    /// this instance's program (atomically); clsact replaces our filter (same handle
    /// and priority), creating the qdisc when missing.
    @discardableResult
    public func attach(interface: String, hook: TCHook) throws(DatapathError) -> Attachment {
        let ifindex = try Self.ifindex(of: interface)
        return try attach(ifindex: ifindex, name: interface, hook: hook)
    }

    /// `newLink` false (tcx mode): when the hook has no link of ours yet, attach a
    /// clsact filter instead, now, and leave the link for later (`attach` again with
    /// `newLink` true moves the hook over). Creating a tcx link waits for an RCU grace
    /// period with rtnl held, about 12 ms on this VM and not parallel; a clsact filter
    /// takes about 0.1 ms. So a large apply mirrors at once and upgrades afterwards.
    @discardableResult
    public func attach(ifindex: Int32, name: String? = nil, hook: TCHook, newLink: Bool = true) throws(DatapathError) -> Attachment {
        let prog: ClassifierProgram = hook == .ingress ? .tcIngress : .tcEgress
        return try attach(ifindex: ifindex, name: name, hook: hook, programFD: programFD(prog), newLink: newLink)
    }

    func attach(ifindex: Int32, name: String?, hook: TCHook, programFD fd: Int32, newLink: Bool = true) throws(DatapathError) -> Attachment
    {
        let label = name ?? "ifindex \(ifindex)"
        switch attachMode {
        case .tcx: return try attachTCX(ifindex: ifindex, label: label, hook: hook, programFD: fd, newLink: newLink)
        case .clsact: return try attachClsact(ifindex: ifindex, label: label, hook: hook, programFD: fd)
        }
    }

    /// Whether this instance created the clsact qdisc of `ifindex`.
    public func createdClsact(ifindex: Int32) -> Bool { createdHooks.contains(ifindex) }

    /// Destroys the clsact qdisc of `ifindex` if this instance created it. The caller
    /// has checked that no filter (anyone's) is left on it.
    /// Removes the clsact qdisc of `ifindex` whoever made it (cleanup, when no filter
    /// is left on it). Destroying a hook takes every filter on it with it.
    public func destroyClsact(ifindex: Int32) {
        createdHooks.remove(ifindex)
        _ = clibbpf_tc_hook_destroy(ifindex)
    }

    public func destroyCreatedClsact(ifindex: Int32) {
        guard createdHooks.remove(ifindex) != nil else { return }
        _ = clibbpf_tc_hook_destroy(ifindex)
    }

    private func attachClsact(ifindex: Int32, label: String, hook: TCHook, programFD fd: Int32) throws(DatapathError) -> Attachment {
        let rc = clibbpf_tc_hook_create(ifindex)
        let created: Bool
        if rc == 0 {
            created = true; createdHooks.insert(ifindex)
        } else if rc == -EEXIST {
            created = false
        } else {
            throw DatapathError("create clsact on \(label)", errno: -rc)
        }
        var id: UInt32 = 0
        let arc = clibbpf_tc_attach(ifindex, hook.isEgress, fd, Self.filterHandle, Self.filterPriority, 1, &id)
        if arc != 0 {
            if created { _ = clibbpf_tc_hook_destroy(ifindex); createdHooks.remove(ifindex) }
            throw DatapathError("attach tc \(hook.rawValue) on \(label)", errno: -arc)
        }
        // A tcx link of ours from an earlier run in tcx mode goes, now that the filter
        // runs. Until the kernel has released it, it runs before the filter and marks
        // each packet it decided on, which the filter then passes: never copied twice.
        if let fd = heldLinks.removeValue(forKey: LinkKey(ifindex: ifindex, hook: hook)) { Glibc.close(fd) }
        if let path = linkPin(ifindex: ifindex, hook: hook) { unlink(path) }
        for path in formerLinkPins(ifindex: ifindex, hook: hook) { unlink(path) }
        return Attachment(interface: label, ifindex: ifindex, hook: hook, createdHook: created, programID: id, mode: .clsact)
    }

    /// Where the tcx link of (ifindex, hook) is pinned; nil without a pin directory.
    /// Named by ifindex: a recreated device (new ifindex) gets a new link, and the
    /// old one, defunct with its device, is pruned.
    func linkPin(ifindex: Int32, hook: TCHook) -> String? {
        pinDirectory.map { "\($0)/links/tcx-\(ifindex)-\(hook.rawValue)" }
    }

    func programID(ofFD fd: Int32) -> UInt32 {
        if let id = programIDs[fd] { return id }
        var id: UInt32 = 0
        _ = clibbpf_prog_id_name(fd, &id, nil)
        programIDs[fd] = id
        return id
    }

    /// Where a former layout's agent pinned the tcx link of (ifindex, hook).
    func formerLinkPins(ifindex: Int32, hook: TCHook) -> [String] {
        formerPinDirectories.map { "\($0)/links/tcx-\(ifindex)-\(hook.rawValue)" }
    }

    /// The tcx link of ours on (ifindex, hook), as an fd the caller closes, when it is
    /// there and live (its device is still this ifindex). Stale pins are removed.
    /// Looked for under our pin directory, then under the former layouts' ones
    /// (`formerPin`: where it was found there, for the caller to adopt it).
    private func ourLink(ifindex: Int32, hook: TCHook) -> (fd: Int32, programID: UInt32, formerPin: String?)? {
        if let fd = heldLinks[LinkKey(ifindex: ifindex, hook: hook)] {
            let dup = Glibc.dup(fd)
            return dup < 0 ? nil : (dup, Self.tcxLinkInfo(dup)?.programID ?? 0, nil)
        }
        guard let path = linkPin(ifindex: ifindex, hook: hook) else { return nil }
        for candidate in [path] + formerLinkPins(ifindex: ifindex, hook: hook) {
            let fd = clibbpf_obj_get(candidate)
            guard fd >= 0 else { continue }
            if let info = Self.tcxLinkInfo(fd), info.ifindex == UInt32(ifindex), info.egress == (hook == .egress) {
                return (fd, info.programID, candidate == path ? nil : candidate)
            }
            Glibc.close(fd)
            unlink(candidate)  // defunct (its device is gone) or not ours: it must not shadow a new link
        }
        return nil
    }

    static func tcxLinkInfo(_ fd: Int32) -> (ifindex: UInt32, egress: Bool, programID: UInt32)? {
        var ifindex: UInt32 = 0, type: UInt32 = 0, prog: UInt32 = 0
        guard clibbpf_tcx_link_info(fd, &ifindex, &type, &prog) == 0 else { return nil }
        return (ifindex, type == UInt32(CLIBBPF_TCX_EGRESS), prog)
    }

    private func attachTCX(
        ifindex: Int32, label: String, hook: TCHook, programFD fd: Int32,
        newLink: Bool
    ) throws(DatapathError) -> Attachment {
        let wanted = programID(ofFD: fd)
        if let (link, current, formerPin) = ourLink(ifindex: ifindex, hook: hook) {
            defer { Glibc.close(link) }
            if current != wanted {
                // A restarted (or upgraded) agent: the same link runs the new program from the next packet on.
                let rc = clibbpf_link_update(link, fd)
                if rc != 0 { throw DatapathError("update tcx \(hook.rawValue) link on \(label)", errno: -rc) }
            }
            // Another layout's link (a rolling upgrade or downgrade): it runs our program
            // now (BPF_LINK_UPDATE, atomic: no packet between two programs or none), and
            // is pinned under our directory before its old pin goes.
            if let formerPin, let path = linkPin(ifindex: ifindex, hook: hook) {
                try pinLink(link, at: path, label: label, hook: hook)
                unlink(formerPin)
            }
            return Attachment(interface: label, ifindex: ifindex, hook: hook, createdHook: false, programID: wanted, mode: .tcx)
        }
        if !newLink { return try attachClsact(ifindex: ifindex, label: label, hook: hook, programFD: fd) }
        let link = clibbpf_tcx_link_create(fd, ifindex, hook.isEgress)
        if link < 0 { throw DatapathError("attach tcx \(hook.rawValue) on \(label)", errno: -link) }
        if let path = linkPin(ifindex: ifindex, hook: hook) {
            defer { Glibc.close(link) }
            // Unpinned, the link would detach when this function closes it: say so instead.
            try pinLink(link, at: path, label: label, hook: hook)
        } else {
            heldLinks[LinkKey(ifindex: ifindex, hook: hook)] = link
        }
        // An agent that ran in clsact mode before (an upgrade), or this one until the
        // link was made (`newLink`), left its filter there: removed only now, after the
        // link runs, so that no packet goes unmirrored. Meanwhile the kernel runs both
        // on each packet, the link first: it marks the packet (MIRROR_SEEN_MAGIC in
        // skb->cb, bpf/classify.bpf.c) and the filter passes it, so none is copied twice.
        _ = clibbpf_tc_detach(ifindex, hook.isEgress, Self.filterHandle, Self.filterPriority)
        return Attachment(
            interface: label, ifindex: ifindex, hook: hook, createdHook: false, programID: wanted, mode: .tcx,
            createdLink: true)
    }

    private func pinLink(_ link: Int32, at path: String, label: String, hook: TCHook) throws(DatapathError) {
        let dir = (path as NSString).deletingLastPathComponent
        if mkdir(dir, 0o700) != 0 && Glibc.errno != EEXIST {
            throw DatapathError("create \(dir)", errno: Glibc.errno)
        }
        let rc = clibbpf_obj_pin(link, path)
        if rc != 0 { throw DatapathError("pin tcx \(hook.rawValue) link of \(label) at \(path)", errno: -rc) }
    }

    /// Removes our filter (and only ours) from `hook` of `interface`. The clsact qdisc
    /// is left in place by default: destroying it would remove other owners' filters
    /// too, and libbpf cannot list them. With `destroyHookIfCreated`, the qdisc is
    /// destroyed when this instance created it and neither of our filters remains
    /// on it: for interfaces nobody else filters (tests, agent-owned devices).
    public func detach(_ a: Attachment, destroyHookIfCreated: Bool = false) throws(DatapathError) {
        try detach(ifindex: a.ifindex, name: a.interface, hook: a.hook)
        if destroyHookIfCreated && createdHooks.contains(a.ifindex)
            && !isAttached(ifindex: a.ifindex, hook: .ingress) && !isAttached(ifindex: a.ifindex, hook: .egress)
        {
            _ = clibbpf_tc_hook_destroy(a.ifindex)
            createdHooks.remove(a.ifindex)
        }
    }

    public func detach(interface: String, hook: TCHook) throws(DatapathError) {
        let ifindex = try Self.ifindex(of: interface)
        try detach(ifindex: ifindex, name: interface, hook: hook)
    }

    /// Removes ours from the hook, whichever way it was attached (so that switching
    /// modes, or cleaning up after an older agent, leaves nothing behind).
    public func detach(ifindex: Int32, name: String? = nil, hook: TCHook) throws(DatapathError) {
        let label = name ?? "ifindex \(ifindex)"
        // Detached explicitly before the last reference goes: a link freed by its last
        // close or unpin leaves the hook only when the kernel gets to it, so the hook
        // would still show the program right after detach returned.
        if let fd = heldLinks.removeValue(forKey: LinkKey(ifindex: ifindex, hook: hook)) {
            _ = clibbpf_link_detach(fd)
            Glibc.close(fd)
        }
        for path in (linkPin(ifindex: ifindex, hook: hook).map { [$0] } ?? []) + formerLinkPins(ifindex: ifindex, hook: hook) {
            let fd = clibbpf_obj_get(path)
            if fd >= 0 {
                _ = clibbpf_link_detach(fd)
                Glibc.close(fd)
            }
            if unlink(path) != 0 && Glibc.errno != ENOENT {
                throw DatapathError("unpin tcx \(hook.rawValue) link of \(label) at \(path)", errno: Glibc.errno)
            }
        }
        let rc = clibbpf_tc_detach(ifindex, hook.isEgress, Self.filterHandle, Self.filterPriority)
        // ENOENT: no such filter; EINVAL: no clsact qdisc at all. Either way not attached.
        if rc != 0 && rc != -ENOENT && rc != -EINVAL {
            throw DatapathError("detach tc \(hook.rawValue) on \(label)", errno: -rc)
        }
    }

    /// Whether ours is on `hook` of the interface (any program id), attached in `mode`
    /// (nil: this instance's).
    public func isAttached(ifindex: Int32, hook: TCHook, mode: AttachMode? = nil) -> Bool {
        switch mode ?? attachMode {
        case .tcx:
            guard let (fd, _, _) = ourLink(ifindex: ifindex, hook: hook) else {
                // In tcx mode a hook may be on clsact until its link is made (`newLink`).
                return mode == nil && isAttached(ifindex: ifindex, hook: hook, mode: .clsact)
            }
            Glibc.close(fd)
            return true
        case .clsact:
            var id: UInt32 = 0
            return clibbpf_tc_query(ifindex, hook.isEgress, Self.filterHandle, Self.filterPriority, &id) == 0
        }
    }

    /// Our pinned tcx links: (pin path, the ifindex in its name).
    private func linkPins() -> [(path: String, ifindex: Int32)] {
        guard let pinDirectory else { return [] }
        let dir = pinDirectory + "/links"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.compactMap { name in
            let parts = name.split(separator: "-")  // tcx-IFINDEX-HOOK (linkPin)
            guard parts.count == 3, parts[0] == "tcx", let i = Int32(parts[1]) else { return nil }
            return (dir + "/" + name, i)
        }
    }

    /// Unpins every pinned tcx link whose device is gone (a deleted interface leaves
    /// its link defunct, still pinned) or, with `all`, every one: then nothing of
    /// ours stays on any hook through a link. Returns how many were removed.
    @discardableResult
    public func pruneLinks(all: Bool = false) -> Int {
        var removed = 0
        for (path, _) in linkPins() {
            var stale = all
            if !stale {
                let fd = clibbpf_obj_get(path)
                if fd < 0 { continue }
                stale = (Self.tcxLinkInfo(fd)?.ifindex ?? 0) == 0
                Glibc.close(fd)
            }
            if stale && unlink(path) == 0 { removed += 1 }
        }
        if all, let pinDirectory { rmdir(pinDirectory + "/links") }
        return removed
    }

    /// The ifindexes that have a pinned tcx link of ours (live or defunct).
    public func pinnedLinkIfindexes() -> Set<Int32> { Set(linkPins().map(\.ifindex)) }

    /// The names of the programs on a tcx hook of the device, in the order the
    /// kernel runs them (clsact filters are not included: `tc filter show` lists
    /// those). For tests and diagnostics; [] on kernels without tcx.
    public static func tcxPrograms(ifindex: Int32, hook: TCHook) -> [String] {
        var ids = [UInt32](repeating: 0, count: 64)
        var count = UInt32(ids.count)
        guard clibbpf_tcx_query(ifindex, hook.isEgress, &ids, &count) == 0 else { return [] }
        return ids.prefix(Int(count)).map { id in
            var name = [CChar](repeating: 0, count: 17)
            return clibbpf_prog_name_by_id(id, &name) == 0 ? String(cString: name) : "#\(id)"
        }
    }
}
