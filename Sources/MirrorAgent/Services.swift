import Logging
import MirrorDatapath
import ServiceLifecycle

/// The agent as a service: the datapath's background work (the tcx mover, the
/// encapsulation templates) while the process runs; on graceful shutdown that work
/// stops, then `Agent.shutdown`, which leaves the datapath pinned and attached
/// (SPEC §7: mirroring goes on while the agent is down). Listed first in the
/// ServiceGroup so that it stops last, after the endpoints and the link events.
public struct AgentService: Service {
    let agent: Agent
    let logger: Logger

    public init(agent: Agent, logger: Logger) { self.agent = agent; self.logger = logger }

    public func run() async throws {
        let datapath = agent.datapath
        try? await cancelWhenGracefulShutdown {
            await datapath.runBackgroundWork()
            // A datapath with nothing in the background returns at once: the agent
            // still runs until the shutdown.
            try await gracefulShutdown()
        }
        logger.info("stopping: the datapath stays loaded, pinned and attached")
        // Captures end with their summaries (the control server dropped its streams already).
        await agent.captures.stopAll(ended: "agent_stopping")
        await agent.shutdown()
    }
}

/// Link events move sources between pending and attached (SPEC §7). One consumer
/// keeps them in order (an interface removed and re-added must end up attached);
/// after lost events the agent resyncs.
public struct LinkEventService: Service {
    let agent: Agent
    let logger: Logger
    let monitor: Result<LinkMonitor, Error>

    /// Subscribes at once: events from here on are queued until `run` takes them.
    /// `netns`: a network namespace file (/run/netns/NAME) to watch instead of ours.
    public init(agent: Agent, logger: Logger, netns: String? = nil) {
        self.agent = agent; self.logger = logger
        monitor = Result { try LinkMonitor(netns: netns) }
    }

    public func run() async throws {
        let monitor: LinkMonitor
        switch self.monitor {
        case .success(let m): monitor = m
        case .failure(let error):
            logger.warning("no link monitor: sources whose interface appears later stay pending", metadata: ["error": "\(error)"])
            try? await gracefulShutdown()
            return
        }
        for await update in monitor.updates().cancelOnGracefulShutdown() {
            switch update {
            case .link(let event):
                await agent.linkChanged(name: event.name, ifindex: event.ifindex, present: event.present)
            case .lost(let error):
                logger.warning("link events may have been lost; resyncing", metadata: ["error": "\(error)"])
                await agent.resync()
            }
        }
    }
}
