/// SPEC §3 quotas, plus the limits this project chose where the spec is silent.
/// The datapath's map sizes derive from these (bpf/mirror_abi.h repeats them as
/// C constants; a core test asserts they agree).
public enum Quota {
    public static let sourcesPerSession = 10
    public static let sessionsPerSource = 3
    public static let sessionsPerNicTarget = 10
    public static let sessionsPerLoadBalancerTarget = 200
    public static let sessionsPerFilter = 1000
    public static let rulesPerFilterDirection = 10
    public static let sessionsPerAgent = 20000
    public static let backendsPerLoadBalancer = 16

    // Chosen here (SPEC silent): documented in README.
    public static let securityGroupsPerSource = 5
    public static let rulesPerSecurityGroup = 100
    public static let rulesPerAclDirection = 20
    /// A host has at most this many mirrored interfaces. 20,000 sessions need at least
    /// 6,667 sources (3 sessions per source), so the bound sits above that.
    public static let sourcesPerAgent = 8192
    public static let filtersPerAgent = 20000
    public static let targetsPerAgent = 20000

    // SPEC §9: one region document, whose share per host must still fit one agent.
    public static let sessionsPerRegion = 20000
    public static let sourcesPerRegion = 100_000
    public static let filtersPerRegion = 20000
    public static let targetsPerRegion = 20000

    public static let idMaxLength = 64
    public static let descriptionMaxLength = 255
    public static let sessionPriority = 1...32766
    public static let rulePriority = 1...65535
    public static let securityGroupRulePriority = 1...100
    public static let aclRulePriority = 1...65535
    public static let vni = 0...16_777_215
    public static let packetLength = 64...9216
    // SPEC §10 healthCheck (ranges chosen here: documented in docs/configuration.md).
    public static let healthCheckPort = 1...65535
    public static let healthCheckIntervalMs = 100...60000
    public static let healthCheckThreshold = 1...10
    /// SPEC §10.
    public static let sampleOneIn = 1...65535
    /// Chosen here: up to a billion packets and a terabit a second, far above what a
    /// host mirrors; bits from a kilobit a second (less than one small copy), so that
    /// the datapath's arithmetic cannot overflow (bpf/mirror_consts.h).
    public static let packetsPerSecond = 1...1_000_000_000
    public static let bitsPerSecond = 1000...1_000_000_000_000
}
