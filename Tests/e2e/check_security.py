#!/usr/bin/env python3
"""End-to-end check: with nftables enforcement on, the copies at the
collector are exactly the packets that enforcement let through and that the
sessions accept.

What got through, per direction, from captures (not from the agent):
  inbound  = frames captured on the VM's interface addressed to the VM (the VM
             received them, so enforcement let them through);
  outbound = frames the VM sent that also reached the peer (matched on the IP
             addresses, protocol, IPv4 id and the whole L4 segment: forwarding only
             changes MACs, TTL/hop limit, the IPv4 checksum and, for IPv6
             fragments that conntrack reassembled, the fragment identification).
Whether the sessions accept a packet that got through: the oracle (`agentctl
explain` offline on the same document) with --established, because the security
groups already let it through; the network ACL is still evaluated by it (it is
stateless) and must agree with what nftables did.

Expected copies: (vni, frame as the VM saw it) for each of those; actual: the
collector capture, decoded by vxlan_decode.py. Prints a summary per category and
exits 1 on any missing or extra copy.
"""
import argparse, collections, json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vxlan_decode as vd  # noqa: E402
from check_copies import endpoint  # noqa: E402


def l3_key(frame):
    """Addresses, protocol, IPv4 id and the L4 bytes: what forwarding keeps."""
    et, off = vd.l3(frame)
    if et == 0x0800:
        ihl = (frame[off] & 0x0F) * 4
        return (4, frame[off + 12:off + 20], frame[off + 9], frame[off + 4:off + 6], frame[off + ihl:])
    if et == 0x86DD:
        rest = frame[off + 40:]
        if frame[off + 6] == 44 and len(rest) >= 8:
            # Conntrack reassembles IPv6 fragments and the forwarded datagram is cut
            # again with a new identification: match without it.
            rest = rest[:4] + rest[8:]
        return (6, frame[off + 8:off + 40], frame[off + 6], b"", rest)
    return None


def fragment(frame):
    """None (whole packet), "first" or "later" (IPv4 flags/offset, IPv6 fragment header)."""
    et, off = vd.l3(frame)
    if et == 0x0800 and len(frame) >= off + 20:
        fo = int.from_bytes(frame[off + 6:off + 8], "big")
        return "later" if fo & 0x1FFF else ("first" if fo & 0x2000 else None)
    if et == 0x86DD and len(frame) >= off + 48 and frame[off + 6] == 44:
        return "later" if int.from_bytes(frame[off + 42:off + 44], "big") >> 3 else "first"
    return None


def explain(agentctl, doc, source, direction, frame, cache):
    t = vd.ip_tuple(frame)
    if t["ethertype"] not in ("ipv4", "ipv6"):
        return t, {"mirrored": False, "reason": "not_ip", "session": None}
    proto = t["proto"]
    args = [agentctl, "explain", "-f", doc, "--source", source, "--direction", direction, "-o", "json",
            "--established", "--protocol", str(proto),
            "--src", endpoint(t["src"], t["sport"], t["ethertype"]),
            "--dst", endpoint(t["dst"], t["dport"], t["ethertype"])]
    if fragment(frame) == "later":
        args += ["--fragment", "later"]
    key = tuple(args)
    if key not in cache:
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"explain failed ({r.returncode}): {' '.join(args)}\n{r.stdout}{r.stderr}")
        cache[key] = json.loads(r.stdout)
    return t, cache[key]


def category(direction, t, frame):
    """A label for the summary: direction, family, protocol, the service port."""
    et, off = vd.l3(frame)
    if fragment(frame):
        return f"{direction:8} {t['ethertype']} {t['proto']} fragment ({fragment(frame)})"
    flags = ""
    if t["proto"] == 6:
        l4 = off + ((frame[off] & 0x0F) * 4 if et == 0x0800 else 40)
        f = frame[l4 + 13]
        flags = " " + "".join(n for b, n in ((0x02, "S"), (0x10, "A"), (0x04, "R"), (0x01, "F")) if f & b)
    ports = f" {t['sport']}>{t['dport']}" if t["sport"] is not None else ""
    if t["proto"] in (1, 58):
        l4 = off + ((frame[off] & 0x0F) * 4 if et == 0x0800 else 40)
        ports = f" type {frame[l4]}" if len(frame) > l4 else ""
    return f"{direction:8} {t['ethertype']} {t['proto']}{flags}{ports if t['proto'] != 6 else ''}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--doc", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--vm-mac", required=True)
    ap.add_argument("--vm-pcap", required=True)
    ap.add_argument("--peer-pcap", required=True)
    ap.add_argument("--col-pcap", required=True)
    ap.add_argument("--agentctl", required=True)
    ap.add_argument("--vnis", required=True)
    ap.add_argument("--summary", help="write counts as JSON here")
    a = ap.parse_args()
    vnis = json.loads(a.vnis)
    vm_mac = bytes.fromhex(a.vm_mac.replace(":", ""))

    at_peer = collections.Counter(l3_key(fr) for _, fr, _ in vd.pcap_packets(a.peer_pcap))
    cache = {}
    expected = collections.Counter()
    stats = collections.Counter()
    seen_vm = 0
    for _, fr, _ in vd.pcap_packets(a.vm_pcap):
        if vd.kernel_chatter(fr):
            continue
        seen_vm += 1
        outbound = fr[6:12] == vm_mac
        direction = "outbound" if outbound else "inbound"
        t, d = explain(a.agentctl, a.doc, a.source, direction, fr, cache)
        cat = category(direction, t, fr)
        if outbound:
            k = l3_key(fr)
            if at_peer[k] > 0:
                at_peer[k] -= 1
            else:
                stats[(cat, "dropped by enforcement")] += 1
                continue
        stats[(cat, "through")] += 1
        if d["mirrored"]:
            expected[(vnis[d["session"]], fr.hex())] += 1
            stats[(cat, "expected copy")] += 1
        else:
            stats[(cat, "not mirrored: " + d["reason"])] += 1

    copies = [c for c in vd.copies(a.col_pcap) if not vd.kernel_chatter(bytes.fromhex(c["inner_hex"]))]
    actual = collections.Counter((c["vni"], c["inner_hex"]) for c in copies)
    for c in copies:
        stats[(category("copy", vd.ip_tuple(bytes.fromhex(c["inner_hex"])), bytes.fromhex(c["inner_hex"])), "received")] += 1
    ok = True
    for (cat, what), n in sorted(stats.items()):
        print(f"{cat:40} {what:40} {n}")
    missing, extra = expected - actual, actual - expected
    for (v, h), n in missing.items():
        ok = False
        print(f"MISSING: {n} copy/copies with vni {v}: {vd.ip_tuple(bytes.fromhex(h))} {h[:120]}")
    for (v, h), n in extra.items():
        ok = False
        print(f"EXTRA: {n} copy/copies with vni {v}: {vd.ip_tuple(bytes.fromhex(h))} {h[:120]}")
    print(f"vm capture {seen_vm} frames; copies expected {sum(expected.values())}, received {len(copies)}: "
          f"{'OK' if ok else 'MISMATCH'}")
    if a.summary:
        with open(a.summary, "w") as f:
            json.dump({f"{c}|{w}": n for (c, w), n in stats.items()} | {"vm_frames": seen_vm, "copies": len(copies),
                                                                         "expected": sum(expected.values())}, f)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
