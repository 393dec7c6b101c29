# SPEC §6 and §11: GSO copies of every kind leave from stage 2 itself, one copy per
# wire segment (vxlan ones too: the VXLAN device mirror0 sends none of them, its tx
# counter stays 0). A TCP bulk transfer (iperf3, offloads on) mirrored as VXLAN and
# GENEVE with the VM's MTU 1400 (its segments fit: each super-packet is
# encapsulated once and the underlay cuts it into wire segments, no segmenter) and
# as ERSPAN with MTU 1500 (each segment cut to fit the underlay: the segmenter):
# every copy decoded by tshark as its kind, none above the underlay MTU, the
# stream covered without a hole, and what stage 2 counted as sent is what arrived.
source "$(dirname "$0")/../lib.sh"
topo_up
in_ns "$NS_HOST" ethtool -K underlay0 tso off gso off >/dev/null 2>&1 || true
in_ns "$NS_COL" nft add rule inet collector input udp dport 6081 drop
in_ns "$NS_COL" nft add rule inet collector input ip protocol gre drop
agent_start

bulk() {
  local kind=$1 mtu=$2
  python3 - "$TOPO_DIR/$kind.json" "$kind" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
d["targets"][0]["encapsulation"] = sys.argv[2]
d["filters"] = [{"id": "tcp", "inbound": [{"priority": 1, "action": "accept", "ethertype": "ipv4", "protocol": "tcp"}],
                 "outbound": [{"priority": 1, "action": "accept", "ethertype": "ipv4", "protocol": "tcp"}]}]
d["sessions"] = [{"id": "bulk", "priority": 1, "filter": "tcp", "sources": ["vm1"], "target": "collector", "vni": 700}]
json.dump(d, open(sys.argv[1], "w"))
PY
  ctl apply -f "$TOPO_DIR/$kind.json" >/dev/null
  in_ns "$NS_VM" ip link set eth0 mtu "$mtu"
  in_ns "$NS_HOST" ip link set tap-vm1 mtu "$mtu"
  ip netns exec "$NS_PEER" iperf3 -s -1 -B "$PEER_IP" >"$TOPO_DIR/iperf3-$kind.log" 2>&1 &
  echo $! > "$TOPO_DIR/iperf3-server.pid"
  for _ in $(seq 1 50); do in_ns "$NS_PEER" ss -ltn | grep -q ":5201 " && break; sleep 0.1; done
  ctl stats -o json > "$TOPO_DIR/$kind-before.json"
  in_ns "$NS_HOST" cat /sys/class/net/mirror0/statistics/tx_packets > "$TOPO_DIR/$kind-device-before"
  capture "$NS_COL" eth0 "$kind" udp port 4789 or udp port 6081 or ip proto 47
  in_ns "$NS_VM" iperf3 -c "$PEER_IP" -n 4M -J > "$TOPO_DIR/$kind-iperf.json"
  capture_stop "$kind"
  ctl stats -o json > "$TOPO_DIR/$kind-after.json"
  in_ns "$NS_HOST" cat /sys/class/net/mirror0/statistics/tx_packets > "$TOPO_DIR/$kind-device-after"
  python3 - "$kind" "$TOPO_DIR" <<'PY'
import collections, json, subprocess, sys
kind, d = sys.argv[1], sys.argv[2]
received = json.load(open(f"{d}/{kind}-iperf.json"))["end"]["sum_received"]["bytes"]
out = subprocess.run(["tshark", "-r", f"{d}/{kind}.pcap", "-T", "fields", "-E", "occurrence=a",
                      "-e", "frame.protocols", "-e", "ip.len", "-e", "ip.src", "-e", "tcp.srcport", "-e", "tcp.dstport",
                      "-e", "tcp.seq_raw", "-e", "tcp.hdr_len", "-e", "tcp.flags.syn"],
                     capture_output=True, text=True, check=True).stdout.splitlines()
rows = [l.split("\t") for l in out]
# A cut copy's inner IP header is whole: its total length is the wire segment's
# (tshark's tcp.len counts only the bytes the copy kept).
for r in rows:
    r[6] = str(int(r[1].split(",")[1]) - 20 - int(r[6]))
l4 = {"vxlan": "udp:vxlan", "geneve": "udp:geneve", "erspan": "gre:erspan"}[kind]
wrong = [r[0] for r in rows if not r[0].startswith(f"eth:ethertype:ip:{l4}:eth:ethertype:ip:tcp")]
outer = [int(r[1].split(",")[0]) for r in rows]
print(f"{kind}: {len(rows)} copies, outer IP lengths {min(outer)}..{max(outer)}")
assert rows and not wrong, f"{kind}: not decoded as {l4}: {wrong[:3]}"
assert max(outer) <= 1500, f"{kind}: a copy of {max(outer)} bytes exceeds the underlay MTU"
# The VM's bulk stream (to port 5201 from the port that sent most data): no hole from the SYN on.
data = [r for r in rows if r[4] == "5201" and r[2].split(",")[1] == "192.0.2.10"]
port = collections.Counter(r[3] for r in data if int(r[6]) > 0).most_common(1)[0][0]
mine = [r for r in data if r[3] == port]
isn = next(int(r[5]) for r in mine if r[7] in ("1", "True"))
covered, holes = 0, []
for start, n in sorted(((int(r[5]) - isn - 1) & 0xFFFFFFFF, int(r[6])) for r in mine if int(r[6]) > 0):
    if start > covered: holes.append((covered, start))
    covered = max(covered, start + n)
print(f"{kind}: stream covered to byte {covered}, {len(holes)} holes, server read {received}")
assert not holes and covered >= received, f"{kind}: segments missing among the copies: {holes[:5]}"
def counts(f):
    st = json.load(open(f))["sessions"]
    return sum(s["copiesSent"] for s in st), sum(s["copiesSegmented"] for s in st), \
        {k: v for s in st for k, v in s["dropped"].items() if v}, sum(s["copiesSentDevice"] for s in st)
(s0, g0, _, v0), (s1, g1, dropped, v1) = counts(f"{d}/{kind}-before.json"), counts(f"{d}/{kind}-after.json")
device = int(open(f"{d}/{kind}-device-after").read()) - int(open(f"{d}/{kind}-device-before").read())
print(f"{kind}: stage 2 sent {s1 - s0}, segmented {g1 - g0} GSO copies, dropped {dropped}, "
      f"{v1 - v0} handed to mirror0, mirror0 sent {device}")
if kind == "erspan":
    assert g1 > g0, f"{kind}: no GSO copy went to the segmenter, yet every segment must be cut"
else:
    assert g1 == g0, f"{kind}: {g1 - g0} GSO copies went to the segmenter, yet their wire segments fit"
assert s1 - s0 == len(rows) and not dropped, f"{kind}: stage 2 counted {s1 - s0} sent, {len(rows)} arrived"
assert v1 == v0 and device == 0, f"{kind}: copies went through the VXLAN device ({v1 - v0} counted, {device} sent by it)"
PY
}
bulk vxlan 1400
bulk geneve 1400
bulk erspan 1500
