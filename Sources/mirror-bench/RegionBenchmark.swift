import Foundation
import MirrorCore
import MirrorTestSupport

/// Peak resident set size of this process so far, in MiB.
func peakRSSMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// CPU seconds (user + system) this process has used so far: on a shared machine the
/// wall-clock figures include waiting for a core, these do not.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return s(usage.ru_utime) + s(usage.ru_stime)
}

/// SPEC §9 / issue 18: full render < 5 s and < 256 MiB at the region quotas.
func regionBenchmark(_ o: Options) -> Int32 {
    let clock = ContinuousClock()
    func ms(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }
    var bytes: [UInt8]
    if let input = o.input {
        guard let data = FileManager.default.contents(atPath: input) else {
            FileHandle.standardError.write("mirror-bench: cannot read \(input)\n".data(using: .utf8)!)
            return 1
        }
        bytes = [UInt8](data)
    } else {
        let region = RegionDocuments.atQuotas(rulesPerDirection: o.rules)
        bytes = Array(RegionEncoding.text(region, pretty: false).utf8)
        if let w = o.write {
            guard FileManager.default.createFile(atPath: w, contents: Data(bytes)) else {
                FileHandle.standardError.write("mirror-bench: cannot write \(w)\n".data(using: .utf8)!)
                return 1
            }
            print("wrote the region (\(bytes.count) bytes) to \(w)")
            return 0
        }
    }
    let rssBefore = peakRSSMiB()
    var parsed: Result<RegionDocument, ValidationErrors>!
    var cpu = cpuSeconds()
    func cpuSince() -> Double {
        let now = cpuSeconds()
        defer { cpu = now }
        return (now - cpu) * 1000
    }
    let parse = clock.measure { parsed = RegionParser.parse(bytes) }
    let parseCPU = cpuSince()
    bytes = []
    let region: RegionDocument
    switch parsed! {
    case .success(let r): region = r
    case .failure(let e):
        print("invalid region: \(e.errors.prefix(5))")
        return 1
    }
    parsed = nil
    let rssAfterParse = peakRSSMiB()
    var hosts = 0
    let render = clock.measure { hosts = HostRenderer.render(region).count }
    let renderCPU = cpuSince()
    var total = 0, largest = 0
    var digest: UInt64 = 0xcbf2_9ce4_8422_2325
    let renderEncode = clock.measure {
        HostRenderer.forEachHostEncoded(region) { _, b in
            total += b.count
            largest = max(largest, b.count)
            for x in b.prefix(64) { digest = (digest ^ UInt64(x)) &* 0x0000_0100_0000_01B3 }
        }
    }
    let renderEncodeCPU = cpuSince()
    let d = region.document
    print(
        "region: \(d.sessions.count) sessions, \(d.sources.count) sources, \(d.filters.count) filters, "
            + "\(d.targets.count) targets over \(hosts) hosts")
    print(String(format: "  parse+validate  %8.0f ms (CPU %.0f ms)", ms(parse), parseCPU))
    print(String(format: "  render          %8.0f ms (CPU %.0f ms; documents only)", ms(render), renderCPU))
    print(
        String(
            format: "  render+encode   %8.0f ms (CPU %.0f ms; %d bytes of host documents, largest %d)", ms(renderEncode),
            renderEncodeCPU, total, largest))
    print(
        String(
            format: "  peak RSS        %8.1f MiB (%.1f MiB before parsing, %.1f MiB after)", peakRSSMiB(), rssBefore,
            rssAfterParse))
    _ = digest
    do {
        try writeResult(
            "region",
            [
                "sessions": d.sessions.count, "sources": d.sources.count, "hosts": hosts,
                "parse_ms": ms(parse), "render_ms": ms(render), "render_encode_ms": ms(renderEncode),
                "parse_cpu_ms": parseCPU, "render_cpu_ms": renderCPU, "render_encode_cpu_ms": renderEncodeCPU,
                "host_documents_bytes": total, "peak_rss_mib": peakRSSMiB(),
            ], to: o.output)
    } catch {
        FileHandle.standardError.write("mirror-bench: \(error)\n".data(using: .utf8)!)
        return 1
    }
    return 0
}
