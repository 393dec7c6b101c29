# SPEC §6: a copy is never mirrored again, even when the underlay interface the
# copies leave through is itself a source with an accept-everything filter.
source "$(dirname "$0")/../lib.sh"
topo_up
agent_start
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
