import Foundation
import Logging
import MirrorAPI
import MirrorAgent
import MirrorCore
import MirrorDatapath
import MirrorTestSupport
import Testing

extension TestNetns {
    /// The agent suites' namespaces: agt-...
    convenience init() throws { try self.init(prefix: "agt") }
}

/// Thread-safe event log for the monitor's callback.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [LinkEvent] = []
    func add(_ e: LinkEvent) { lock.withLock { events.append(e) } }
    var all: [LinkEvent] { lock.withLock { events } }

    /// Waits up to `seconds` for an event that satisfies `predicate`.
    func wait(seconds: Double = 5, _ predicate: (LinkEvent) -> Bool) -> LinkEvent? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let e = all.first(where: predicate) { return e }
            usleep(20_000)
        }
        return nil
    }
}

@Suite("Netlink in a network namespace (root)", .enabled(if: isRoot, "needs root for network namespaces"), .serialized)
struct NetlinkTests {
    @Test func mirrorDeviceIsCreatedAdoptedAndRemoved() throws {
        let ns = try TestNetns()
        let nl = try NetlinkContext(netns: ns.path)
        #expect(try nl.ifindex("lo") == 1)
        #expect(try nl.ifindex("mirror0") == nil)

        let index = try MirrorDevice.ensure(nl)
        let info = try #require(try nl.vxlanInfo("mirror0"))
        #expect(info.external)
        #expect(info.port == 4789)
        #expect(info.up)
        // What iproute2 sees: a collect_md device on 4789.
        let shown = try ns.ip("-d", "link", "show", "mirror0")
        #expect(shown.contains("external"))
        #expect(shown.contains("dstport 4789"))
        #expect(shown.contains("UP"))

        // A restart adopts it rather than failing or recreating it.
        #expect(try MirrorDevice.ensure(nl) == index)

        #expect(try MirrorDevice.remove(nl))
        #expect(try nl.ifindex("mirror0") == nil)
        #expect(try MirrorDevice.remove(nl) == false)
    }

    @Test func aForeignDeviceWithTheNameIsNeverReplaced() throws {
        let ns = try TestNetns()
        try ns.ip("link", "add", "mirror0", "type", "veth", "peer", "name", "mirror0-peer")
        let nl = try NetlinkContext(netns: ns.path)
        #expect(throws: NetlinkError.self) { try MirrorDevice.ensure(nl) }
        #expect(try MirrorDevice.remove(nl) == false)
        #expect(try nl.ifindex("mirror0") != nil)

        // A VXLAN that is not `external` is not ours either.
        try ns.ip("link", "add", "vx1", "type", "vxlan", "id", "5", "dstport", "4789")
        #expect(throws: NetlinkError.self) { try MirrorDevice.ensure(nl, name: "vx1") }
        #expect(try MirrorDevice.remove(nl, name: "vx1") == false)
    }

    @Test func createInTheNamespaceDoesNotTouchTheHost() throws {
        let ns = try TestNetns()
        let nl = try NetlinkContext(netns: ns.path)
        let name = "agtvx" + String(Int.random(in: 1000...9999))
        try MirrorDevice.ensure(nl, name: name)
        let host = try NetlinkContext()
        #expect(try host.ifindex(name) == nil)
        try nl.deleteLink(name)
    }

    /// Only copies leave the mirror device and the segmenter pair. On a forwarding
    /// host (a hypervisor is one) a new device with IPv6 on sends MLD reports and a
    /// DAD solicitation of its own within a second of going up; stage 2 and the
    /// segmenter would drop them and count them as foreign frames.
    @Test func theAgentsDevicesSendNothingOfTheirOwn() throws {
        let ns = try TestNetns()
        try Command.run(
            "ip", "netns", "exec", ns.name, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.conf.default.forwarding=1", "net.ipv4.ip_forward=1")
        try ns.ip("link", "set", "lo", "up")
        let pcap = FileManager.default.temporaryDirectory.appendingPathComponent("\(ns.name).pcap").path
        defer { try? FileManager.default.removeItem(atPath: pcap) }
        let capture = Process()
        capture.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        capture.arguments = ["ip", "netns", "exec", ns.name, "tcpdump", "-i", "any", "-n", "--immediate-mode", "-U", "-w", pcap]
        let notes = Pipe()
        capture.standardOutput = FileHandle.nullDevice
        capture.standardError = notes
        try capture.run()
        defer { if capture.isRunning { kill(capture.processIdentifier, SIGKILL) } }
        var said = ""
        while !said.contains("listening on") {  // tcpdump's note once it captures
            let more = notes.fileHandleForReading.availableData
            if more.isEmpty { break }
            said += String(decoding: more, as: UTF8.self)
        }
        try #require(said.contains("listening on"), "tcpdump did not start: \(said)")

        let nl = try NetlinkContext(netns: ns.path)
        try MirrorDevice.ensure(nl)
        try SegmenterDevice.ensure(nl)
        usleep(2_500_000)
        // What the capture must see: one ping on lo, so that an empty capture
        // cannot pass for silence.
        try Command.run("ip", "netns", "exec", ns.name, "ping", "-c", "1", "-W", "1", "127.0.0.1")
        usleep(500_000)
        // SIGKILL: the test runner's threads block SIGINT and SIGTERM, and a child
        // inherits that mask. With --immediate-mode and -U every frame is in the
        // file as soon as it is captured.
        kill(capture.processIdentifier, SIGKILL)
        capture.waitUntilExit()

        let frames = try Command.run("sh", "-c", "tcpdump -r '\(pcap)' -n 2>/dev/null").split(separator: "\n")
        let control = frames.filter { $0.contains("127.0.0.1 > 127.0.0.1: ICMP echo") }
        #expect(control.count == 2, "the capture missed the ping on lo: \(frames)")
        let own = frames.filter { !$0.contains("127.0.0.1 > 127.0.0.1: ICMP echo") }
        #expect(own.isEmpty, "frames the agent's devices sent of their own:\n\(own.joined(separator: "\n"))")
        for dev in ["mirror0", "mirseg0", "mirseg1"] {
            let off = try Command.run("ip", "netns", "exec", ns.name, "cat", "/proc/sys/net/ipv6/conf/\(dev)/disable_ipv6")
            #expect(off.trimmingCharacters(in: .whitespacesAndNewlines) == "1", "IPv6 on \(dev)")
            #expect(try ns.ip("-6", "addr", "show", "dev", dev).isEmpty)
        }
    }

    @Test func pathMTUComesFromTheRouteOrItsDevice() throws {
        let ns = try TestNetns()
        try ns.ip("link", "add", "under0", "type", "veth", "peer", "name", "under1")
        try ns.ip("link", "set", "under0", "mtu", "1000", "up")
        try ns.ip("link", "set", "under1", "up")
        try ns.ip("addr", "add", "198.51.100.1/24", "dev", "under0")
        try ns.ip("route", "add", "203.0.113.0/24", "dev", "under0", "mtu", "900")
        try ns.ip("link", "add", "under6", "type", "veth", "peer", "name", "under7")
        try ns.ip("link", "set", "under6", "mtu", "1400", "up")
        try ns.ip("-6", "addr", "add", "2001:db8:5::1/64", "dev", "under6", "nodad")
        let nl = try NetlinkContext(netns: ns.path)
        #expect(try nl.pathMTU(to: IPAddress("198.51.100.2")!) == 1000)
        #expect(try nl.pathMTU(to: IPAddress("203.0.113.9")!) == 900)
        #expect(try nl.pathMTU(to: IPAddress("2001:db8:5::2")!) == 1400)
        #expect(try nl.pathMTU(to: IPAddress("192.0.2.1")!) == nil)  // no route
        // The same socket keeps working after lookups (request/answer stay paired).
        #expect(try nl.ifindex("under0") != nil)
        try ns.ip("link", "set", "under0", "mtu", "1200")
        #expect(try nl.pathMTU(to: IPAddress("198.51.100.2")!) == 1200)
    }

    @Test func linkMonitorReportsInterfacesAddedAndRemoved() throws {
        let ns = try TestNetns()
        let monitor = try LinkMonitor(netns: ns.path)
        let log = EventLog()
        monitor.start { log.add($0) }
        defer { monitor.stop() }

        try ns.ip("link", "add", "tap-a", "type", "veth", "peer", "name", "tap-b")
        let added = try #require(log.wait { $0.name == "tap-a" && $0.present })
        let nl = try NetlinkContext(netns: ns.path)
        #expect(try nl.ifindex("tap-a") == added.ifindex)

        try ns.ip("link", "del", "tap-a")
        #expect(log.wait { $0.name == "tap-a" && !$0.present && $0.ifindex == added.ifindex } != nil)
    }

    @Test func pendingSourceBecomesAttachedWhenItsInterfaceAppears() async throws {
        let ns = try TestNetns()
        let t = try await TestAgent()
        defer { t.stopNow() }
        _ = try await t.request("POST", APIPath.apply, Fixtures.valid)
        var st: StatusResponse = try await t.call("GET", APIPath.status)
        #expect(st.sources.allSatisfy { $0.state == .pending })

        // mirror-agent's service for link events, watching the test's namespace.
        var logger = Logger(label: "test-links")
        logger.logLevel = .warning
        let service = LinkEventService(agent: t.agent, logger: logger, netns: ns.path)
        let links = Task { try await service.run() }
        defer { links.cancel() }
        /// The status once `done` holds for it (the events take a moment), at most 5 s.
        func status(when done: (StatusResponse) -> Bool) async throws -> StatusResponse {
            var st: StatusResponse = try await t.call("GET", APIPath.status)
            for _ in 0..<100 where !done(st) {
                try await Task.sleep(for: .milliseconds(50))
                st = try await t.call("GET", APIPath.status)
            }
            return st
        }

        try await offThread { try ns.ip("link", "add", "tap-vm1", "type", "veth", "peer", "name", "peer-vm1") }
        st = try await status { $0.sources.first { $0.id == "vm1" }?.state == .attached }
        #expect(st.sources.first { $0.id == "vm1" }?.state == .attached)
        #expect(st.sources.first { $0.id == "vm2" }?.state == .pending)

        try await offThread { try ns.ip("link", "del", "tap-vm1") }
        st = try await status { $0.sources.first { $0.id == "vm1" }?.state == .pending }
        #expect(st.sources.first { $0.id == "vm1" }?.state == .pending)
    }
}
