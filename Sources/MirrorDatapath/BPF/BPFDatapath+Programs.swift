import CLibbpf
import Foundation
import Glibc

/// How the classifier's programs reach the kernel. The verifier is most of an agent's
/// cold start (issue 18: about 0.25–0.6 s of CPU for each of the four large programs
/// on a 2-core host), and libbpf verifies an object's programs one after the other.
/// Apart from `.serial`, the classifier object makes the maps (or finds them pinned)
/// and loads no program; each group of programs loads in an object of its own that
/// shares those maps by fd, the groups on threads of their own.
public enum ProgramLoading: Sendable, Equatable {
    /// Every program in the one object, one after the other (as before; the cold-start
    /// benchmark's baseline).
    case serial
    /// The two TC programs and the test twins, three groups verified at once.
    case parallel
    /// The two TC programs verified at once; the test twins (explain, differential
    /// tests) when first used, or when `preloadTestPrograms` is called (the agent).
    case deferTests
}

extension ClassifierProgram {
    /// The BPF_PROG_TEST_RUN programs, which no hook runs.
    var isTest: Bool { self != .tcIngress && self != .tcEgress }
}

extension BPFDatapath {
    /// Loads each group of programs in an object of its own, the groups in parallel;
    /// the objects are kept (closed with this instance). Returns every program's fd.
    func loadInParallel(_ groups: [[ClassifierProgram]]) throws(DatapathError) -> [ClassifierProgram: Int32] {
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var loaded: [(OpaquePointer, [ClassifierProgram: Int32])] = []
            var failure: DatapathError?
        }
        let results = Results()
        DispatchQueue.concurrentPerform(iterations: groups.count) { i in
            do {
                let r = try loadApart(groups[i])
                results.lock.withLock { results.loaded.append(r) }
            } catch {
                let e = (error as? DatapathError) ?? DatapathError("load \(groups[i])", detail: "\(error)")
                results.lock.withLock { results.failure = results.failure ?? e }
            }
        }
        var fds: [ClassifierProgram: Int32] = [:]
        for (obj, f) in results.loaded {
            programObjects.append(obj)
            fds.merge(f) { a, _ in a }
        }
        if let failure = results.failure { throw failure }
        return fds
    }

    /// The classifier object opened again without pins, every map being this
    /// instance's (by fd, `.bss.capture` included), only `programs` loaded.
    private func loadApart(_ programs: [ClassifierProgram]) throws(DatapathError) -> (OpaquePointer, [ClassifierProgram: Int32]) {
        let obj: OpaquePointer? = objectBytes.withUnsafeBytes { raw in
            clibbpf_open_mem(raw.baseAddress, raw.count, "classify", nil)
        }
        guard let obj, libbpf_get_error(UnsafeRawPointer(obj)) == 0 else {
            throw DatapathError("open BPF object classify", errno: clibbpf_errno(), log: String(cString: clibbpf_take_log()))
        }
        let bss = bpf_object__find_map_by_name(obj, ".bss.capture")
        var map = bpf_object__next_map(obj, nil)
        while let m = map {
            _ = bpf_map__set_pin_path(m, nil)
            let name = bpf_map__name(m).map { String(cString: $0) } ?? "?"
            let fd: Int32
            if m == bss {
                fd = captureRunningFD
            } else if let shared = ClassifierMap(rawValue: name), let f = try? mapFD(shared) {
                fd = f
            } else {
                // A map only this object would make: its programs would not share it.
                bpf_object__close(obj)
                throw DatapathError("share map \(name) with the classifier's programs", detail: "not a map of the classifier")
            }
            let rc = bpf_map__reuse_fd(m, fd)
            if rc != 0 { bpf_object__close(obj); throw DatapathError("share map \(name) with the classifier's programs", errno: -rc) }
            map = bpf_object__next_map(obj, m)
        }
        let wanted = Set(programs.map(\.rawValue))
        var prog = bpf_object__next_program(obj, nil)
        while let p = prog {
            _ = bpf_program__set_autoload(p, wanted.contains(String(cString: bpf_program__name(p))))
            prog = bpf_object__next_program(obj, p)
        }
        let rc = bpf_object__load(obj)
        if rc != 0 {
            let log = String(cString: clibbpf_take_log())
            bpf_object__close(obj)
            throw DatapathError("load \(programs.map(\.rawValue).joined(separator: ", "))", errno: -rc, log: log)
        }
        var fds: [ClassifierProgram: Int32] = [:]
        for p in programs {
            guard let found = bpf_object__find_program_by_name(obj, p.rawValue) else {
                bpf_object__close(obj)
                throw DatapathError("find program \(p.rawValue)", detail: "not in the object")
            }
            fds[p] = bpf_program__fd(found)
        }
        return (obj, fds)
    }

    /// A test program's fd, its group loaded on first use (-1 when that failed or the
    /// datapath is closed).
    func testProgramFD(_ p: ClassifierProgram) -> Int32 {
        testLock.withLock {
            if testProgramFDs.isEmpty, isOpen {
                do {
                    let (obj, fds) = try loadApart(ClassifierProgram.allCases.filter(\.isTest))
                    programObjects.append(obj)
                    testProgramFDs = fds
                } catch {
                    return -1
                }
            }
            return testProgramFDs[p] ?? -1
        }
    }

    /// Loads the test programs now (in the background after a start, so that the first
    /// explain does not wait for the verifier).
    public func preloadTestPrograms() { _ = programFD(.testIngress) }
}
