import Foundation
import Glibc
import MirrorCore

/// SPEC §10: one probe of one collector, from this network namespace (the host's
/// underlay: the route toward the collector picks the device and source address),
/// in the collector's own family. The only socket code of the health checks; their
/// state machine is MirrorCore's `HealthTracker`.
public enum HealthProbe {
    /// Blocks for at most `check.timeoutMs`. nil: the collector answered; else why not.
    public static func run(_ check: HealthCheck, to collector: IPAddress) -> String? {
        switch check.protocol {
        case .tcp: return tcp(collector, port: UInt16(clamping: check.port ?? 0), timeoutMs: check.timeoutMs)
        case .icmp: return icmp(collector, timeoutMs: check.timeoutMs)
        }
    }

    /// Runs the probe on a thread of its own pool, so that a probe waiting for its
    /// answer never holds one of the few threads of Swift's cooperative pool.
    public static func probe(_ check: HealthCheck, to collector: IPAddress) async -> String? {
        await withCheckedContinuation { c in queue.async { c.resume(returning: run(check, to: collector)) } }
    }

    private static let queue = DispatchQueue(label: "mirror-agent.health-probes", attributes: .concurrent)

    // MARK: TCP: a connection must be accepted within the timeout

    static func tcp(_ a: IPAddress, port: UInt16, timeoutMs: Int) -> String? {
        let fd = socket(family(a), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return "socket: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        // Closed with a reset: a probe every second leaves no TIME_WAIT behind.
        var lin = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, socklen_t(MemoryLayout<linger>.size))
        let rc = withSockaddr(a, port: port) { connect(fd, $0, $1) }
        if rc == 0 { return nil }
        guard errno == EINPROGRESS else { return "connect to port \(port): \(String(cString: strerror(errno)))" }
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let n = poll(&p, 1, Int32(timeoutMs))
        if n == 0 { return "no answer to a TCP connect to port \(port) within \(timeoutMs) ms" }
        if n < 0 { return "poll: \(String(cString: strerror(errno)))" }
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        return err == 0 ? nil : "connect to port \(port): \(String(cString: strerror(err)))"
    }

    // MARK: ICMP: an echo request must be answered within the timeout

    private static let identifier = UInt16(truncatingIfNeeded: getpid())
    private static let sequence = Sequence()
    private final class Sequence: @unchecked Sendable {
        let lock = NSLock()
        var next: UInt16 = 0
        func take() -> UInt16 {
            lock.withLock {
                next &+= 1; return next
            }
        }
    }

    /// A raw ICMP (ICMPv6) socket connected to the collector, so the kernel hands it
    /// only that address's ICMP; the reply is matched by identifier and sequence.
    static func icmp(_ a: IPAddress, timeoutMs: Int) -> String? {
        let v6 = a.ethertype == .ipv6
        let fd = socket(
            family(a), Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
            v6 ? Int32(IPPROTO_ICMPV6) : Int32(IPPROTO_ICMP))
        guard fd >= 0 else { return "raw ICMP socket: \(String(cString: strerror(errno))) (the agent needs CAP_NET_RAW)" }
        defer { close(fd) }
        guard withSockaddr(a, port: 0, { connect(fd, $0, $1) }) == 0 else {
            return "no route to \(a): \(String(cString: strerror(errno)))"
        }
        let seq = sequence.take()
        // type, code, checksum, identifier, sequence, then a payload naming us.
        var echo: [UInt8] = [v6 ? 128 : 8, 0, 0, 0]
        echo += [UInt8(identifier >> 8), UInt8(identifier & 0xff), UInt8(seq >> 8), UInt8(seq & 0xff)]
        echo += Array("mirror-agent health".utf8)
        if !v6 {
            // ICMPv6's checksum covers a pseudo-header: the kernel fills it in.
            let c = checksum(echo)
            echo[2] = UInt8(c >> 8); echo[3] = UInt8(c & 0xff)
        }
        guard echo.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == echo.count else {
            return "send an echo request: \(String(cString: strerror(errno)))"
        }
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeoutMs) * 1_000_000
        var buf = [UInt8](repeating: 0, count: 2048)
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { return "no answer to an echo request within \(timeoutMs) ms" }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, Int32(max(1, (deadline - now) / 1_000_000)))
            if n < 0 && errno != EINTR { return "poll: \(String(cString: strerror(errno)))" }
            if n <= 0 { continue }
            let got = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard got > 0 else { continue }
            // IPv4 raw sockets deliver the IP header too; IPv6 ones do not.
            let start = v6 ? 0 : Int(buf[0] & 0x0f) * 4
            guard got >= start + 8 else { continue }
            let reply: UInt8 = v6 ? 129 : 0
            if buf[start] == reply && buf[start + 4] == UInt8(identifier >> 8) && buf[start + 5] == UInt8(identifier & 0xff)
                && buf[start + 6] == UInt8(seq >> 8) && buf[start + 7] == UInt8(seq & 0xff)
            {
                return nil
            }
        }
    }

    static func checksum(_ b: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i + 1 < b.count { sum += UInt32(b[i]) << 8 | UInt32(b[i + 1]); i += 2 }
        if i < b.count { sum += UInt32(b[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }

    // MARK: addresses

    static func family(_ a: IPAddress) -> Int32 { a.ethertype == .ipv6 ? AF_INET6 : AF_INET }

    static func withSockaddr<R>(_ a: IPAddress, port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        if a.ethertype == .ipv4 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyBytes(from: a.bytes) }
            return withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: a.bytes) }
        return withUnsafePointer(to: &sin6) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    }
}
