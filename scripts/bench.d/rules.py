#!/usr/bin/env python3
"""The rule shapes of the throughput matrix, written once for all three mirrors.

    rules.py agent SHAPE N MATCHING            the agent's document (JSON)
    rules.py u32 SHAPE N MATCHING TAP DEV      a `tc -batch` file: u32 + mirred to DEV
    rules.py nft SHAPE N MATCHING TAP DEV      an `nft -f` file: netdev ingress, dup to DEV

N rules that differ only in the shape's field, in priority order. With MATCHING=1
the last one matches the bench's traffic (the VM's UDP to the peer's port 5001, from
source ports 10000-10999), with 0 none does. The three renderings of one shape match
exactly the same packets: the same fields, compared the same way (u32 and nft read
the fixed IPv4/IPv6 header fields; the bench's frames carry no IP options and no
extension headers).

Shapes (the non-matching values all lie in documentation/benchmark ranges):
  port   UDP, destination port 6001.. (today's bench; the last: 5001)
  src32  UDP, source 198.18.0.N/32 (the last: the VM, 192.0.2.10/32)
  src24  UDP, source 198.18.N.0/24 (the last: 192.0.2.0/24)
  dst32  UDP, destination 198.19.0.N/32 (the last: the peer, 203.0.113.10/32)
  dst24  UDP, destination 198.19.N.0/24 (the last: 203.0.113.0/24)
  proto  IP protocol 100+N, no address (the last: UDP)
  ipv6   IPv6 UDP, source 2001:db8:ff::N/128 (the last: the VM, 2001:db8:1::10/128)
  all    one rule, every IPv4 packet (the TCP cells: every segment mirrored)
"""
import json
import sys

VM, PEER, VM6 = "192.0.2.10", "203.0.113.10", "2001:db8:1::10"
DPORT = 5001
SHAPES = ("port", "src32", "src24", "dst32", "dst24", "proto", "ipv6", "all")


def rule(shape, i, last):
    """The i-th rule (1-based) as a neutral dict: family, proto (number or None),
    src, dst (CIDR or None), dport (int or None)."""
    r = dict(family="ipv4", proto=17, src=None, dst=None, dport=None)
    if shape == "port":
        r["dport"] = DPORT if last else 6000 + i
    elif shape == "src32":
        r["src"] = f"{VM}/32" if last else f"198.18.0.{i}/32"
    elif shape == "src24":
        r["src"] = "192.0.2.0/24" if last else f"198.18.{i}.0/24"
    elif shape == "dst32":
        r["dst"] = f"{PEER}/32" if last else f"198.19.0.{i}/32"
    elif shape == "dst24":
        r["dst"] = "203.0.113.0/24" if last else f"198.19.{i}.0/24"
    elif shape == "proto":
        r["proto"] = 17 if last else 100 + i
    elif shape == "ipv6":
        r.update(family="ipv6", src=f"{VM6}/128" if last else f"2001:db8:ff::{i:x}/128")
    elif shape == "all":
        r["proto"] = None
    else:
        raise SystemExit(f"rules.py: unknown shape {shape!r} (known: {', '.join(SHAPES)})")
    return r


def rules(shape, n, matching):
    return [rule(shape, i, matching and i == n) for i in range(1, n + 1)]


def agent(rs):
    filters, sessions = [], []
    # SPEC §3: at most 10 outbound rules a filter, so sessions of 10 in order;
    # the last rule is the last session's last.
    for s in range((len(rs) + 9) // 10):
        out = []
        for k, r in enumerate(rs[10 * s:10 * s + 10]):
            a = {"priority": k + 1, "action": "accept", "ethertype": r["family"],
                 "protocol": "all" if r["proto"] is None else ("udp" if r["proto"] == 17 else r["proto"])}
            if r["src"]:
                a["source"] = r["src"]
            if r["dst"]:
                a["destination"] = r["dst"]
            if r["dport"] is not None:
                a["destinationPorts"] = str(r["dport"])
            out.append(a)
        filters.append({"id": f"f{s}", "outbound": out})
        sessions.append({"id": f"s{s}", "priority": s + 1, "filter": f"f{s}", "sources": ["vm"],
                         "target": "collector", "vni": 4242 + s})
    return json.dumps({"filters": filters, "sessions": sessions,
                       "targets": [{"id": "collector", "type": "nic", "address": "198.51.100.2"}],
                       "sources": [{"id": "vm", "interface": "tap-vm1"}]})


def u32(rs, tap, dev):
    lines = []
    for prio, r in enumerate(rs, 1):
        if r["family"] == "ipv6":
            m = f"match ip6 protocol {r['proto']} 0xff"
            m += f" match ip6 src {r['src']}" if r["src"] else ""
            m += f" match ip6 dst {r['dst']}" if r["dst"] else ""
            proto = "ipv6"
        else:
            m = "match u32 0 0" if r["proto"] is None else f"match ip protocol {r['proto']} 0xff"
            m += f" match ip src {r['src']}" if r["src"] else ""
            m += f" match ip dst {r['dst']}" if r["dst"] else ""
            m += f" match ip dport {r['dport']} 0xffff" if r["dport"] is not None else ""
            proto = "ip"
        lines.append(f"filter add dev {tap} ingress protocol {proto} prio {prio} u32 {m} "
                     f"action mirred egress mirror dev {dev}")
    return "\n".join(lines)


def nft(rs, tap, dev):
    out = ["table netdev mirror {", "  chain rx {", f'    type filter hook ingress device "{tap}" priority 0;']
    for r in rs:
        if r["family"] == "ipv6":
            m = f"ip6 nexthdr {r['proto']}"
            m += f" ip6 saddr {r['src']}" if r["src"] else ""
            m += f" ip6 daddr {r['dst']}" if r["dst"] else ""
        else:
            m = "meta protocol ip" if r["proto"] is None else f"ip protocol {r['proto']}"
            m += f" ip saddr {r['src']}" if r["src"] else ""
            m += f" ip daddr {r['dst']}" if r["dst"] else ""
            m += f" udp dport {r['dport']}" if r["dport"] is not None else ""
        out.append(f'    {m} dup to "{dev}"')
    out += ["  }", "}"]
    return "\n".join(out)


def main(argv):
    if len(argv) < 4 or argv[0] not in ("agent", "u32", "nft"):
        raise SystemExit(__doc__)
    kind, shape, n, matching = argv[0], argv[1], int(argv[2]), argv[3] == "1"
    rs = rules(shape, n, matching)
    print(agent(rs) if kind == "agent" else (u32 if kind == "u32" else nft)(rs, argv[4], argv[5]))


if __name__ == "__main__":
    main(sys.argv[1:])
