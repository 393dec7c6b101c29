import CLibbpf

/// Network namespaces are per thread: after `enter`, the calling thread's ifindex
/// lookups and tc operations act inside the namespace.
public enum NetworkNamespace {
    /// Moves the calling thread into the namespace at `path` (e.g. /run/netns/NAME).
    public static func enter(path: String) throws(DatapathError) {
        let rc = clibbpf_enter_netns(path)
        if rc != 0 { throw DatapathError("enter network namespace \(path)", errno: -rc) }
    }
}
