# SPEC §6: a copy is never mirrored again, even when a device the copies cross is
# itself a source with an accept-everything filter. The device the route sends them
# out of cannot be a source (issue 22); here it is a bridge, as on a host whose
# collector VM sits behind the host bridge, and its port underlay0, which every copy
# crosses on its way out, is the loop bait.
source "$(dirname "$0")/../lib.sh"
topo_up
ul_mac=$(in_ns "$NS_HOST" cat /sys/class/net/underlay0/address)
in_ns "$NS_HOST" ip addr del $HOST_UL_IP/24 dev underlay0
in_ns "$NS_HOST" ip link add br-ul address "$ul_mac" type bridge
in_ns "$NS_HOST" ip link set underlay0 master br-ul
in_ns "$NS_HOST" ip addr add $HOST_UL_IP/24 dev br-ul
in_ns "$NS_HOST" ip link set br-ul up
in_ns "$NS_HOST" ip neigh replace $COL_IP lladdr "$(mac_of "$NS_COL" eth0)" dev br-ul nud permanent
agent_start
# The bridge itself, the device copies leave through, is refused with its path.
python3 - "$TOPO_DIR/bad.json" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
d["sources"].append({"id": "bridge", "interface": "br-ul"})
d["sessions"][0]["sources"].append("bridge")
json.dump(d, open(sys.argv[1], "w"))
PY
if out=$(ctl apply -f "$TOPO_DIR/bad.json" -o json 2>&1); then fail "a source on the underlay device br-ul was accepted: $out"; fi
echo "$out" | grep -q 'sources\[[0-9]*\].interface' || fail "no path in the refusal: $out"
echo "$out" | grep -q "br-ul is the underlay device" || fail "the refusal does not say why: $out"
python3 - "$TOPO_DIR/doc.json" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
d["filters"].append({"id": "everything", "inbound": [{"priority": 1, "action": "accept", "ethertype": "ipv4"}],
                     "outbound": [{"priority": 1, "action": "accept", "ethertype": "ipv4"}]})
d["sources"].append({"id": "underlay", "interface": "underlay0"})
d["sessions"].append({"id": "loop-bait", "priority": 5, "filter": "everything", "sources": ["underlay"],
                      "target": "collector", "vni": 900})
json.dump(d, open(sys.argv[1], "w"))
PY
ctl apply -f "$TOPO_DIR/doc.json"
host_tap=$(mac_of "$NS_HOST" tap-vm1)
capture "$NS_COL" eth0 col udp port 4789
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":64,"count":10}' \
  | send_frames "$NS_VM" eth0 "$host_tap"
sleep 1
capture_stop col
python3 - "$TOPO_DIR/col.pcap" <<'PY'
import sys; sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
c = list(vd.copies(sys.argv[1]))
by = {}
for x in c: by[x["vni"]] = by.get(x["vni"], 0) + 1
udp = sum(1 for x in c if x["vni"] == 200 and x["inner_proto"] == 17)
print(f"copies by vni: {by}; UDP copies from session audit: {udp}")
# (The peer's ICMP port-unreachable answers are mirrored too: count the UDP ones.)
assert udp == 10, f"expected 10 UDP copies from session audit, got {udp}"
# The underlay source may mirror other traffic it carries, but never a copy: no
# copy may carry a VXLAN packet inside.
loops = [x for x in c if x["inner_proto"] == 17 and x["inner_dport"] == 4789]
assert not loops, f"{len(loops)} copies were mirrored again by the underlay source"
assert by.get(900, 0) == 0, f"session loop-bait mirrored {by.get(900)} packets, but only copies crossed the underlay"
PY
