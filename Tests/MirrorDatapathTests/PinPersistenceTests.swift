import Testing

@testable import MirrorDatapath

// Issue 18, "pins must outlive the agent": the judgement from what /proc says.

private let hostMounts = """
    22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
    25 22 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
    31 25 0:30 / /sys/fs/bpf rw,nosuid shared:12 - bpf bpf rw,mode=700
    90 22 0:52 / /tmp/topo\\040one/bpffs rw,relatime shared:40 - bpf bpf rw
    """

/// `ip netns exec`: a private namespace, /sys remounted, and a bpffs the agent mounted itself.
private let privateMounts = """
    400 399 8:1 / / rw,relatime master:1 - ext4 /dev/sda1 rw
    401 400 0:77 / /sys rw,relatime - sysfs NS rw
    402 400 0:52 / /tmp/topo\\040one/bpffs rw,relatime master:40 - bpf bpf rw
    410 400 0:81 / /tmp/mine/bpffs rw,relatime - bpf bpf rw
    """

@Test func theHostsOwnNamespaceKeepsItsPins() {
    let p = BPFFS.persistence(
        path: "/sys/fs/bpf/mirror-agent", realPath: "/sys/fs/bpf/mirror-agent", selfNamespace: "mnt:[4026531841]",
        hostNamespace: "mnt:[4026531841]", selfMounts: hostMounts, hostMounts: hostMounts)
    #expect(p.outlivesAgent)
    #expect(p.reason.contains("the bpffs at /sys/fs/bpf") && p.reason.contains("host's mount namespace"), "\(p.reason)")
}

@Test func aPrivateNamespaceSeeingTheHostsBpffsKeepsItsPins() {
    // The topology mounted the bpffs in the host's namespace; the agent runs under
    // `ip netns exec` and sees a copy of that mount (same device: same instance).
    let p = BPFFS.persistence(
        path: "/tmp/topo one/bpffs", realPath: "/tmp/topo one/bpffs", selfNamespace: "mnt:[4026532999]",
        hostNamespace: "mnt:[4026531841]", selfMounts: privateMounts, hostMounts: hostMounts)
    #expect(p.outlivesAgent, "\(p.reason)")
    #expect(p.reason.contains("the host's mount namespace has at /tmp/topo one/bpffs"), "\(p.reason)")
}

@Test func aBpffsOnlyTheAgentsPrivateNamespaceHasDiesWithIt() {
    let p = BPFFS.persistence(
        path: "/tmp/mine/bpffs/agent", realPath: "/tmp/mine/bpffs/agent", selfNamespace: "mnt:[4026532999]",
        hostNamespace: "mnt:[4026531841]", selfMounts: privateMounts, hostMounts: hostMounts)
    #expect(!p.outlivesAgent)
    #expect(p.reason.contains("private mount namespace") && p.reason.contains("die with the agent"), "\(p.reason)")
    let refusal = "\(EphemeralPinsError(persistence: p))"
    #expect(refusal.contains("--ephemeral-pins") && refusal.contains("mount -t bpf"), "\(refusal)")
}

@Test func anUnreadableHostNamespaceIsNotTakenForPersistent() {
    let p = BPFFS.persistence(
        path: "/tmp/mine/bpffs", realPath: "/tmp/mine/bpffs", selfNamespace: "mnt:[4026532999]", hostNamespace: nil,
        selfMounts: privateMounts, hostMounts: nil)
    #expect(!p.outlivesAgent && !p.known && p.state == "unknown")
    #expect(p.reason.contains("cannot be read"), "\(p.reason)")
    // PID 1's namespace link denied (a sandbox), its mountinfo readable: decided by device.
    let byDevice = BPFFS.persistence(
        path: "/tmp/topo one/bpffs", realPath: "/tmp/topo one/bpffs", selfNamespace: "mnt:[4026532999]", hostNamespace: nil,
        selfMounts: privateMounts, hostMounts: hostMounts)
    #expect(byDevice.outlivesAgent, "\(byDevice.reason)")
    let notBPF = BPFFS.persistence(
        path: "/tmp/x", realPath: "/tmp/x", selfNamespace: "a", hostNamespace: "a", selfMounts: hostMounts, hostMounts: hostMounts)
    #expect(!notBPF.outlivesAgent && notBPF.reason.contains("not on a bpf filesystem"))
}

@Test func mountinfoEscapesAreRead() {
    #expect(BPFFS.unescape("/a\\040b\\134c") == "/a b\\c")
    #expect(BPFFS.unescape("/plain") == "/plain")
    #expect(BPFFS.unescape("/short\\04") == "/short\\04")
}
