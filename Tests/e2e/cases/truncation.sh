# SPEC §6: packetLength 128 cuts every copy of a 1400-byte packet to a 128-byte
# inner frame; with the collector's path MTU lowered, no copy exceeds it and
# oversize copies are truncated to fit, not dropped.
source "$(dirname "$0")/../lib.sh"
topo_up
agent_start
python3 - "$TOPO_DIR/doc.json" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
for s in d["sessions"]:
    if s["id"] == "audit":
        s["packetLength"] = 128
json.dump(d, open(sys.argv[1], "w"))
PY
ctl apply -f "$TOPO_DIR/doc.json"
host_tap=$(mac_of "$NS_HOST" tap-vm1)
capture "$NS_COL" eth0 col udp port 4789
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":1358,"count":20}' \
  | send_frames "$NS_VM" eth0 "$host_tap"
capture_stop col
python3 - "$TOPO_DIR/col.pcap" <<'PY'
import sys; sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
# The peer's ICMP answers are mirrored (and cut) too: look at the UDP copies.
c = [x for x in vd.copies(sys.argv[1]) if x["vni"] == 200 and x["inner_proto"] == 17]
lens = sorted({x["inner_len"] for x in c})
print(f"packetLength: {len(c)} copies, inner lengths {lens}")
assert len(c) == 20, f"expected 20 copies, got {len(c)}"
assert lens == [128], f"expected every inner frame to be 128 bytes, got {lens}"
PY

# Path MTU: the underlay toward the collector drops to 1000 bytes.
in_ns "$NS_HOST" ip link set underlay0 mtu 1000
in_ns "$NS_COL" ip link set eth0 mtu 1000
ctl apply -f examples/demo.json   # no packetLength: only the MTU rule applies
sleep 1
capture "$NS_COL" eth0 col2 udp port 4789
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":1358,"count":20}' \
  | send_frames "$NS_VM" eth0 "$host_tap"
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":100,"count":5}' \
  | send_frames "$NS_VM" eth0 "$host_tap"
capture_stop col2
python3 - "$TOPO_DIR/col2.pcap" <<'PY'
import sys; sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
c = [x for x in vd.copies(sys.argv[1]) if x["vni"] == 200 and x["inner_proto"] == 17]
big = [x for x in c if x["inner_len"] > 200]
small = [x for x in c if x["inner_len"] <= 200]
print(f"mtu 1000: {len(c)} copies; outer lengths {sorted({x['outer_len'] for x in c})}, inner {sorted({x['inner_len'] for x in c})}")
assert len(big) == 20, f"expected 20 truncated copies of the 1400-byte packets, got {len(big)}"
assert all(x["outer_len"] <= 1000 for x in c), "a copy exceeds the path MTU"
# SPEC §6: the 50 bytes of overhead count the inner Ethernet header, so the inner
# frame (Ethernet included) may be MTU - 50 + 14 = 964 bytes: outer IP length 1000.
assert all(x["inner_len"] == 964 for x in big), f"oversize copies must be cut to exactly MTU - 36, got {sorted({x['inner_len'] for x in big})}"
assert len(small) == 5 and all(x["inner_len"] == 142 for x in small), "small packets must be whole"
PY
