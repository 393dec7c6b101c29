import CLibbpf
import Foundation
import Glibc
import Logging
import MirrorCompiler
import MirrorCore

/// Another map layout's pins under the agent's bpffs directory (issue 18, "Rolling
/// upgrades").
struct FormerLayout: Hashable, Sendable {
    var directory: String
    /// nil: the unversioned pins agents made before layouts were versioned (maps and
    /// `links/` directly in the bpffs directory).
    var version: UInt32?
}

/// Rolling upgrades and downgrades (issue 18). The maps of each layout
/// (`MIRROR_LAYOUT_VERSION`, bpf/mirror_consts.h) are pinned in their own directory,
/// `<bpffs>/layout-N`. An agent that meets its own layout's pins reuses them, as it
/// always did. One that finds another layout's directory (the previous version of a
/// DaemonSet update, or the next one on a downgrade: the same code either way) never
/// touches what runs until it has its own:
/// 1. `start` loads its objects beside the other layout's, pinned in its own
///    directory; the other layout's programs keep mirroring from their maps;
/// 2. the first apply (the restored document) fills the new maps, both generation
///    slots, and the encapsulation templates; the flows security groups allow are
///    copied over (`moveStageTwo`);
/// 3. stage 2 moves first (its tcx link updated with BPF_LINK_UPDATE, or its clsact
///    filter replaced in place): copies the old classifiers still make carry the
///    same session slot (the slot file is in the state directory) and name a
///    generation slot that holds the same policy in the new maps;
/// 4. each source's classifiers move the same way (the apply's attach adopts the
///    other layout's link: `BPFDatapath.formerPinDirectories`);
/// 5. the counters the old maps hold are added to the new ones, and the other
///    layout's directory is removed (`finishLayoutMove`).
/// Stage 1 and 2 exchange copies through skb->cb (bpf/README.md): a layout change
/// that also changes those words cannot be moved without a gap this way.
extension KernelDatapath {
    /// The classifier and stage 2 objects: the embedded ones, or those of
    /// `--bpf-objects DIR` (`classify.bpf.o`, `encap.bpf.o`).
    func loadObjects() throws -> (classify: [UInt8], encap: [UInt8]?) {
        guard let dir = options.bpfObjectDirectory else { return (EmbeddedBPF.classifyObject, nil) }
        func read(_ name: String) throws -> [UInt8] {
            guard let data = FileManager.default.contents(atPath: dir + "/" + name) else {
                throw DatapathError("read the BPF object \(dir)/\(name)", errno: access(dir + "/" + name, R_OK) == 0 ? EIO : errno)
            }
            return [UInt8](data)
        }
        return (try read("classify.bpf.o"), try read("encap.bpf.o"))
    }

    /// The pin directory of the classifier's layout (made when missing) and the other
    /// layouts' pins found beside it. Under `lock`, in `start`.
    func prepareLayout(_ classify: [UInt8]) throws -> (directory: String, former: [FormerLayout]) {
        let layout: MapLayout
        do { layout = try BPFDatapath.layout(of: classify) } catch {
            throw DatapathError("read the map layout of the classifier: \(error)")
        }
        let dir = options.bpffs + "/" + MapLayout.directoryName(layout.version)
        if mkdir(dir, 0o700) != 0 && errno != EEXIST { throw DatapathError("create the pin directory \(dir)", errno: errno) }
        self.layout = layout
        layoutDirectory = dir
        let former = Self.layoutDirectories(in: options.bpffs).filter { $0.directory != dir }
        for f in former {
            logger.notice(
                "pins of another map layout found: this agent fills its own maps beside them, then moves every attachment over",
                metadata: [
                    "found": "\(f.version.map { "layout \($0)" } ?? "unversioned pins") in \(f.directory)",
                    "ours": "\(layout) in \(dir)",
                ])
        }
        return (dir, former)
    }

    /// Every layout's pins under `bpffs`: the `layout-N` directories, and the
    /// unversioned pins of older agents when there are any.
    static func layoutDirectories(in bpffs: String) -> [FormerLayout] {
        var out: [FormerLayout] = []
        if access(bpffs + "/" + ClassifierMap.active.rawValue, F_OK) == 0 { out.append(FormerLayout(directory: bpffs, version: nil)) }
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: bpffs)) ?? []).sorted() {
            if let v = MapLayout.version(ofDirectory: name) { out.append(FormerLayout(directory: bpffs + "/" + name, version: v)) }
        }
        return out
    }

    /// Steps 2 and 3 above, called by the first apply right after it wrote our maps.
    func moveStageTwo(_ dp: BPFDatapath, _ compiled: MapImage, _ doc: Document) throws {
        // The other generation slot too: a copy the old classifiers make names the slot
        // in force in *their* maps, and stage 2 reads it in ours.
        do { _ = try dp.apply(compiled) } catch { throw DatapathError("fill the second generation slot of the new maps: \(error)") }
        refreshEncapTemplates(also: doc)
        for former in formerLayouts {
            let carried = dp.carry(fromPinDirectory: former.directory, maps: BPFDatapath.carriedState)
            logger.info("security state taken over from the other layout", metadata: ["from": "\(former.directory)", "maps": "\(carried)"])
        }
        do { try dp.attachEncap(interface: options.mirrorDevice) } catch {
            throw DatapathError("move the encapsulation stage on \(options.mirrorDevice) to the new maps: \(error)")
        }
    }

    /// The steps of a move that an agent may be killed between (`layoutMoveReached`).
    enum LayoutMoveStep: String {
        /// Our maps hold the policy in the slot in force; nothing runs our programs yet.
        case filled
        /// Both slots filled, stage 2 runs our program; the classifiers are the other layout's.
        case stageTwo = "stage-two"
        /// Every classifier runs our programs; the other layout's counters are not
        /// carried over and its pins are still there.
        case classifiers
    }

    /// A test hook (e2e `layout_move_interrupted`): with
    /// `MIRROR_TEST_KILL_IN_LAYOUT_MOVE=<step>` in its environment, the agent kills
    /// itself (SIGKILL: nothing of it runs after, as after a crash or an OOM kill)
    /// when a move between layouts reaches that step, so that a test can prove the
    /// next agent finishes the move. Never set outside tests.
    func layoutMoveReached(_ step: LayoutMoveStep) {
        guard ProcessInfo.processInfo.environment["MIRROR_TEST_KILL_IN_LAYOUT_MOVE"] == step.rawValue else { return }
        // Written straight to stderr: a log handler may still hold it when the kill lands.
        FileHandle.standardError.write(Data("MIRROR_TEST_KILL_IN_LAYOUT_MOVE: killed at step \(step.rawValue) of the layout move\n".utf8))
        Glibc.kill(getpid(), SIGKILL)
    }

    /// Step 5: every source's classifier runs our programs now (the apply's attach
    /// moved them); whatever else the other layouts pinned goes.
    func finishLayoutMove(_ dp: BPFDatapath) {
        for former in formerLayouts {
            let carried = dp.carry(fromPinDirectory: former.directory, maps: BPFDatapath.carriedCounters)
            do { try Self.removePins(of: former) } catch {
                logger.error("remove the other layout's pins", metadata: ["directory": "\(former.directory)", "error": "\(error)"])
            }
            movedFrom.append(former.version ?? 0)
            logger.notice(
                "moved to this map layout",
                metadata: [
                    "from": "\(former.version.map { "layout \($0)" } ?? "unversioned pins") (\(former.directory), removed)",
                    "to": "\(layout.map { "\($0)" } ?? "?") (\(layoutDirectory ?? "?"))", "counters": "\(carried)",
                ])
        }
        formerLayouts = []
        dp.formerPinDirectories = []
    }

    /// Removes another layout's pins: its links that nothing adopted (interfaces no
    /// source uses now) are detached, its maps unpinned (they go with the last
    /// program using them), its directory removed.
    static func removePins(of former: FormerLayout) throws {
        let fm = FileManager.default
        let links = former.directory + "/links"
        for name in (try? fm.contentsOfDirectory(atPath: links)) ?? [] {
            let path = links + "/" + name
            let fd = clibbpf_obj_get(path)
            if fd >= 0 {
                _ = clibbpf_link_detach(fd)
                Glibc.close(fd)
            }
            unlink(path)
        }
        rmdir(links)
        if former.version == nil {
            // The bpffs directory itself: only what those agents pinned there.
            for m in ClassifierMap.allCases { unlink(former.directory + "/" + m.rawValue) }
            return
        }
        for name in (try? fm.contentsOfDirectory(atPath: former.directory)) ?? [] { unlink(former.directory + "/" + name) }
        guard rmdir(former.directory) == 0 || errno == ENOENT else {
            throw DatapathError("remove \(former.directory)", errno: errno)
        }
    }
}
