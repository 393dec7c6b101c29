import Testing

@testable import MirrorCore

@Test func cidrContains() { #expect(CIDR(address: IPAddress("10.0.0.0")!, prefixLength: 8).contains(IPAddress("10.1.2.3")!)) }
