#!/usr/bin/env python3
"""Compare what the collector received with what the spec says should arrive.

Expected: every frame captured on the VM's interface (both directions), each run
through the oracle (`agentctl explain`, offline, on the same document): mirrored
ones must arrive once, with their session's VNI and the exact frame bytes.
Actual: the collector's capture, read by the project's decoder (vxlan_decode.py)
and, independently, by tshark. Prints a table and exits 1 on any difference.
"""
import argparse, collections, json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vxlan_decode as vd  # noqa: E402


def endpoint(addr, port, family):
    if port is None:
        return addr
    return f"[{addr}]:{port}" if family == "ipv6" else f"{addr}:{port}"


def explain(agentctl, doc, source, direction, frame, cache):
    t = vd.ip_tuple(frame)
    args = [agentctl, "explain", "-f", doc, "--source", source, "--direction", direction, "-o", "json"]
    if t["ethertype"] not in ("ipv4", "ipv6") or t["src"] is None:
        args.append("--non-ip")
    else:
        later = False
        et, off = vd.l3(frame)
        if et == 0x0800:
            later = (int.from_bytes(frame[off + 6:off + 8], "big") & 0x1FFF) != 0
        proto = t["proto"]
        args += ["--protocol", str(proto) if proto is not None else "all",
                 "--src", endpoint(t["src"], t["sport"], t["ethertype"]),
                 "--dst", endpoint(t["dst"], t["dport"], t["ethertype"])]
        if later:
            args += ["--fragment", "later"]
    key = tuple(args)
    if key not in cache:
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"explain failed ({r.returncode}): {' '.join(args)}\n{r.stdout}{r.stderr}")
        cache[key] = json.loads(r.stdout)
    return t, cache[key]


def tshark_copies(pcap):
    """(vni, inner src, inner dst, inner sport, inner dport) per copy, as tshark reads it.

    Fields repeat per layer in order: outer IPv4, inner IP, and (in ICMP errors) the
    quoted packet. Ports count only when the inner packet itself is TCP or UDP.
    """
    fields = ["vxlan.vni", "ip.src", "ip.dst", "ip.proto", "ipv6.src", "ipv6.dst", "ipv6.nxt",
              "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport"]
    cmd = ["tshark", "-r", pcap, "-d", "udp.port==4789,vxlan", "-Y", "vxlan", "-T", "fields", "-E", "occurrence=a"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        v = [x.split(",") if x else [] for x in line.split("\t")]
        vni, ip_src, ip_dst, ip_proto, v6_src, v6_dst, v6_nxt, tsp, tdp, usp, udp_ = v
        if len(ip_src) > 1:          # inner IPv4 (after the outer IPv4)
            src, dst, proto = ip_src[1], ip_dst[1], int(ip_proto[1])
        elif v6_src:                 # inner IPv6
            src, dst, proto = v6_src[0], v6_dst[0], (int(v6_nxt[0]) if v6_nxt else None)
        else:
            src = dst = proto = None
        sport = dport = None
        if proto == 6 and tsp:
            sport, dport = int(tsp[0]), int(tdp[0])
        elif proto == 17 and len(usp) > 1:  # udp[0] is the outer VXLAN UDP
            sport, dport = int(usp[1]), int(udp_[1])
        rows.append((int(vni[0]), src, dst, sport, dport))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--doc", required=True)
    ap.add_argument("--source", required=True, help="source id whose interface the VM pcap was taken on")
    ap.add_argument("--vm-mac", required=True, help="the VM's MAC: frames from it are outbound")
    ap.add_argument("--vm-pcap", required=True)
    ap.add_argument("--col-pcap", required=True)
    ap.add_argument("--agentctl", required=True)
    ap.add_argument("--vnis", required=True, help='JSON object session id -> vni')
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    vnis = json.loads(a.vnis)
    vm_mac = bytes.fromhex(a.vm_mac.replace(":", ""))

    cache = {}
    expected = collections.Counter()
    rows = []
    for linktype, fr, _ in vd.pcap_packets(a.vm_pcap):
        if vd.kernel_chatter(fr):
            continue
        direction = "outbound" if fr[6:12] == vm_mac else "inbound"
        t, d = explain(a.agentctl, a.doc, a.source, direction, fr, cache)
        vni = vnis[d["session"]] if d["mirrored"] else None
        if vni is not None:
            expected[(vni, fr.hex())] += 1
        rows.append((direction, t, d, vni, fr.hex()))

    copies = [c for c in vd.copies(a.col_pcap) if not vd.kernel_chatter(bytes.fromhex(c["inner_hex"]))]
    actual = collections.Counter((c["vni"], c["inner_hex"]) for c in copies)
    ok = True
    print(f"{'dir':8} {'packet':58} {'expected':22} {'collector':10}")
    for direction, t, d, vni, hx in rows:
        desc = f"{t['ethertype'] or 'non-IP'} {t['proto']} {endpoint(t['src'], t['sport'], t['ethertype'])} > " \
               f"{endpoint(t['dst'], t['dport'], t['ethertype'])}"
        exp = f"vni {vni} ({d['session']})" if vni is not None else f"- ({d['reason']})"
        got = actual.get((vni, hx), 0) if vni is not None else sum(n for (v, h), n in actual.items() if h == hx)
        seen = f"vni {vni} x{got}" if vni is not None and got else ("-" if not got else f"x{got} UNEXPECTED")
        if not a.quiet:
            print(f"{direction:8} {desc[:58]:58} {exp:22} {seen}")
    missing = expected - actual
    extra = actual - expected
    for (v, h), n in missing.items():
        ok = False
        print(f"MISSING: {n} copy/copies with vni {v}: {h[:120]}")
    for (v, h), n in extra.items():
        ok = False
        t = vd.ip_tuple(bytes.fromhex(h))
        print(f"EXTRA: {n} copy/copies with vni {v}: {t}")
    for c in copies:
        if not c["i_flag"]:
            ok = False
            print(f"BAD VXLAN: I flag not set: {c}")

    # The independent decoder must read the same copies.
    mine = collections.Counter((c["vni"], c["inner_src"], c["inner_dst"],
                                c["inner_sport"] if c["inner_proto"] in (6, 17) else None,
                                c["inner_dport"] if c["inner_proto"] in (6, 17) else None)
                               for c in copies)
    theirs = collections.Counter(tshark_copies(a.col_pcap))
    if mine != theirs:
        ok = False
        print(f"DECODERS DISAGREE: ours-only {dict(mine - theirs)} tshark-only {dict(theirs - mine)}")
    print(f"copies: expected {sum(expected.values())}, received {len(copies)}, "
          f"tshark read {sum(theirs.values())}: {'OK' if ok else 'MISMATCH'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
