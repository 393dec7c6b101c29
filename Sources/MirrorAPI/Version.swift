/// The control API's version (the `/v1` of every route).
public enum MirrorAPIVersion {
    public static let current = 1
    /// The release of mirror-agent and agentctl, built together: `agentctl --version`,
    /// `agentctl status` (the agent's) and `mirror_agent_build_info`.
    public static let release = "0.1.0"
}
