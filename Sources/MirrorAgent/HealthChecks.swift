import Logging
import MirrorAPI
import MirrorCore
import MirrorDatapath
import ServiceLifecycle

// SPEC §10: the agent probes every collector of every target that has a
// `healthCheck` (MirrorDatapath's HealthProbe, from the host's underlay), turns the
// results into states (MirrorCore's HealthBook) and tells the datapath which
// collectors get no copies. Targets without a health check are never probed.

extension Agent {
    /// After every change of the policy in force: the probes follow the document
    /// (a collector whose check is unchanged keeps its state), and the datapath
    /// learns the states before it compiles the document.
    func healthFollowsDocument() {
        let before = health.probes
        health.reconcile(effective)
        if health.probes != before { healthPlanVersion &+= 1 }
        datapath.setUnhealthyCollectors(health.unhealthy)
    }

    /// The probes to run, when they changed since `version`.
    func healthPlan(since version: UInt64?) -> (version: UInt64, probes: [HealthBook.Key: HealthCheck])? {
        version == healthPlanVersion ? nil : (healthPlanVersion, health.probes)
    }

    /// One probe's result. A transition is logged once and reaches the datapath at once.
    func recordProbe(_ key: HealthBook.Key, check: HealthCheck, error: String?) {
        guard let t = health.record(key, check: check, success: error == nil, error: error) else { return }
        let meta: Logger.Metadata = ["target": "\(key.target)", "collector": "\(key.collector)"]
        switch t.state {
        case .unhealthy:
            logger.warning(
                "collector unhealthy: it gets no copies until it answers again",
                metadata: meta.merging(
                    ["failedProbes": "\(check.unhealthyThreshold)", "error": "\(error ?? "-")"], uniquingKeysWith: { a, _ in a }))
        case .healthy:
            logger.info(
                "collector healthy again: it gets copies", metadata: meta.merging(["probes": "\(check.healthyThreshold)"]) { a, _ in a })
        }
        datapath.setUnhealthyCollectors(health.unhealthy)
    }

    /// `agentctl status`, `get targets` and `mirror_target_backend_up`.
    func targetStatuses() -> [StatusResponse.TargetStatus] {
        effective.targets.map { t in
            StatusResponse.TargetStatus(
                id: t.id, type: t.type.rawValue,
                healthCheck: t.healthCheck.map { c in
                    "\(c.protocol.rawValue)\(c.port.map { " port \($0)" } ?? "") every \(c.intervalMs) ms"
                },
                collectors: t.collectorAddresses.map { a in
                    let key = HealthBook.Key(target: t.id, collector: a)
                    guard t.healthCheck != nil, let state = health.state(key) else {
                        return .init(address: "\(a)", health: "unchecked")
                    }
                    return .init(address: "\(a)", health: state.rawValue, lastError: health.lastError(key))
                })
        }
    }
}

/// Runs the probes: one task per probed collector, each probing every `intervalMs`
/// (a probe waits at most half of it, HealthCheck.timeoutMs), started and stopped as
/// applies change the targets' health checks.
public struct HealthCheckService: Service {
    let agent: Agent
    let logger: Logger
    /// How often the plan is looked at for changes (an apply's new targets start
    /// being probed within this).
    static let planPoll: Duration = .milliseconds(200)

    public init(agent: Agent, logger: Logger) { self.agent = agent; self.logger = logger }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown { await self.probeAll() }
    }

    func probeAll() async {
        await withDiscardingTaskGroup { group in
            var version: UInt64?
            var running: [HealthBook.Key: (check: HealthCheck, stop: AsyncStream<Void>.Continuation)] = [:]
            while !Task.isCancelled {
                if let plan = await agent.healthPlan(since: version) {
                    version = plan.version
                    for (key, r) in running where plan.probes[key] != r.check {
                        r.stop.finish()
                        running[key] = nil
                    }
                    for (key, check) in plan.probes where running[key] == nil {
                        let (stopped, stop) = AsyncStream.makeStream(of: Void.self)
                        running[key] = (check, stop)
                        group.addTask { await Self.probeLoop(agent, key, check, stopped: stopped) }
                    }
                }
                do { try await Task.sleep(for: Self.planPoll) } catch { break }
            }
            for r in running.values { r.stop.finish() }
        }
    }

    static func probeLoop(_ agent: Agent, _ key: HealthBook.Key, _ check: HealthCheck, stopped: AsyncStream<Void>) async {
        // Until `stopped` ends (the plan dropped this probe) or the service stops.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { for await _ in stopped {} }
            group.addTask {
                let clock = ContinuousClock()
                var next = clock.now
                while !Task.isCancelled {
                    let error = await HealthProbe.probe(check, to: key.collector)
                    if Task.isCancelled { break }
                    await agent.recordProbe(key, check: check, error: error)
                    next += .milliseconds(check.intervalMs)
                    if next < clock.now { next = clock.now }
                    do { try await Task.sleep(until: next, clock: clock) } catch { break }
                }
            }
            await group.next()
            group.cancelAll()
        }
    }
}
