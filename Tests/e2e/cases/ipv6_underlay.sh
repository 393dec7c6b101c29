# An IPv6-only underlay (SPEC §11): a nic target at an IPv6 address on an on-link
# /64, no static neighbour entry (flushed before each apply: the agent's managed
# entry gets the next hop resolved while the apply waits for it, so the first
# copies are not lost). For each encapsulation every copy arrives
# over IPv6, straight from stage 2 (copiesSentDirect = copiesSent), decoded by
# tshark with its identifier and a valid UDP checksum (RFC 6935: IPv6 receivers
# drop a zero one), and a frame too large for the 1300-byte MTU (IPv6 needs 1280) is cut to fill it
# with the IPv6 overhead (70 bytes). Then a collector with no route: its copies
# are counted as dropped (no_route), never as sent.
source "$(dirname "$0")/../lib.sh"
topo_up
for ns_dev in "$NS_HOST underlay0" "$NS_COL eth0"; do
  set -- $ns_dev
  in_ns "$1" ip -4 addr flush dev "$2"
  in_ns "$1" ip link set "$2" mtu 1300
done
in_ns "$NS_HOST" ip -6 addr add 2001:db8:2::1/64 dev underlay0 nodad
# The agent's managed neighbour entry is resolved by the kernel with no packet
# waiting, so its solicitations come from a link-local address (the topology has
# none: addr_gen_mode=1; every real IPv6 interface has one).
in_ns "$NS_HOST" ip -6 addr add fe80::1/64 dev underlay0 nodad
in_ns "$NS_COL" ip -6 addr add 2001:db8:2::2/64 dev eth0 nodad
in_ns "$NS_COL" nft add rule inet collector input udp dport 6081 drop
in_ns "$NS_COL" nft add rule inet collector input meta l4proto gre drop
agent_start
host_tap=$(mac_of "$NS_HOST" tap-vm1); host_peer=$(mac_of "$NS_HOST" peer0)

for kind in vxlan geneve erspan; do
  in_ns "$NS_HOST" ip -6 neigh flush dev underlay0
  python3 - "$TOPO_DIR/$kind.json" "$kind" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
d["targets"] = [{"id": "collector", "type": "nic", "address": "2001:db8:2::2", "encapsulation": sys.argv[2]}]
json.dump(d, open(sys.argv[1], "w"))
PY
  ctl apply -f "$TOPO_DIR/$kind.json" >/dev/null
  ctl stats -o json > "$TOPO_DIR/$kind-before.json"
  capture "$NS_COL" eth0 "$kind" ip6 and not icmp6
  # 4 IPv4 and 4 IPv6 UDP flows from the VM (session audit, VNI 200), and one
  # 1200-byte TCP packet from the peer to port 80 (session ids, VNI 100).
  python3 -c '
import json
for p in range(31000, 31004):
    print(json.dumps({"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":p,"dport":5001,"payload":20,"count":2}))
    print(json.dumps({"family":6,"proto":"udp","src":"2001:db8:1::10","dst":"2001:db8:3::10","sport":p,"dport":5001,"payload":20,"count":2}))
' | send_frames "$NS_VM" eth0 "$host_tap"
  echo '{"family":4,"proto":"tcp","src":"203.0.113.10","dst":"192.0.2.10","sport":10000,"dport":80,"payload":1200,"count":1}' \
    | send_frames "$NS_PEER" eth0 "$host_peer"
  capture_stop "$kind"
  ctl stats -o json > "$TOPO_DIR/$kind-after.json"
  python3 - "$kind" "$TOPO_DIR" <<'PY'
import collections, json, subprocess, sys
kind, d = sys.argv[1], sys.argv[2]
ident = {"vxlan": "vxlan.vni", "geneve": "geneve.vni", "erspan": "erspan.spanid"}[kind]
out = subprocess.run(["tshark", "-r", f"{d}/{kind}.pcap", "-o", "udp.check_checksum:TRUE", "-T", "fields",
                      "-E", "occurrence=f", "-e", "frame.protocols", "-e", "ipv6.dst", "-e", "ipv6.plen",
                      "-e", "udp.checksum.status", "-e", ident], capture_output=True, text=True, check=True).stdout
rows = [l.split("\t") for l in out.splitlines()]
l4 = "gre:erspan" if kind == "erspan" else f"udp:{kind}"
stack = collections.Counter(r[0].split(":eth:")[0] + ":eth" for r in rows)
print(f"{kind} over IPv6: {len(rows)} copies, outer stacks {dict(stack)}, identifiers {dict(collections.Counter(r[4] for r in rows))}")
assert rows and set(stack) == {f"eth:ethertype:ipv6:{l4}:eth"}, f"{kind}: not every copy is {l4} over IPv6"
assert all(r[1] == "2001:db8:2::2" for r in rows)
if kind != "erspan":
    bad = collections.Counter(r[3] for r in rows if r[3] != "1")  # 1 = Good, 0 = Bad, 2 = Unverified
    assert not bad, f"{kind}: UDP checksum status other than good: {dict(bad)}"
idents = collections.Counter(int(r[4], 0) for r in rows)
assert idents[100] == 1 and set(idents) <= {100, 200} and idents[200] >= 16, f"{kind}: identifiers {dict(idents)}"
big = [r for r in rows if int(r[4], 0) == 100]
# SPEC §6: 1300-byte MTU (IPv6 needs 1280), so the IPv6 payload is 1100 - 40.
assert int(big[0][2]) == 1260, f"{kind}: the cut copy's IPv6 payload length is {big[0][2]}, want 1260"
def counts(f):
    st = json.load(open(f))["sessions"]
    return sum(s["copiesSent"] for s in st), sum(s["copiesSentDirect"] for s in st)
(s0, d0), (s1, d1) = counts(f"{d}/{kind}-before.json"), counts(f"{d}/{kind}-after.json")
assert s1 - s0 == len(rows) and d1 - d0 == len(rows), f"{kind}: sent {s1 - s0}, direct {d1 - d0}, arrived {len(rows)}"
PY
done

# No route toward the collector: nothing leaves, and the counters say so.
python3 - "$TOPO_DIR/noroute.json" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
d["targets"] = [{"id": "collector", "type": "nic", "address": "2001:db8:9::9"}]
json.dump(d, open(sys.argv[1], "w"))
PY
ctl apply -f "$TOPO_DIR/noroute.json" >/dev/null
ctl stats -o json > "$TOPO_DIR/noroute-before.json"
capture "$NS_COL" eth0 noroute ip6 and not icmp6
python3 -c '
import json
print(json.dumps({"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":32000,"dport":5001,"payload":20,"count":5}))
' | send_frames "$NS_VM" eth0 "$host_tap"
capture_stop noroute
ctl stats -o json > "$TOPO_DIR/noroute-after.json"
python3 - "$TOPO_DIR" <<'PY'
import json, subprocess, sys
d = sys.argv[1]
n = len(subprocess.run(["tshark", "-r", f"{d}/noroute.pcap"], capture_output=True, text=True, check=True).stdout.splitlines())
def counts(f):
    st = json.load(open(f))["sessions"]
    return sum(s["copiesSent"] for s in st), sum(s["dropped"].get("no_route", 0) for s in st), \
        sum(s["packets"] for s in st)
(s0, r0, p0), (s1, r1, p1) = counts(f"{d}/noroute-before.json"), counts(f"{d}/noroute-after.json")
print(f"no route: {p1 - p0} packets accepted, {s1 - s0} counted sent, {r1 - r0} dropped no_route, {n} on the wire")
assert n == 0 and s1 == s0, "copies toward a collector without a route counted as sent"
assert r1 - r0 == p1 - p0 >= 5, "each accepted packet is a copy dropped with reason no_route"
PY
