import Foundation

/// What the agent needs from the kernel: root, CAP_NET_ADMIN for
/// clsact/filters/netlink, and CAP_BPF (or, on older kernels, CAP_SYS_ADMIN) for
/// loading programs and maps.
public enum Privileges {
    static let capNetAdmin: UInt64 = 12
    static let capSysAdmin: UInt64 = 21
    static let capBPF: UInt64 = 39

    /// The problems, each a phrase; empty when the agent may start.
    public static func missing(statusText: String? = nil, euid: uid_t = geteuid()) -> [String] {
        var problems: [String] = []
        if euid != 0 { problems.append("not running as root (effective uid \(euid))") }
        let text = statusText ?? (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
            let caps = UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16)
        else {
            problems.append("cannot read effective capabilities from /proc/self/status")
            return problems
        }
        func has(_ bit: UInt64) -> Bool { caps & (1 << bit) != 0 }
        if !has(capNetAdmin) { problems.append("missing CAP_NET_ADMIN (needed for tc filters and netlink)") }
        if !has(capBPF) && !has(capSysAdmin) {
            problems.append("missing CAP_BPF and CAP_SYS_ADMIN (one is needed to load BPF programs and maps)")
        }
        return problems
    }
}
