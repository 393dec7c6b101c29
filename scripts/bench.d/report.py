#!/usr/bin/env python3
"""Merge one bench run into bench/results.json and render results.md and throughput.png.

A part that did not run this time keeps its previous numbers (so `scripts/bench
classifier` does not erase the throughput table); each part says when it was measured.
"""
import argparse, datetime, json, os, platform, statistics, subprocess


def load(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def throughput_summary(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r["mode"], r["rules"], r["matching"]), []).append(r)
    out = []
    for (mode, rules, matching), rs in groups.items():
        pps = [r["pps"] for r in rs]
        out.append(dict(mode=mode, rules=rules, matching=matching,
                        pps_min=min(pps), pps_median=statistics.median(pps), pps_max=max(pps),
                        copies=sum(r["copies"] for r in rs), lost=sum(r["lost"] for r in rs),
                        rounds=len(rs)))
    order = {"none": 0, "hook": 1, "tcxhook": 2, "u32": 3, "nftdup": 4, "agent": 5}
    out.sort(key=lambda x: (order.get(x["mode"], 9), not x["matching"], x["rules"]))
    return out


def paired(rows, mode, rules, matching):
    """Median over rounds of (mode's pps / none's pps in the same round): the two are
    measured seconds apart (throughput.sh runs them next to each other), so drift
    of the shared machine between rounds cancels out."""
    none = {r["round"]: r["pps"] for r in rows if r["mode"] == "none"}
    rs = sorted(r["pps"] / none[r["round"]] for r in rows
                if r["mode"] == mode and r["rules"] == rules and r["matching"] == matching and none.get(r["round"]))
    return statistics.median(rs) if rs else None


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
    def med(mode, rules, matching):
        for r in tp:
            if r["mode"] == mode and r["rules"] == rules and r["matching"] == matching:
                return r["pps_median"]
        return None
    res = {}
    agent_m = med("agent", 30, True)
    peers = [p for p in (med("u32", 30, True), med("nftdup", 30, True)) if p]
    if agent_m and peers:
        res["agent_vs_best_peer_30_matching"] = agent_m / max(peers)
    agent_n, none = med("agent", 30, False), med("none", 0, False)
    # Against "no mirroring": paired per round (see `paired`); the ratio of the two
    # medians is kept beside it for comparison with earlier runs.
    for key, mode, rules in (("agent_unmatched_vs_none_30", "agent", 30), ("hook_floor_vs_none", "hook", 0),
                             ("tcx_floor_vs_none", "tcxhook", 0)):
        v = paired(rows, mode, rules, False)
        if v:
            res[key] = v
    if agent_n and none:
        res["agent_unmatched_vs_none_30_of_medians"] = agent_n / none
    tcx = med("tcxhook", 0, False)
    if agent_n and tcx:
        res["agent_unmatched_vs_tcx_floor_30"] = agent_n / tcx
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", required=True)
    a = ap.parse_args()
    path = os.path.join(a.out, "results.json")
    res = load(path, {})
    now = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    res["machine"] = dict(cores=os.cpu_count(), kernel=platform.release())
    res.setdefault("measured_at", {})
    cl = load(os.path.join(a.work, "classifier.json"), None)
    if cl is not None:
        res["classifier_ns"] = cl.get("classifier_ns", cl)
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
        rows = [r for r in rows if r.get("phase") is None]
        # `scripts/bench profile` runs only the profile phase: the other
        # sections keep their numbers from the last throughput run.
        if rows:
            res["throughput"] = throughput_summary(rows)
            res["throughput_ratios"] = ratios(res["throughput"], rows)
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
        out = {}
        for phase, other in (("session", "limits"),):
            cycles = {}
            for r in rows:
                if r["phase"] == phase:
                    cycles.setdefault(r["cycle"], {})[r["mode"]] = r
            pairs = [c for c in cycles.values() if other in c and "none" in c and c["none"]["pps"] and c["none"]["copies"]]
            if pairs:
                pps = [c[other]["pps"] / c["none"]["pps"] for c in pairs]
                copies = [c[other]["copies"] / c["none"]["copies"] for c in pairs]
                out[phase] = dict(cycles=len(pairs), pps_ratio_median=statistics.median(pps), pps_ratio_min=min(pps),
                                  pps_ratio_max=max(pps), copies_ratio_median=statistics.median(copies),
                                  none_pps_median=statistics.median(c["none"]["pps"] for c in pairs))
        res["limits_never_triggering"] = out
        res["measured_at"]["limits"] = now
    res["command"] = a.command
    with open(path, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")

    md = ["# Benchmark results", "",
          f"Machine: {res['machine']['cores']} cores, kernel {res['machine']['kernel']}. "
          "Reproduce all of it: `scripts/bench` (as root); one part: `scripts/bench throughput|classifier|control-plane|profile|limits`. "
          f"Last written by `{a.command}`; each part's time in results.json (`measured_at`).", ""]
    if res.get("limits_never_triggering"):
        md += ["## Limits that never trigger (SPEC §10), mirrored path", "",
               "Every packet mirrored; per cycle the pps forwarded with the limit over the pps without it, "
               "alternated under one sender (`scripts/bench limits`).", "",
               "| what | cycles | forwarded pps ratio (median, min-max) | copies ratio | none pps |", "|---|---|---|---|---|"]
        names = dict(session="session rateLimit (pps 10^9, bps 10^12) + sampleOneIn 1")
        for k, v in res["limits_never_triggering"].items():
            md.append(f"| {names.get(k, k)} | {v['cycles']} | {v['pps_ratio_median']:.4f} ({v['pps_ratio_min']:.4f}-"
                      f"{v['pps_ratio_max']:.4f}) | {v['copies_ratio_median']:.4f} | {v['none_pps_median']:.0f} |")
        md.append("")
    if "classifier_ns" in res:
        md += ["## Classifier (BPF_PROG_TEST_RUN, ns per packet)", "", "| policy | ns/packet |", "|---|---|"]
        md += [f"| {k} | {v:.1f} |" for k, v in res["classifier_ns"].items() if isinstance(v, (int, float))]
        md.append("")
    if "throughput" in res:
        md += ["## Throughput (64-byte UDP frames, pps forwarded by the host)", "",
               "| mode | rules | last matches | pps min | pps median | pps max | copies | lost |",
               "|---|---|---|---|---|---|---|---|"]
        for r in res["throughput"]:
            md.append(f"| {r['mode']} | {r['rules']} | {'yes' if r['matching'] else 'no'} | {r['pps_min']:.0f} | "
                      f"{r['pps_median']:.0f} | {r['pps_max']:.0f} | {r['copies']} | {r['lost']} |")
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
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("\n".join(md))

    if "throughput" in res:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            try:
                subprocess.run(["pip", "install", "-q", "matplotlib"], check=True)
                import matplotlib
                matplotlib.use("Agg")
                import matplotlib.pyplot as plt
            except Exception as e:  # the table and JSON still stand without the plot
                print(f"bench: no plot (matplotlib unavailable: {e})")
                return
        rows = res["throughput"]
        labels = [f"{r['mode']}\n{r['rules']}{'' if r['matching'] else ' none'}" for r in rows]
        med = [r["pps_median"] / 1000 for r in rows]
        err = [[(r["pps_median"] - r["pps_min"]) / 1000 for r in rows],
               [(r["pps_max"] - r["pps_median"]) / 1000 for r in rows]]
        colors = {"none": "grey", "hook": "silver", "tcxhook": "lightsteelblue", "u32": "tab:blue", "nftdup": "tab:orange", "agent": "tab:green"}
        fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.8), 4))
        ax.bar(range(len(rows)), med, yerr=err, color=[colors.get(r["mode"], "k") for r in rows])
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel("kpps forwarded (median, min-max)")
        ax.set_title("Mirroring throughput, 64 B UDP (rules; 'none' = no rule matches)")
        fig.tight_layout()
        fig.savefig(os.path.join(a.out, "throughput.png"), dpi=100)


if __name__ == "__main__":
    main()
