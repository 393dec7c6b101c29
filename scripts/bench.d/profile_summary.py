#!/usr/bin/env python3
"""One sample of the unmatched path's CPU profile (profile_phase in throughput.sh).

Reads a system-wide `perf record -a -g -e cpu-clock -F FREQ` file taken while the
host forwarded PACKETS packets, and prints one JSON line: CPU time per forwarded
packet, in total and in the parts that a TC classifier adds or moves, in ns. A
symbol's time is its samples / FREQ; a packet's share is that over PACKETS, so the
numbers do not depend on how busy the CPUs were.

Parts (perf report's "self" = the symbol itself, "children" = with its callees):
  program   self of every bpf_prog_* symbol: the tcx program's own instructions
            (for the empty program: its entry and return, nothing else)
  dispatch  self of tc_run and __netif_receive_skb_core: the ingress hook is
            inlined into the latter, so its growth over `none` is the hook's cost
  pull      children of bpf_skb_pull_data: the classifier making the headers linear
  release   children of skb_release_data: freeing the skb's data at the peer, which
            the pull makes cheaper (the frame's page is freed in the pull instead)
  ip_rcv    children of ip_rcv: the stack's receive path, whose own header pulls
            find the headers already linear after the classifier's pull
"""
import argparse, json, re, subprocess, sys

IDLE = ("pv_native_safe_halt", "native_safe_halt", "default_idle", "poll_idle", "cpu_idle_poll",
        "acpi_idle_do_entry", "mwait_idle")


def report(data, children):
    args = ["perf", "report", "-i", data, "--sort", "sym", "-g", "none", "--stdio", "--percent-limit", "0"]
    args += ["--children"] if children else ["--no-children", "-n"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        if children:
            m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+\[.\]\s+(\S+)", line)
            if m:
                rows[m.group(3)] = (float(m.group(1)), float(m.group(2)))
        else:
            m = re.match(r"\s*([\d.]+)%\s+(\d+)\s+\[.\]\s+(\S+)", line)
            if m:
                rows[m.group(3)] = int(m.group(2))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--freq", type=float, required=True)
    ap.add_argument("--packets", type=int, required=True)
    ap.add_argument("--mode", required=True)
    ap.add_argument("--cycle", type=int, required=True)
    a = ap.parse_args()
    if a.packets <= 0:
        sys.exit(f"profile: no packets forwarded while sampling {a.mode}")
    self_samples = report(a.data, children=False)
    total = sum(self_samples.values())
    if total == 0:
        sys.exit(f"profile: no samples in {a.data}")
    idle = sum(n for s, n in self_samples.items() if s in IDLE)
    inclusive = report(a.data, children=True)
    ns = 1e9 / a.freq / a.packets  # ns per packet of one sample

    def self_of(pred):
        return sum(n for s, n in self_samples.items() if pred(s)) * ns

    def children_of(sym):
        return inclusive.get(sym, (0.0, 0.0))[0] / 100 * total * ns

    parts = dict(
        program=self_of(lambda s: s.startswith("bpf_prog_")),
        dispatch=self_of(lambda s: s == "tc_run" or s.startswith("__netif_receive_skb_core")),
        pull=children_of("bpf_skb_pull_data"),
        release=children_of("skb_release_data"),
        ip_rcv=children_of("ip_rcv"),
    )
    print(json.dumps(dict(phase="profile", mode=a.mode, cycle=a.cycle, packets=a.packets, samples=total,
                          idle_samples=idle, freq=a.freq, ns_per_packet=(total - idle) * ns,
                          parts_ns={k: round(v, 2) for k, v in parts.items()})))


if __name__ == "__main__":
    main()
