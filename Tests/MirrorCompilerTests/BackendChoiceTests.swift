import CMirrorABI
import MirrorCompiler
import MirrorCore
import Testing

// SPEC §2 and §10: the backend of a flow is chosen by rendezvous hashing
// (bpf/mirror_backend.h, the code stage 2 runs): when one backend changes state only
// its own flows move. Flow hashes here are spread like the classifier's (fmix32).

private let backends = ["198.51.100.2", "198.51.100.3", "198.51.100.4"].map { IPAddress($0)! }
private let lb = Target(id: "lb", type: .loadBalancer, backends: backends)
private let flows: [UInt32] = (0..<3000).map { mirror_mix32(UInt32($0) &* 2_654_435_761 &+ 17) }

private func assignment(_ t: Target, down: Set<IPAddress> = []) throws -> [Int?] {
    try flows.map { try BackendChoice.collector(of: t, flowHash: $0, unhealthy: down) }
}

@Test func everyBackendGetsAFairShareOfFlows() throws {
    let a = try assignment(lb)
    for i in 0..<3 {
        let share = Double(a.filter { $0 == i }.count) / Double(flows.count)
        #expect(abs(share - 1.0 / 3) < 0.05, "backend \(i) got \(share) of the flows")
    }
}

@Test func takingOneBackendDownMovesOnlyItsFlowsAndBringingItBackReturnsOnlyThose() throws {
    let before = try assignment(lb)
    for down in 0..<3 {
        let during = try assignment(lb, down: [backends[down]])
        var moved = [0, 0, 0]
        for (b, d) in zip(before, during) {
            let b = try #require(b), d = try #require(d)
            if b == down {
                #expect(d != down)
                moved[d] += 1
            } else {
                #expect(d == b, "a flow of a healthy backend moved")
            }
        }
        // The flows of the backend taken down spread over the other two.
        let total = before.filter { $0 == down }.count
        for other in 0..<3 where other != down {
            #expect(Double(moved[other]) > 0.35 * Double(total), "backend \(other) took \(moved[other]) of \(total)")
        }
        // Back up: exactly the moved flows return; the state equals the one before.
        #expect(try assignment(lb) == before)
    }
}

@Test func twoBackendsDownLeaveEveryFlowOnTheThirdAndNoneDownMeansNone() throws {
    let a = try assignment(lb, down: [backends[0], backends[2]])
    #expect(a.allSatisfy { $0 == 1 })
    #expect(try assignment(lb, down: Set(backends)).allSatisfy { $0 == nil })
    let nic = Target(id: "n", type: .nic, address: backends[0])
    #expect(try BackendChoice.collector(of: nic, flowHash: 42) == 0)
    #expect(try BackendChoice.collector(of: nic, flowHash: 42, unhealthy: [backends[0]]) == nil)
    // A nic target's other collectors do not exist: someone else's down state changes nothing.
    #expect(try BackendChoice.collector(of: nic, flowHash: 42, unhealthy: [backends[1]]) == 0)
}

@Test func theOrderOfTheBackendsDoesNotMoveFlows() throws {
    let reordered = Target(id: "lb", type: .loadBalancer, backends: backends.reversed())
    let a = try assignment(lb), b = try assignment(reordered)
    for (x, y) in zip(a, b) { #expect(backends[x!] == backends.reversed()[y!]) }
    // Adding a fourth backend moves only the flows it wins.
    let four = Target(id: "lb", type: .loadBalancer, backends: backends + [IPAddress("2001:db8::7")!])
    let c = try assignment(four)
    #expect(zip(a, c).allSatisfy { $0 == $1 || $1 == 3 })
    #expect(c.contains(3))
}

@Test func theImageCarriesTheDownMaskOfTargetsWithAHealthCheckOnly() {
    var doc = Document()
    let check = HealthCheck(protocol: .icmp)
    doc.targets = [
        Target(id: "plain", type: .loadBalancer, backends: backends),
        Target(id: "lb", type: .loadBalancer, backends: backends, healthCheck: check),
        Target(id: "nic", type: .nic, address: backends[1], healthCheck: check),
    ]
    let down: [String: Set<IPAddress>] = ["plain": [backends[0]], "lb": [backends[2], backends[0]], "nic": [backends[1]]]
    #expect(Compiler.targetHealth(doc, unhealthy: { down[$0] ?? [] }) == [1: 0b101, 2: 0b1])
    #expect(Compiler.targetHealth(doc, unhealthy: { _ in [] }).isEmpty)
}
