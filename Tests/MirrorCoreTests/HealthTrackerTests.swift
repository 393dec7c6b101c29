import MirrorCore
import Testing

// SPEC §10: unhealthyThreshold failures in a row make a collector unhealthy,
// healthyThreshold successes in a row make it healthy again; a transition is
// reported once.

@Test func aCollectorStartsHealthyAndFallsAfterExactlyUnhealthyThresholdFailuresInARow() {
    var t = HealthTracker(unhealthyThreshold: 3, healthyThreshold: 2)
    #expect(t.state == .healthy)
    #expect(t.record(success: false) == nil)
    #expect(t.record(success: false) == nil)
    #expect(t.state == .healthy)
    #expect(t.record(success: false) == .unhealthy)
    #expect(t.state == .unhealthy)
    // Reported once: further failures change nothing.
    for _ in 0..<5 { #expect(t.record(success: false) == nil) }
    #expect(t.state == .unhealthy)
}

@Test func aSuccessInBetweenStartsTheFailureCountAgain() {
    var t = HealthTracker(unhealthyThreshold: 3, healthyThreshold: 2)
    for success in [false, false, true, false, false, true, false, false] {
        #expect(t.record(success: success) == nil, "no transition before three failures in a row")
    }
    #expect(t.state == .healthy)
    #expect(t.record(success: false) == .unhealthy)
}

@Test func anUnhealthyCollectorComesBackAfterHealthyThresholdSuccessesInARow() {
    var t = HealthTracker(unhealthyThreshold: 1, healthyThreshold: 3)
    #expect(t.record(success: false) == .unhealthy)
    #expect(t.record(success: true) == nil)
    #expect(t.record(success: true) == nil)
    #expect(t.record(success: false) == nil, "a failure resets the successes")
    #expect(t.record(success: true) == nil)
    #expect(t.record(success: true) == nil)
    #expect(t.state == .unhealthy)
    #expect(t.record(success: true) == .healthy)
    #expect(t.record(success: true) == nil)
    #expect(t.state == .healthy)
}

@Test func thresholdsOfOneFlipOnEveryChange() {
    var t = HealthTracker(unhealthyThreshold: 1, healthyThreshold: 1)
    #expect(t.record(success: true) == nil)
    #expect(t.record(success: false) == .unhealthy)
    #expect(t.record(success: true) == .healthy)
}

private func target(_ id: String, _ addresses: [String], check: HealthCheck?) -> Target {
    Target(id: id, type: .loadBalancer, backends: addresses.map { IPAddress($0)! }, healthCheck: check)
}

@Test func theBookProbesOnlyTargetsWithAHealthCheckAndKeepsStatesAcrossApplies() {
    let icmp = HealthCheck(protocol: .icmp, intervalMs: 100, unhealthyThreshold: 1, healthyThreshold: 1)
    var doc = Document()
    doc.targets = [
        target("lb", ["198.51.100.2", "198.51.100.3"], check: icmp),
        target("plain", ["198.51.100.9"], check: nil),
    ]
    var book = HealthBook()
    book.reconcile(doc)
    let a = HealthBook.Key(target: "lb", collector: IPAddress("198.51.100.2")!)
    let b = HealthBook.Key(target: "lb", collector: IPAddress("198.51.100.3")!)
    #expect(Set(book.probes.keys) == [a, b])
    #expect(book.record(a, check: icmp, success: false, error: "timeout") == .init(key: a, state: .unhealthy))
    #expect(book.unhealthy == ["lb": [IPAddress("198.51.100.2")!]])
    #expect(book.lastError(a) == "timeout")

    // The same check in the next document: the state stays.
    doc.targets.append(target("other", ["198.51.100.4"], check: icmp))
    book.reconcile(doc)
    #expect(book.state(a) == .unhealthy)
    #expect(book.probes.count == 3)

    // A result of a probe made with an older check is ignored.
    let tcp = HealthCheck(protocol: .tcp, port: 9, intervalMs: 100, unhealthyThreshold: 1, healthyThreshold: 1)
    #expect(book.record(b, check: tcp, success: false) == nil)
    #expect(book.state(b) == .healthy)

    // A changed check starts over, healthy; a removed target is forgotten.
    doc.targets[0].healthCheck = tcp
    doc.targets.removeLast()
    book.reconcile(doc)
    #expect(book.state(a) == .healthy)
    #expect(book.unhealthy.isEmpty)
    #expect(book.probes.count == 2)
    doc.targets[0].healthCheck = nil
    book.reconcile(doc)
    #expect(book.probes.isEmpty)
}
