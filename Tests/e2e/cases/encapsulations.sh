# Target `encapsulation` (SPEC §11): the same traffic mirrored as VXLAN, GENEVE and
# ERSPAN type II, each decoded by tshark: every copy with its inner 5-tuple, the
# session's VNI (vxlan, geneve) or ERSPAN session ID with consecutive GRE sequence
# numbers per session; the UDP source port carries the inner flow's entropy (one
# port per flow, both directions); a frame too large for the underlay's 1000-byte
# MTU is cut to exactly fill it (SPEC §6: 50 bytes of overhead for every kind, and
# ERSPAN's truncated bit set); and stage 2's sent count is what arrived.
source "$(dirname "$0")/../lib.sh"
topo_up
# The path MTU the copies must fit (set before the agent compiles its first policy).
in_ns "$NS_HOST" ip link set underlay0 mtu 1000
in_ns "$NS_COL" ip link set eth0 mtu 1000
in_ns "$NS_COL" nft add rule inet collector input udp dport 6081 drop
in_ns "$NS_COL" nft add rule inet collector input ip protocol gre drop
agent_start
host_tap=$(mac_of "$NS_HOST" tap-vm1); host_peer=$(mac_of "$NS_HOST" peer0)

for kind in vxlan geneve erspan; do
  python3 - "$TOPO_DIR/$kind.json" "$kind" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
d["targets"][0]["encapsulation"] = sys.argv[2]
json.dump(d, open(sys.argv[1], "w"))
PY
  ctl apply -f "$TOPO_DIR/$kind.json" >/dev/null
  ctl stats -o json > "$TOPO_DIR/$kind-before.json"
  capture "$NS_COL" eth0 "$kind" udp port 4789 or udp port 6081 or ip proto 47
  # 8 UDP flows, 3 packets each way, accepted by session `audit` (VNI 200); one
  # 1200-byte TCP packet to port 80 from 203.0.113.10:10000, accepted by `ids` (VNI 100).
  python3 -c '
import json
for p in range(30000, 30008):
    print(json.dumps({"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":p,"dport":5001,"payload":20,"count":3}))
' | send_frames "$NS_VM" eth0 "$host_tap"
  python3 -c '
import json
for p in range(30000, 30008):
    print(json.dumps({"family":4,"proto":"udp","src":"203.0.113.10","dst":"192.0.2.10","sport":5001,"dport":p,"payload":20,"count":3}))
print(json.dumps({"family":4,"proto":"tcp","src":"203.0.113.10","dst":"192.0.2.10","sport":10000,"dport":80,"payload":1200,"count":1}))
' | send_frames "$NS_PEER" eth0 "$host_peer"
  capture_stop "$kind"
  ctl stats -o json > "$TOPO_DIR/$kind-after.json"
  python3 - "$kind" "$TOPO_DIR" <<'PY'
import collections, json, subprocess, sys
kind, d = sys.argv[1], sys.argv[2]
pcap = f"{d}/{kind}.pcap"
ident = {"vxlan": "vxlan.vni", "geneve": "geneve.vni", "erspan": "erspan.spanid"}[kind]
# Outer fields are the first occurrence, inner ones the last.
fields = ["frame.protocols", "ip.len", "udp.srcport", "udp.dstport", "gre.sequence_number", "erspan.truncated", ident,
          "ip.src", "ip.dst", "ip.proto", "tcp.srcport", "tcp.dstport"]
args = ["tshark", "-r", pcap, "-T", "fields", "-E", "separator=\t"]
for i, f in enumerate(fields):
    args += ["-e", f]
out = subprocess.run(args + ["-E", "occurrence=a"], capture_output=True, text=True, check=True).stdout
rows = []
for line in out.splitlines():
    c = line.split("\t")
    first = lambda s: s.split(",")[0]
    # The inner IP header is the second occurrence (an ICMP error quotes a third);
    # the inner UDP header the second with a UDP outer header, else the first.
    inner = lambda s, i=1: (s.split(",") + [""] * 3)[i]
    r = {"protos": c[0], "outer_len": int(first(c[1])), "ident": int(first(c[6]), 0) if c[6] else None,
         "seq": int(c[4]) if c[4] else None, "truncated": c[5],
         "src": inner(c[7]), "dst": inner(c[8]), "proto": int(inner(c[9]))}
    u = 0 if kind == "erspan" else 1
    r["outer_sport"] = int(first(c[2])) if kind != "erspan" else None
    r["outer_dport"] = int(first(c[3])) if kind != "erspan" else None
    if r["proto"] == 17:
        r["sport"], r["dport"] = int(inner(c[2], u)), int(inner(c[3], u))
    elif r["proto"] == 6:
        r["sport"], r["dport"] = int(first(c[10])), int(first(c[11]))
    else:
        r["sport"] = r["dport"] = None
    rows.append(r)
want_stack = {"vxlan": "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip", "geneve": "eth:ethertype:ip:udp:geneve:eth:ethertype:ip",
              "erspan": "eth:ethertype:ip:gre:erspan:eth:ethertype:ip"}[kind]
bad = [r["protos"] for r in rows if not r["protos"].startswith(want_stack)]
assert rows and not bad, f"{kind}: tshark does not decode every copy as {want_stack}: {bad[:3]}"
udp = [r for r in rows if r["proto"] == 17]
tcp = [r for r in rows if r["proto"] == 6]
seen = collections.Counter((r["src"], r["sport"], r["dst"], r["dport"]) for r in udp)
want = collections.Counter()
for p in range(30000, 30008):
    want[("192.0.2.10", p, "203.0.113.10", 5001)] = 3
    want[("203.0.113.10", 5001, "192.0.2.10", p)] = 3
print(f"{kind}: {len(rows)} copies ({len(udp)} UDP, {len(tcp)} TCP), identifiers {dict(collections.Counter(r['ident'] for r in rows))}")
assert seen == want, f"{kind}: inner UDP 5-tuples differ: missing {want - seen}, extra {seen - want}"
assert all(r["ident"] == 200 for r in udp), f"{kind}: UDP copies must carry 200: {[r['ident'] for r in udp][:5]}"
# The TCP packet (session ids) and the VM's reset (outbound: session audit).
tcp = [r for r in tcp if r["ident"] == 100]
assert len(tcp) == 1 and tcp[0]["sport"] == 10000 and tcp[0]["dport"] == 80, f"{kind}: the TCP copy: {tcp}"
# SPEC §6: the 1200-byte frame is cut so that the copy fills the 1000-byte MTU exactly.
assert tcp[0]["outer_len"] == 1000, f"{kind}: the truncated copy's outer IP length is {tcp[0]['outer_len']}, want 1000"
assert all(r["outer_len"] < 1000 for r in udp)
if kind == "erspan":
    assert tcp[0]["truncated"] in ("1", "True"), f"erspan: truncated bit of the cut copy is {tcp[0]['truncated']!r}"
    assert all(r["truncated"] in ("0", "False") for r in udp)
    # One sequence per session, consecutive in the order they arrived (one sender at a time).
    s = [r["seq"] for r in rows if r["ident"] == 200]
    assert s == list(range(s[0], s[0] + len(s))), f"erspan: GRE sequence numbers of session audit (UDP copies and the ICMP errors) are not consecutive: {s}"
else:
    port = 4789 if kind == "vxlan" else 6081
    assert all(r["outer_dport"] == port for r in rows), f"{kind}: outer UDP destination port must be {port}"
    # Entropy: one source port per flow (both directions), and not one for all.
    per_flow = collections.defaultdict(set)
    for r in udp:
        per_flow[tuple(sorted([(r["src"], r["sport"]), (r["dst"], r["dport"])]))].add(r["outer_sport"])
    assert all(len(v) == 1 for v in per_flow.values()), f"{kind}: a flow's copies have several source ports"
    assert len({next(iter(v)) for v in per_flow.values()}) > 1, f"{kind}: every flow has the same source port"
def sent(f):
    st = json.load(open(f))
    return sum(s["copiesSent"] for s in st["sessions"]), {k: v for s in st["sessions"] for k, v in s["dropped"].items() if v}
before, _ = sent(f"{d}/{kind}-before.json")
after, dropped = sent(f"{d}/{kind}-after.json")
# ICMP errors about the closed UDP ports are mirrored too: everything counts.
assert after - before == len(rows), f"{kind}: stage 2 counted {after - before} copies sent, the collector got {len(rows)}"
assert not dropped, f"{kind}: dropped {dropped}"
PY
done
