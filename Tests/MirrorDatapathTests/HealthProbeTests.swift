import Foundation
import Glibc
import MirrorCore
import MirrorDatapath
import Testing

extension KernelTests {
    /// SPEC §10: the probes themselves, in a namespace of the test's own (only lo,
    /// IPv4 and IPv6): an answer is a success, silence or a refusal a failure.
    @Suite struct HealthProbeTests {
        static let v4 = IPAddress("127.0.0.1")!, v6 = IPAddress("::1")!

        /// A TCP listener on `address` (any port), closed by the caller.
        static func listener(_ address: IPAddress) throws -> (fd: Int32, port: Int) {
            let fd = socket(address.ethertype == .ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw TestFailure("socket: \(errno)") }
            var ss = sockaddr_storage()
            var len: socklen_t
            if address.ethertype == .ipv4 {
                var sin = sockaddr_in()
                sin.sin_family = sa_family_t(AF_INET)
                sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
                withUnsafeBytes(of: sin) { s in withUnsafeMutableBytes(of: &ss) { $0.copyMemory(from: s) } }
                len = socklen_t(MemoryLayout<sockaddr_in>.size)
            } else {
                var sin6 = sockaddr_in6()
                sin6.sin6_family = sa_family_t(AF_INET6)
                withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0[15] = 1 }
                withUnsafeBytes(of: sin6) { s in withUnsafeMutableBytes(of: &ss) { $0.copyMemory(from: s) } }
                len = socklen_t(MemoryLayout<sockaddr_in6>.size)
            }
            let bound = withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
            guard bound == 0, listen(fd, 8) == 0 else { close(fd); throw TestFailure("bind/listen: \(errno)") }
            _ = withUnsafeMutablePointer(to: &ss) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
            }
            let port = withUnsafeBytes(of: ss) { raw -> UInt16 in
                // sin_port and sin6_port both sit right after the family.
                UInt16(bigEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
            }
            return (fd, Int(port))
        }

        @Test func tcpAndICMPProbesSucceedOnAnswersAndFailOnRefusalsAndSilence() throws {
            try Kernel.withNetns { ns in
                try Kernel.run(["ip", "-n", ns, "link", "set", "lo", "up"])
                // Silence: an address of this namespace whose ICMP and TCP are dropped.
                try Kernel.run(["ip", "-n", ns, "addr", "add", "198.51.100.5/32", "dev", "lo"])
                try Kernel.run([
                    "ip", "netns", "exec", ns, "nft",
                    "add table inet probe_drop; add chain inet probe_drop in { type filter hook input priority 0; ip daddr 198.51.100.5 drop; }",
                ])
                try Kernel.inNetns(ns) {
                    for a in [Self.v4, Self.v6] {
                        let icmp = HealthCheck(protocol: .icmp, intervalMs: 400)
                        #expect(HealthProbe.run(icmp, to: a) == nil, "echo to \(a)")
                        let l = try Self.listener(a)
                        let tcp = HealthCheck(protocol: .tcp, port: l.port, intervalMs: 400)
                        #expect(HealthProbe.run(tcp, to: a) == nil, "connect to \(a) port \(l.port)")
                        close(l.fd)
                        let refused = HealthProbe.run(tcp, to: a)
                        #expect(refused?.contains("refused") == true, "\(a) after the listener closed: \(refused ?? "success")")
                    }
                    // Nobody there (no route in this namespace, or no answer): a failure, within the timeout.
                    for a in [IPAddress("198.51.100.77")!, IPAddress("2001:db8::77")!] {
                        let started = Date()
                        #expect(HealthProbe.run(HealthCheck(protocol: .icmp, intervalMs: 400), to: a) != nil)
                        #expect(HealthProbe.run(HealthCheck(protocol: .tcp, port: 9, intervalMs: 400), to: a) != nil)
                        #expect(Date().timeIntervalSince(started) < 2 * 0.2 + 0.5)
                    }
                    let started = Date()
                    let silent = HealthProbe.run(HealthCheck(protocol: .icmp, intervalMs: 400), to: IPAddress("198.51.100.5")!)
                    #expect(silent?.contains("within 200 ms") == true, "\(silent ?? "success")")
                    #expect(Date().timeIntervalSince(started) >= 0.19)
                    let tcpSilent = HealthProbe.run(HealthCheck(protocol: .tcp, port: 80, intervalMs: 400), to: IPAddress("198.51.100.5")!)
                    #expect(tcpSilent?.contains("within 200 ms") == true, "\(tcpSilent ?? "success")")
                }
            }
        }
    }
}
