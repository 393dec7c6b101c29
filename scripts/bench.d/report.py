#!/usr/bin/env python3
"""Merge one bench run into bench/results.json and render results.md and throughput.png.

A part that did not run this time keeps its previous numbers (so `scripts/bench
classifier` does not erase the throughput table); each part says when it was measured.
"""
import argparse, datetime, json, os, platform, random, statistics, subprocess


def load(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


MODE_ORDER = {"none": 0, "hook": 1, "tcxhook": 2, "u32": 3, "nftdup": 4, "agent": 5}
LAYOUT_ORDER = {"paged": 0, "linear": 1, "tcp": 2}
SHAPE_ORDER = {s: i for i, s in enumerate(("port", "src32", "src24", "dst32", "dst24", "proto", "ipv6", "all"))}
PEERS = ("u32", "nftdup")


def normalise(r):
    """A cell's identity. Rows from before the matrix (issue 20) were paged trafgen
    frames of 60 bytes with rules differing by port."""
    r = dict(r)
    r.setdefault("layout", "paged")
    r.setdefault("rules_shape", "port" if r.get("rules") else None)
    r.setdefault("frame_bytes", 60)
    r.setdefault("family", "ipv4")
    return r


def cell_key(r):
    return (r["layout"], r["rules_shape"], r["frame_bytes"], r["family"], r["mode"], r["rules"], r["matching"],
            r.get("streams"))


def baseline_key(r):
    """What a cell is compared with in its round: none's cell of the same layout,
    frame size and address family (TCP: of the same number of streams)."""
    return (r["layout"], r["frame_bytes"], r["family"], r.get("streams"), r["round"])


def rate(r):
    """The cell's figure of merit: forwarded pps, or for TCP the workload's Gbit/s."""
    return r.get("gbps") if r["layout"] == "tcp" else r["pps"]


def paired_none(rows, r_cells):
    """Median over rounds of (cell's rate / none's rate in the same round and group):
    the two are measured seconds to a minute apart (throughput.sh runs a group's
    cells together, none first), so drift of the shared machine between rounds
    cancels out."""
    none = {baseline_key(r): rate(r) for r in rows if r["mode"] == "none"}
    rs = sorted(rate(r) / none[baseline_key(r)] for r in r_cells
                if rate(r) and none.get(baseline_key(r)))
    return statistics.median(rs) if rs else None


def paired_peer(rows, r_cells):
    """Median over rounds of (cell's rate / the better peer's rate in the same round,
    same layout, shape, frame size and matching)."""
    def k(r):
        return (r["layout"], r["rules_shape"], r["frame_bytes"], r["matching"], r.get("streams"), r["round"])
    best = {}
    for r in rows:
        if r["mode"] in PEERS and rate(r):
            best[k(r)] = max(best.get(k(r), 0), rate(r))
    rs = sorted(rate(r) / best[k(r)] for r in r_cells if rate(r) and best.get(k(r)))
    return statistics.median(rs) if rs else None


def throughput_summary(rows):
    """One entry per cell of the matrix (keys of issue 20: layout, rules_shape,
    frame_bytes, mode, rules, matching, pps_median, copies, lost; TCP cells: layout
    "tcp", rules_shape "all", frame_bytes null, plus streams, gbps_median and the
    segments the peer received), with its ratios to none and to the better peer."""
    groups = {}
    for r in rows:
        groups.setdefault(cell_key(r), []).append(r)
    out = []
    for key, rs in groups.items():
        r0 = rs[0]
        pps = [r["pps"] for r in rs]
        e = dict(layout=r0["layout"], rules_shape=r0["rules_shape"], frame_bytes=r0["frame_bytes"],
                 family=r0["family"], mode=r0["mode"], rules=r0["rules"], matching=r0["matching"],
                 pps_min=min(pps), pps_median=statistics.median(pps), pps_max=max(pps),
                 copies=sum(r["copies"] for r in rs), lost=sum(r["lost"] for r in rs), rounds=len(rs))
        if r0["layout"] == "tcp":
            g = [r["gbps"] for r in rs if r.get("gbps") is not None]
            e.update(streams=r0["streams"], segments=sum(r["segments"] for r in rs),
                     gbps_median=statistics.median(g) if g else None, gbps_min=min(g) if g else None,
                     gbps_max=max(g) if g else None)
        if e["mode"] != "none":
            e["vs_none"] = paired_none(rows, rs)
            if e["mode"] == "agent" and e["matching"]:
                e["vs_best_peer"] = paired_peer(rows, rs)
        out.append(e)
    out.sort(key=lambda x: (LAYOUT_ORDER.get(x["layout"], 9), x["frame_bytes"] or 0, x.get("streams") or 0,
                            SHAPE_ORDER.get(x["rules_shape"], -1), not x["matching"], x["rules"],
                            MODE_ORDER.get(x["mode"], 9), x["family"]))
    return out


def find(tp, **kw):
    for r in tp:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def alternating(alt, key="mode"):
    """Median over cycles of (mode's pps / none's pps in the same cycle), from the
    alternating and breakdown phases of throughput.sh (sub-second samples, modes
    interleaved; `key` names the mode field)."""
    none = {r["cycle"]: r["pps"] for r in alt if r[key] == "none"}
    out = {}
    for mode in sorted({r[key] for r in alt} - {"none"}):
        rs = [r["pps"] / none[r["cycle"]] for r in alt if r[key] == mode and none.get(r["cycle"])]
        if rs:
            q = statistics.quantiles(rs, n=4) if len(rs) > 1 else [rs[0]] * 3
            out[mode] = dict(median=statistics.median(rs), q1=q[0], q3=q[2], cycles=len(rs))
    return out


PROFILE_PARTS = ("program", "dispatch", "pull", "release", "ip_rcv")


def profile_summary(prof):
    """Medians over cycles of the profile phase's ns per forwarded packet
    (profile_summary.py): in total and per part, for each mode; and each mode's
    total CPU time per packet over none's in the same cycle (the pps ratio that
    CPU time alone predicts, the sender's CPU being the bottleneck)."""
    modes = {}
    for r in prof:
        modes.setdefault(r["mode"], []).append(r)
    none = {r["cycle"]: r["ns_per_packet"] for r in modes.get("none", [])}
    out = dict(cycles=max(r["cycle"] for r in prof), modes={})
    for mode, rs in modes.items():
        m = dict(ns_per_packet=statistics.median(r["ns_per_packet"] for r in rs),
                 parts_ns={k: statistics.median(r["parts_ns"][k] for r in rs) for k in PROFILE_PARTS})
        paired_ratio = [none[r["cycle"]] / r["ns_per_packet"] for r in rs if none.get(r["cycle"])]
        if mode != "none" and paired_ratio:
            m["cpu_ratio_vs_none"] = statistics.median(paired_ratio)
        out["modes"][mode] = m
    return out


def ratios(tp, rows):
    """The headline ratios of earlier runs (paged trafgen frames, 64 bytes, rules
    differing by port), kept under their names so runs compare across sessions."""
    res = {}
    size = 64 if find(tp, layout="paged", frame_bytes=64) else 60
    base = dict(layout="paged", frame_bytes=size)
    m = find(tp, mode="agent", rules_shape="port", rules=30, matching=True, **base)
    if m and m.get("vs_best_peer"):
        res["agent_vs_best_peer_30_matching"] = m["vs_best_peer"]
    for key, kw in (("agent_unmatched_vs_none_30", dict(mode="agent", rules_shape="port", rules=30, matching=False)),
                    ("hook_floor_vs_none", dict(mode="hook")), ("tcx_floor_vs_none", dict(mode="tcxhook"))):
        c = find(tp, **kw, **base)
        if c and c.get("vs_none"):
            res[key] = c["vs_none"]
    return res


GOALS = dict(unmatched_vs_none=0.97, mirrored_vs_best_peer=1.4, tcp_vs_best_peer=1.3)


def goals(tp):
    """Issue 20's goals, cell by cell: what the run measured against each."""
    out = []
    for c in tp:
        if c["mode"] != "agent":
            continue
        if c["layout"] == "tcp":
            out.append(dict(cell=f"tcp, {c['streams']} stream(s)", goal=f"Gbit/s >= {GOALS['tcp_vs_best_peer']} x better peer",
                            value=c.get("vs_best_peer"), holds=(c.get("vs_best_peer") or 0) >= GOALS["tcp_vs_best_peer"]))
            out.append(dict(cell=f"tcp, {c['streams']} stream(s)", goal="every segment's copy at the collector (segments without one)",
                            value=c["lost"], holds=c["lost"] == 0 and c["copies"] > 0))
        elif c["matching"]:
            out.append(dict(cell=f"{c['layout']}, {c['rules_shape']}, {c['frame_bytes']} B, mirrored",
                            goal=f">= {GOALS['mirrored_vs_best_peer']} x better peer", value=c.get("vs_best_peer"),
                            holds=(c.get("vs_best_peer") or 0) >= GOALS["mirrored_vs_best_peer"]))
        else:
            out.append(dict(cell=f"{c['layout']}, {c['rules_shape']}, {c['frame_bytes']} B, unmatched",
                            goal=f">= {GOALS['unmatched_vs_none']:.0%} of none", value=c.get("vs_none"),
                            holds=(c.get("vs_none") or 0) >= GOALS["unmatched_vs_none"]))
    return out


def fmt(v, spec=".0f"):
    return "" if v is None else format(v, spec)


def throughput_tables(res):
    """A table per layout: one row per (frame size, rule shape, matching), the modes
    side by side; then the TCP cells and the goals."""
    tp, run = res["throughput"], res.get("throughput_run", {})
    md = ["## Throughput matrix", ""]
    if run.get("quick"):
        md += ["**`--quick`: one short round of each cell, a smoke run that shows the matrix runs; "
               "its figures are not a measurement.**", ""]
    rounds = f"Rounds: {run['rounds']} of {run['seconds']} s per cell, interleaved. " if run else ""
    md += [rounds + "pps forwarded by the host (median over rounds); `x none` and `x peer` are the agent's "
           "pps over none's and over the better peer's in the same round (median over rounds). "
           "Copies counted at the collector; `lost / stray` (agent / u32 / nft): in a mirrored row the "
           "forwarded packets without a copy, in an unmatched row the copies made (both must be 0).", ""]
    for layout in [l for l in ("paged", "linear") if any(c["layout"] == l for c in tp)]:
        what = {"paged": "trafgen, AF_PACKET TX ring: all but the Ethernet header in a page fragment",
                "linear": "lsend, AF_PACKET sendmmsg without a ring: the whole frame in the skb head"}[layout]
        md += [f"### Layout `{layout}` ({what})", "",
               "| bytes | rules | last matches | none | tcx floor | u32 | nft dup | agent | x none | x peer | lost / stray |",
               "|---|---|---|---|---|---|---|---|---|---|---|"]
        cells = [c for c in tp if c["layout"] == layout]
        rows = sorted({(c["frame_bytes"], c["rules_shape"], c["rules"], c["matching"]) for c in cells if c["rules_shape"]},
                      key=lambda k: (k[0], SHAPE_ORDER.get(k[1], 99), k[2], not k[3]))
        for size, shape, rules, matching in rows:
            fam = "ipv6" if shape == "ipv6" else "ipv4"
            none = find(cells, mode="none", frame_bytes=size, family=fam)
            floor = find(cells, mode="tcxhook", frame_bytes=size, family=fam)
            by = {m: find(cells, mode=m, frame_bytes=size, rules_shape=shape, rules=rules, matching=matching)
                  for m in ("u32", "nftdup", "agent")}
            ag = by["agent"] or {}
            # mirrored: packets without a copy; unmatched: stray copies (must be 0)
            lost = " / ".join(fmt(by[m]["lost" if matching else "copies"], "d") if by[m] else "-"
                              for m in ("agent", "u32", "nftdup"))
            md.append(f"| {size} | {rules} by {shape} | {'yes' if matching else 'no'} | {fmt(none and none['pps_median'])} | "
                      f"{fmt(floor and floor['pps_median'])} | " +
                      " | ".join(fmt(by[m] and by[m]["pps_median"]) for m in ("u32", "nftdup", "agent")) +
                      f" | {fmt(ag.get('vs_none'), '.3f')} | {fmt(ag.get('vs_best_peer'), '.2f')} | {lost} |")
        md.append("")
    tcp = [c for c in tp if c["layout"] == "tcp"]
    if tcp:
        md += ["### TCP (iperf3 from the VM to the peer, GSO/TSO as the kernel does it, one accept-all rule)", "",
               "Gbit/s received by the peer (median over rounds); segments the peer received (its IP layer's per-ECN counters, which count a GSO packet as its segments; "
               "summed over rounds) against the copies at the collector, which sees segments (the underlay "
               "segments GSO copies in software, as a NIC without VXLAN TSO would).", "",
               "| streams | mode | Gbit/s | x none | x peer | segments at the peer | copies | lost |",
               "|---|---|---|---|---|---|---|---|"]
        for c in sorted(tcp, key=lambda c: (c["streams"], MODE_ORDER.get(c["mode"], 9))):
            md.append(f"| {c['streams']} | {c['mode']} | {fmt(c.get('gbps_median'), '.2f')} | {fmt(c.get('vs_none'), '.3f')} | "
                      f"{fmt(c.get('vs_best_peer'), '.2f')} | {c['segments']} | {c['copies']} | {c['lost']} |")
        md.append("")
    g = res.get("throughput_goals")
    if g:
        md += ["### Issue 20's goals, cell by cell", "", "| cell | goal | measured | holds |", "|---|---|---|---|"]
        for x in g:
            v = x["value"]
            md.append(f"| {x['cell']} | {x['goal']} | {fmt(v, 'd' if isinstance(v, int) else '.3f')} | "
                      f"{'yes' if x['holds'] else '**no**'} |")
        md.append("")
    return md


def plot(res, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # the table and JSON still stand without the plot
        print(f"bench: no plot (matplotlib unavailable: {e}; Debian: python3-matplotlib)")
        return
    tp = res["throughput"]
    layouts = [l for l in ("paged", "linear") if any(c["layout"] == l for c in tp)]
    sizes = sorted({c["frame_bytes"] for c in tp if c["layout"] in layouts})
    tcp = [c for c in tp if c["layout"] == "tcp"]
    ncols = len(sizes) + (1 if tcp else 0)
    nrows = max(1, len(layouts))
    fig, axes = plt.subplots(nrows, max(1, ncols), figsize=(7 * max(1, ncols), 4 * nrows), squeeze=False)
    colors = {"u32": "tab:blue", "nftdup": "tab:orange", "agent": "tab:green"}
    for i, layout in enumerate(layouts):
        for j, size in enumerate(sizes):
            ax = axes[i][j]
            cells = [c for c in tp if c["layout"] == layout and c["frame_bytes"] == size]
            keys = sorted({(c["rules_shape"], c["matching"]) for c in cells if c["rules_shape"]},
                          key=lambda k: (SHAPE_ORDER.get(k[0], 99), not k[1]))
            w = 0.27
            for k, m in enumerate(("u32", "nftdup", "agent")):
                ys = [(find(cells, mode=m, rules_shape=s, matching=mt) or {}).get("pps_median", 0) / 1000 for s, mt in keys]
                ax.bar([x + (k - 1) * w for x in range(len(keys))], ys, w, color=colors[m], label=m)
            for x, (s, mt) in enumerate(keys):  # none of the same family: a black bar across the group
                n = find(cells, mode="none", family="ipv6" if s == "ipv6" else "ipv4")
                if n:
                    ax.hlines(n["pps_median"] / 1000, x - 1.5 * w, x + 1.5 * w, colors="k")
            ax.set_xticks(range(len(keys)))
            ax.set_xticklabels([f"{s}\n{'last' if mt else 'none'}" for s, mt in keys], fontsize=7)
            ax.set_ylabel("kpps forwarded (median)")
            ax.set_title(f"{layout}, {size} B, 30 rules (black: no mirroring)", fontsize=9)
            if not keys:
                ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    if tcp:
        ax = axes[0][ncols - 1]
        streams = sorted({c["streams"] for c in tcp})
        modes = [m for m in ("none", "u32", "nftdup", "agent") if any(c["mode"] == m for c in tcp)]
        w = 0.8 / max(1, len(modes))
        for k, m in enumerate(modes):
            ys = [(find(tcp, mode=m, streams=s) or {}).get("gbps_median") or 0 for s in streams]
            ax.bar([x + (k - (len(modes) - 1) / 2) * w for x in range(len(streams))], ys, w,
                   color=colors.get(m, "grey"), label=m)
        ax.set_xticks(range(len(streams)))
        ax.set_xticklabels([f"{s} stream(s)" for s in streams])
        ax.set_ylabel("Gbit/s (median)")
        ax.set_title("TCP, iperf3, every segment mirrored (grey: no mirroring)", fontsize=9)
        for i in range(1, nrows):
            axes[i][ncols - 1].axis("off")
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(color=c, label=m) for m, c in colors.items()], loc="upper right", fontsize=8)
    title = "Mirroring throughput matrix" + (" (--quick smoke: not a measurement)" if res.get("throughput_run", {}).get("quick") else "")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "throughput.png"), dpi=90)


def fleet_section(fl, when):
    """The fleet part (scripts/bench fleet) as markdown lines."""
    r, g = fl["region"], fl.get("goals", {})
    ch, rs, ag, rd = fl["change"], fl["resync"], fl["agents"], fl["render"]
    et = fl.get("etcd", {})

    def goal(name, label, unit, fmt_=".0f"):
        x = g.get(name)
        if not x:
            return f"| {label} | | | |"
        return (f"| {label} | **{x['measured']:{fmt_}} {unit}** | < {x['goal']:.0f} {unit} | "
                f"{'holds' if x['holds'] else '**does not hold**'} |")
    cell = lambda d, k: f"{d[k]:.0f}"
    out = ["## Fleet mode on etcd (issue 18; `scripts/bench fleet`)", "",
           f"Measured {when}{' with `--quick` (a smaller region: not the goals’ conditions)' if fl.get('quick') else ''}: "
           f"a {et.get('members', 3)}-member etcd cluster ({'TLS with client certificates' if et.get('tls') else 'plain'}), "
           f"release build, a region of {r['sessions']:,} sessions and {r['sources']:,} sources over {r['hosts']:,} hosts "
           f"({r['bytes'] / 1e6:.1f} MB of JSON), {ag['count']} `mirror-agent --datapath memory`.", "",
           "| goal | measured | goal | |", "|---|---|---|---|",
           goal("full_render_ms", "controller: full render (start → every host key written)", "ms"),
           goal("controller_peak_rss_mib", "controller: peak RSS during the full render", "MiB", ".1f"),
           goal("change_p99_ms", f"one session changed → its {ch['affected_hosts']} hosts' agents applied, p99 of {ch['changes']}", "ms"),
           goal("resync_ms", "agent resync after a compaction (SIGCONT → final document applied)", "ms"), "",
           "One session changed, ms (from the region head's switch in etcd unless said otherwise):", "",
           "| | p50 | p99 | max |", "|---|---|---|---|"]
    for key, label in (("head_to_applied", "→ every affected agent applied (status key)"),
                       ("head_to_first_host_applied", "→ the first affected agent applied"),
                       ("head_to_desired_written", "→ the controller wrote every affected host's document"),
                       ("desired_to_applied", "host document written → its agent applied"),
                       ("store", "the apply's upload of the region (before the head switch)"),
                       ("apply_to_applied", "start of the upload → every affected agent applied")):
        if key in ch:
            out.append(f"| {label} | {cell(ch[key], 'p50_ms')} | {cell(ch[key], 'p99_ms')} | {cell(ch[key], 'max_ms')} |")
    own = rd.get("controller_logged_ms")
    out += ["",
            f"Full render: {rd['ms']:.0f} ms from the controller's start (its own log: {own if own is not None else '?'} ms from "
            f"reading the region to the last write); RSS after {rd['rss_after_mib']:.0f} MiB, peak over the whole run "
            f"{rd.get('peak_rss_whole_run_mib', rd['peak_rss_mib']):.0f} MiB. `agentctl --etcd apply` of this region: "
            f"validate {fl['apply']['validate_ms']:.0f} ms, store {fl['apply']['store_ms']:.0f} ms.",
            f"Agents: {ag['count']} started and applied in {ag['all_applied_ms']:.0f} ms; RSS {ag['rss_mib_total']:.0f} MiB "
            f"in all ({ag['rss_mib_mean']:.1f} each on average, {ag['rss_mib_max']:.1f} at most; peak {ag.get('peak_rss_mib_max', 0):.1f}).",
            f"Resync: {rs['ms']:.0f} ms for {rs['host']}, stopped {rs['stopped_ms'] / 1000:.1f} s; it {rs['how']}."]
    return out


def replace_marked(path, name, lines):
    """Replaces the lines between <!-- NAME:begin --> and <!-- NAME:end --> in PATH
    (appends the block when the markers are missing)."""
    begin, end = f"<!-- {name}:begin (scripts/bench.d/report.py writes this) -->", f"<!-- {name}:end -->"
    text = open(path).read() if os.path.exists(path) else ""
    block = begin + "\n" + "\n".join(lines) + "\n" + end
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--quick", action="store_true", help="the throughput part ran as a smoke (--quick)")
    a = ap.parse_args()
    path = os.path.join(a.out, "results.json")
    res = load(path, {})
    now = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    res["machine"] = dict(cores=os.cpu_count(), kernel=platform.release())
    res.setdefault("measured_at", {})
    cl = load(os.path.join(a.work, "classifier.json"), None)
    if cl is not None:
        res["classifier_ns"] = cl.get("classifier_ns", cl)
        if "classifier_baseline_ns" in cl:  # the build without the capture gate, same run
            res["classifier_baseline_ns"] = cl["classifier_baseline_ns"]
        res["measured_at"]["classifier"] = now
    cp = load(os.path.join(a.work, "control-plane.json"), None)
    cpa = load(os.path.join(a.work, "control-plane-agent.json"), None)
    if cp is not None or cpa is not None:
        # apply_*_s and rss_*: the real agent (agentctl apply, every source attached);
        # breakdown: validate / compile / swap measured in process by mirror-bench.
        res["control_plane"] = dict(cpa or {})
        if cp is not None:
            res["control_plane"]["breakdown"] = cp.get("control_plane", cp)
        res["measured_at"]["control_plane"] = now
    tp_path = os.path.join(a.work, "throughput.jsonl")
    if os.path.exists(tp_path):
        with open(tp_path) as f:
            rows = [json.loads(l) for l in f if l.strip()]
        alt = [r for r in rows if r.get("phase") == "alternating"]
        brk = [r for r in rows if r.get("phase") == "breakdown"]
        prof = [r for r in rows if r.get("phase") == "profile"]
        rows = [normalise(r) for r in rows if r.get("phase") is None]
        # `scripts/bench profile` runs only the profile phase: the other
        # sections keep their numbers from the last throughput run.
        if rows:
            res["throughput"] = throughput_summary(rows)
            res["throughput_ratios"] = ratios(res["throughput"], rows)
            res["throughput_goals"] = goals(res["throughput"])
            res["throughput_run"] = dict(quick=a.quick, rounds=max(r["round"] for r in rows),
                                         seconds=rows[0]["seconds"])
            res.pop("throughput_alternating", None)
            res.pop("unmatched_breakdown", None)
            res["measured_at"]["throughput"] = now
        if prof:
            res["unmatched_profile"] = profile_summary(prof)
            res["measured_at"]["profile"] = now
        if alt:
            a_res = alternating(alt)
            res["throughput_alternating"] = dict(seconds=alt[0]["seconds"], ratios_vs_none=a_res,
                                                 none_pps_median=statistics.median(r["pps"] for r in alt if r["mode"] == "none"))
            if "agent" in a_res:
                res["throughput_ratios"]["agent_unmatched_vs_none_30_alternating"] = a_res["agent"]["median"]
            if "tcxhook" in a_res:
                res["throughput_ratios"]["tcx_floor_vs_none_alternating"] = a_res["tcxhook"]["median"]
        if brk:
            # Where the unmatched path's cost goes (breakdown_phase in throughput.sh).
            res["unmatched_breakdown"] = dict(seconds=brk[0]["seconds"], ratios_vs_none=alternating(brk, key="variant"),
                                              none_pps_median=statistics.median(r["pps"] for r in brk if r["variant"] == "none"))
    lim_path = os.path.join(a.work, "limits.jsonl")
    if os.path.exists(lim_path):
        # SPEC §10's limits when they never trigger against none (scripts/bench.d/limits.sh):
        # per cycle, the ratio of forwarded pps and of copies a second; their medians.
        with open(lim_path) as f:
            rows = [json.loads(l) for l in f if l.strip()]
        # One entry per frame size: "session" for 64-byte frames, "session_1400_bytes"
        # for LIMITS_FRAME_BYTES=1400; a run replaces only its own entry.
        out = dict(res.get("limits_never_triggering") or {})
        for phase, other in (("session", "limits"),):
            cycles = {}
            for r in rows:
                if r["phase"] == phase:
                    cycles.setdefault(r["cycle"], {})[r["mode"]] = r
            pairs = [c for c in cycles.values() if other in c and "none" in c and c["none"]["pps"] and c["none"]["copies"]]
            if pairs:
                frame = int(rows[0].get("frame_bytes") or os.environ.get("LIMITS_FRAME_BYTES") or 64)
                pps = [c[other]["pps"] / c["none"]["pps"] for c in pairs]
                copies = [c[other]["copies"] / c["none"]["copies"] for c in pairs]
                # A bootstrap 95 % interval of the median ratio (seeded: the same
                # samples give the same interval).
                rng = random.Random(1)
                boot = sorted(statistics.median(rng.choices(pps, k=len(pps))) for _ in range(2000))
                out[phase if frame == 64 else f"{phase}_{frame}_bytes"] = dict(
                    frame_bytes=frame, cycles=len(pairs), pps_ratio_median=statistics.median(pps),
                    pps_ratio_ci95=[boot[50], boot[1949]], pps_ratio_min=min(pps), pps_ratio_max=max(pps),
                    copies_ratio_median=statistics.median(copies),
                    none_pps_median=statistics.median(c["none"]["pps"] for c in pairs))
        res["limits_never_triggering"] = out
        res["measured_at"]["limits"] = now
    cs = load(os.path.join(a.work, "cold-start.json"), None)
    if cs is not None:
        res["cold_start"] = cs
        res["measured_at"]["cold_start"] = now
    fl = load(os.path.join(a.work, "fleet.json"), None)
    if fl is not None:
        # scripts/bench.d/fleet.sh: mirror-bench fleet on a real etcd cluster.
        res["fleet"] = fl.get("fleet", fl)
        res["measured_at"]["fleet"] = now
    res["command"] = a.command
    with open(path, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")

    md = ["# Benchmark results", "",
          f"Machine: {res['machine']['cores']} cores, kernel {res['machine']['kernel']}. "
          "Reproduce all of it: `scripts/bench` (as root); one part: `scripts/bench throughput|classifier|control-plane|profile|limits|cold-start|fleet`. "
          f"Last written by `{a.command}`; each part's time in results.json (`measured_at`).", ""]
    if res.get("limits_never_triggering"):
        md += ["## Limits that never trigger (SPEC §10), mirrored path", "",
               "Every packet mirrored; per cycle the pps forwarded with the limit over the pps without it, "
               "alternated under one sender (`scripts/bench limits`).", "",
               "| what | frame bytes | cycles | forwarded pps ratio: median (95 % CI; min-max) | copies ratio | none pps |",
               "|---|---|---|---|---|---|"]
        for k, v in res["limits_never_triggering"].items():
            ci = v.get("pps_ratio_ci95")
            ci_text = f"{ci[0]:.4f}-{ci[1]:.4f}; " if ci else ""
            md.append(f"| session rateLimit (pps 10^9, bps 10^12) + sampleOneIn 1 | {v.get('frame_bytes', 64)} | {v['cycles']} | "
                      f"{v['pps_ratio_median']:.4f} ({ci_text}{v['pps_ratio_min']:.4f}-{v['pps_ratio_max']:.4f}) | "
                      f"{v['copies_ratio_median']:.4f} | {v['none_pps_median']:.0f} |")
        md.append("")
    if res.get("cold_start"):
        cs = res["cold_start"]
        md += ["## Cold start (issue 18)", "",
               "Exec of mirror-agent to the first copy at the collector: the state directory holds an applied "
               "document, the bpffs is empty, nothing of ours is in the kernel, the VM's traffic flows "
               f"(`scripts/bench cold-start`, {cs['runs']} runs of each, alternated; goal {cs['goal_ms']} ms).", "",
               "| agent | median (ms) | runs (ms) |", "|---|---|---|",
               f"| as it is (TC programs verified at once, test programs after the first apply) | "
               f"{cs['cold_ms_median']:.0f} | {', '.join(f'{x:.0f}' for x in cs['cold_ms'])} |",
               f"| baseline: every program verified one after the other | {cs['serial_load_ms_median']:.0f} | "
               f"{', '.join(f'{x:.0f}' for x in cs['serial_load_ms'])} |", ""]
    if "classifier_ns" in res:
        md += ["## Classifier (BPF_PROG_TEST_RUN, ns per packet)", "", "| policy | ns/packet |", "|---|---|"]
        md += [f"| {k} | {v:.1f} |" for k, v in res["classifier_ns"].items() if isinstance(v, (int, float))]
        md.append("")
    if "throughput" in res:
        res["throughput"] = [normalise(r) for r in res["throughput"]]
        md += throughput_tables(res)
        md.append("")
        for k, v in res.get("throughput_ratios", {}).items():
            md.append(f"- {k}: {v:.3f}")
        md.append("")
        def ratio_table(title, what, section):
            if not section:
                return
            md.extend([f"{title} ({section['seconds']} s each under one continuous sender; none's median "
                   f"{section['none_pps_median']:.0f} pps): each {what}'s pps over none's in the same cycle.", "",
                   f"| {what} | median | quartiles | cycles |", "|---|---|---|---|"])
            for name, v in section["ratios_vs_none"].items():
                md.append(f"| {name} | {v['median']:.3f} | {v['q1']:.3f}–{v['q3']:.3f} | {v['cycles']} |")
            md.append("")
        ratio_table("Alternating: none / the agent with 30 unmatched rules / the empty tcx program", "mode",
                    res.get("throughput_alternating"))
        ratio_table("Breakdown of the unmatched path: one tcx link on the tap, its program swapped atomically", "program",
                    res.get("unmatched_breakdown"))
    if "unmatched_profile" in res:
        pr = res["unmatched_profile"]
        order = [m for m in ("none", "empty", "agent") if m in pr["modes"]]
        names = {"none": "none", "empty": "empty tcx program", "agent": "agent, 30 rules, none matches"}
        labels = [("all CPU time", None), ("the tcx program's own instructions", "program"),
                  ("hook dispatch (tc_run, __netif_receive_skb_core)", "dispatch"),
                  ("bpf_skb_pull_data with callees", "pull"), ("skb_release_data with callees", "release"),
                  ("ip_rcv with callees", "ip_rcv")]
        md += ["## Profile of the unmatched path (perf, cpu-clock, ns of CPU per forwarded packet)", "",
               f"Medians of {pr['cycles']} cycles; perf's own sampling is in every column.", "",
               "| | " + " | ".join(names[m] for m in order) + " |", "|---" * (len(order) + 1) + "|"]
        for label, key in labels:
            vals = [pr["modes"][m]["ns_per_packet"] if key is None else pr["modes"][m]["parts_ns"][key] for m in order]
            md.append(f"| {label} | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
        md.append("| none's CPU time over this one's (paired per cycle) | " +
                  " | ".join("" if m == "none" else f"{pr['modes'][m].get('cpu_ratio_vs_none', 0):.3f}" for m in order) + " |")
        md.append("")
    if "control_plane" in res:
        cpr = res["control_plane"]
        md += ["## Control plane", "",
               "Through the real agent (`agentctl apply`, sessions at the quotas' maximum rules, every source's",
               "interface present and attached):", "",
               "| sessions | apply (s) | agent RSS after (MiB) |", "|---|---|---|"]
        for n in ("1000", "20000"):
            if f"apply_{n}_s" in cpr:
                md.append(f"| {n} (first apply: attaches every new interface) | {cpr[f'apply_{n}_s']} | {cpr.get(f'rss_mib_{n}', '')} |")
        if "swap_20000_s" in cpr:
            samples = cpr.get("swap_20000_samples_s")
            of = f" (median of {', '.join(str(x) for x in samples)})" if samples else ""
            md.append(f"| 20000 (every VNI changed, all attached: validate + compile + swap) | {cpr['swap_20000_s']}{of} | "
                      f"{cpr.get('rss_mib_20000_swap', '')} |")
        if "scrape_20000_s" in cpr:
            md.append(f"| 20000, after two `GET /metrics` ({cpr['scrape_20000_bytes'] / 1e6:.0f} MB each; the second took "
                      f"{cpr['scrape_20000_s']} s) | | {cpr['rss_mib_20000_scraped']} |")
        if "stats_20000_s" in cpr:
            md.append(f"| 20000, after `agentctl stats` ({cpr['stats_20000_lines']} lines; {cpr['stats_20000_s']} s) | | "
                      f"{cpr['rss_mib_20000_stats']} |")
        if "rss_peak_mib" in cpr:
            md.append("")
            phases = [(k, cpr[f"rss_peak_mib_{k}"]) for k in ("swap", "scrape", "stats") if f"rss_peak_mib_{k}" in cpr]
            each = f" (during the swaps {phases[0][1]}, the scrapes {phases[1][1]}, `agentctl stats` {phases[2][1]})" if len(phases) == 3 else ""
            md.append(f"Peak RSS of the agent over the whole run: {cpr['rss_peak_mib']} MiB{each}.")
        for n, b in sorted(cpr.get("breakdown", {}).items()):
            md.append("")
            md.append(f"In process ({n.replace('sessions_', '')} sessions): validate {b['validate_ms']:.0f} ms, "
                      f"compile {b['compile_ms']:.0f} ms, write + swap {b['swap_ms']:.0f} ms.")
        md.append("")
    if "fleet" in res:
        section = fleet_section(res["fleet"], res["measured_at"].get("fleet", now))
        md += section + [""]
        if fl is not None and not res["fleet"].get("quick"):
            replace_marked(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "BENCHMARKS.md"),
                           "fleet", section)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("\n".join(md))

    if "throughput" in res:
        plot(res, a.out)


if __name__ == "__main__":
    main()
