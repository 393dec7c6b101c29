import MirrorCore
import MirrorTestSupport
import Testing

// SPEC §9: the controller gives each host exactly its share of the region.

@Test func eachHostGetsItsSourcesTheirSessionsAndWhatTheyReferTo() throws {
    // baseRegion(): s1 (sg1, acl1) on hv1, s2 on hv2; session a = [s1, s2] → t1 via f1;
    // session b = [s1] → lb via f2.
    let hosts = HostRenderer.render(baseRegion())
    #expect(hosts.keys.sorted() == ["hv1", "hv2"])
    let hv1 = try #require(hosts["hv1"])
    #expect(hv1.sources.map(\.id) == ["s1"])
    #expect(hv1.sessions.map(\.id) == ["a", "b"])
    #expect(hv1.sessions.map(\.sources) == [["s1"], ["s1"]])
    #expect(hv1.filters.map(\.id) == ["f1", "f2"])
    #expect(hv1.targets.map(\.id) == ["lb", "t1"])
    #expect(hv1.securityGroups.map(\.id) == ["sg1"])
    #expect(hv1.networkAcls.map(\.id) == ["acl1"])
    let hv2 = try #require(hosts["hv2"])
    #expect(hv2.sources.map(\.id) == ["s2"])
    #expect(hv2.sessions.map(\.id) == ["a"])
    #expect(hv2.sessions.first?.sources == ["s2"])
    #expect(hv2.sessions.first?.vni == 100, "everything but the sources is the session's own")
    #expect(hv2.filters.map(\.id) == ["f1"])
    #expect(hv2.targets.map(\.id) == ["t1"])
    #expect(hv2.securityGroups.isEmpty && hv2.networkAcls.isEmpty)
    // Each is a valid agent document, and its encoding is one the agent parses as it is.
    for (host, doc) in hosts {
        #expect(DocumentParser.validate(doc) == [], "\(host)")
        let bytes = HostRenderer.encode(doc)
        #expect(!String(decoding: bytes, as: UTF8.self).contains("\"host\""))
        #expect(try DocumentParser.parse(bytes).get() == doc)
    }
}

@Test func aSourceInNoSessionStillGoesToItsHost() throws {
    // Enforcement (SPEC §5) needs the source even without a session.
    var r = baseRegion()
    r.document.sources.append(Source(id: "lonely", interface: "tap9", securityGroups: ["sg1"], enforce: true))
    r.hosts["lonely"] = "hv3"
    let hv3 = try #require(HostRenderer.render(r)["hv3"])
    #expect(hv3.sources.map(\.id) == ["lonely"])
    #expect(hv3.sessions.isEmpty && hv3.filters.isEmpty && hv3.targets.isEmpty)
    #expect(hv3.securityGroups.map(\.id) == ["sg1"])
    #expect(HostRenderer.render(RegionDocument()).isEmpty, "no sources, no hosts")
}

/// The share of one host computed the obvious way, straight from SPEC §9's words.
private func simpleShare(_ r: RegionDocument, _ host: String) -> Document {
    let d = r.document
    let sources = d.sources.filter { r.hosts[$0.id] == host }
    let sessions: [Session] = d.sessions.compactMap { s in
        var t = s
        t.sources = s.sources.filter { r.hosts[$0] == host }
        return t.sources.isEmpty ? nil : t
    }
    return Document(
        filters: d.filters.filter { f in sessions.contains { $0.filter == f.id } },
        targets: d.targets.filter { t in sessions.contains { $0.target == t.id } },
        sources: sources,
        sessions: sessions,
        securityGroups: d.securityGroups.filter { g in sources.contains { $0.securityGroups?.contains(g.id) ?? false } },
        networkAcls: d.networkAcls.filter { a in sources.contains { $0.networkAcl == a.id } })
}

private func sortedByID(_ d: Document) -> Bool {
    func ok(_ ids: [String]) -> Bool { ids == ids.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) } }
    return ok(d.filters.map(\.id)) && ok(d.targets.map(\.id)) && ok(d.sources.map(\.id)) && ok(d.sessions.map(\.id))
        && ok(d.securityGroups.map(\.id)) && ok(d.networkAcls.map(\.id))
}

@Test func rendererAgreesWithTheSimpleComputationOnRandomRegions() {
    var hostsSeen = 0, sessionsSplit = 0
    for k in 0..<200 {
        let seed = 7000 + UInt64(k)
        var rng = SeededRandom(seed: seed)
        let region = RegionDocuments.random(using: &rng, maxHosts: 5)
        #expect(RegionParser.validate(region) == [], "seed \(seed)")
        let rendered = HostRenderer.render(region)
        #expect(Set(rendered.keys) == Set(region.hosts.values), "seed \(seed)")
        // The controller's fast path writes exactly the canonical encoding of these documents.
        let encoded = HostRenderer.renderEncoded(region)
        #expect(encoded == rendered.mapValues(HostRenderer.encode), "seed \(seed)")
        for (host, doc) in rendered {
            hostsSeen += 1
            let expected = simpleShare(region, host)
            // Same objects; order is by id in the rendering, document order in the simple one.
            #expect(Set(doc.filters) == Set(expected.filters), "seed \(seed) \(host)")
            #expect(Set(doc.targets) == Set(expected.targets), "seed \(seed) \(host)")
            #expect(Set(doc.sources) == Set(expected.sources), "seed \(seed) \(host)")
            #expect(Set(doc.sessions) == Set(expected.sessions), "seed \(seed) \(host)")
            #expect(Set(doc.securityGroups) == Set(expected.securityGroups), "seed \(seed) \(host)")
            #expect(Set(doc.networkAcls) == Set(expected.networkAcls), "seed \(seed) \(host)")
            #expect(doc.sessions.count == expected.sessions.count && doc.sources.count == expected.sources.count)
            #expect(sortedByID(doc), "seed \(seed) \(host)")
            #expect(DocumentParser.validate(doc) == [], "seed \(seed) \(host): a host's share is a valid agent document")
        }
        // Every session's sources are split over the hosts without loss or overlap.
        for s in region.document.sessions {
            let parts = rendered.values.flatMap { $0.sessions.filter { $0.id == s.id }.map(\.sources) }
            if parts.count > 1 { sessionsSplit += 1 }
            #expect(parts.flatMap { $0 }.sorted() == s.sources.sorted(), "seed \(seed) session \(s.id)")
        }
    }
    // The generator must exercise the interesting case: sessions spanning hosts.
    #expect(hostsSeen > 400 && sessionsSplit > 200, "\(hostsSeen) hosts, \(sessionsSplit) split sessions")
}

@Test func renderingIsDeterministicAndIgnoresTheRegionsArrayOrder() {
    for k in 0..<60 {
        let seed = 8000 + UInt64(k)
        var rng = SeededRandom(seed: seed)
        let region = RegionDocuments.random(using: &rng)
        let once = HostRenderer.renderEncoded(region)
        #expect(once == HostRenderer.renderEncoded(region), "seed \(seed)")
        var shuffled = region
        shuffled.document.filters.shuffle(using: &rng)
        shuffled.document.targets.shuffle(using: &rng)
        shuffled.document.sources.shuffle(using: &rng)
        shuffled.document.sessions.shuffle(using: &rng)
        shuffled.document.securityGroups.shuffle(using: &rng)
        shuffled.document.networkAcls.shuffle(using: &rng)
        #expect(HostRenderer.renderEncoded(shuffled) == once, "seed \(seed)")
    }
}

@Test func aChangeTouchesOnlyTheHostsOfTheChangedSession() {
    var changedSome = 0
    for k in 0..<60 {
        let seed = 9000 + UInt64(k)
        var rng = SeededRandom(seed: seed)
        let region = RegionDocuments.random(using: &rng)
        guard let i = region.document.sessions.indices.randomElement(using: &rng) else { continue }
        let before = HostRenderer.renderEncoded(region)
        var changed = region
        changed.document.sessions[i].packetLength = changed.document.sessions[i].packetLength == 128 ? 256 : 128
        let after = HostRenderer.renderEncoded(changed)
        let touched = Set(region.document.sessions[i].sources.compactMap { region.hosts[$0] })
        for (host, bytes) in after {
            if touched.contains(host) {
                #expect(bytes != before[host], "seed \(seed): \(host) must change")
                changedSome += 1
            } else {
                #expect(bytes == before[host], "seed \(seed): \(host) must render byte-identical")
            }
        }
    }
    #expect(changedSome > 60)
}

@Test func liveMigrationMovesASourceBetweenTwoHostsDocuments() throws {
    var r = baseRegion()
    r.hosts["s2"] = "hv3"
    let hosts = HostRenderer.render(r)
    #expect(hosts.keys.sorted() == ["hv1", "hv3"], "hv2 has nothing left")
    #expect(try #require(hosts["hv3"]).sessions.map(\.sources) == [["s2"]])
    r.hosts["s2"] = "hv1"
    let together = try #require(HostRenderer.render(r)["hv1"])
    #expect(together.sessions.first { $0.id == "a" }?.sources == ["s1", "s2"], "the session's own order")
}

@Test func renderingARegionAtTheQuotasPrintsItsCost() throws {
    // A hundredth of the region quotas in a debug test build: a measurement, not a
    // timed assertion (`mirror-bench region` measures the full size in release).
    let clock = ContinuousClock()
    let region = RegionDocuments.atQuotas(sessions: 200, sources: 1000, hosts: 10)
    let text = RegionEncoding.text(region, pretty: false)
    var parsed: RegionDocument?
    let parse = clock.measure { parsed = try? RegionParser.parse(text).get() }
    let valid = try #require(parsed)
    #expect(valid == region)
    var hosts = 0, bytes = 0
    let render = clock.measure {
        HostRenderer.forEachHost(valid) { _, doc in
            hosts += 1
            bytes += HostRenderer.encode(doc).count
        }
    }
    #expect(hosts == 10)
    print("region 200 sessions / 1,000 sources / 10 hosts (debug): parse \(parse), render+encode \(render), \(bytes) bytes")
}
