# A loadBalancer target with two backends: every copy of a flow, both directions,
# reaches one backend; both backends get flows.
source "$(dirname "$0")/../lib.sh"
topo_up
in_ns "$NS_COL" ip addr add 198.51.100.3/24 dev eth0
# Like the first backend, the second is a known neighbour: copies sent while ARP
# resolves would be queued and partly dropped by the host's neighbour table.
in_ns "$NS_HOST" ip neigh replace 198.51.100.3 lladdr "$(mac_of "$NS_COL" eth0)" dev underlay0 nud permanent
agent_start
python3 - "$TOPO_DIR/doc.json" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
d["targets"] = [{"id": "collector", "type": "loadBalancer", "backends": ["198.51.100.2", "198.51.100.3"]}]
json.dump(d, open(sys.argv[1], "w"))
PY
ctl apply -f "$TOPO_DIR/doc.json"
host_tap=$(mac_of "$NS_HOST" tap-vm1); host_peer=$(mac_of "$NS_HOST" peer0)
capture "$NS_COL" eth0 col udp port 4789
python3 -c '
import json
for p in range(20000, 20040):
    print(json.dumps({"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":p,"dport":5001,"payload":20,"count":3}))
' | send_frames "$NS_VM" eth0 "$host_tap"
python3 -c '
import json
for p in range(20000, 20040):
    print(json.dumps({"family":4,"proto":"udp","src":"203.0.113.10","dst":"192.0.2.10","sport":5001,"dport":p,"payload":20,"count":3}))
' | send_frames "$NS_PEER" eth0 "$host_peer"
capture_stop col
python3 - "$TOPO_DIR/col.pcap" <<'PY'
import collections, sys; sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
flows = collections.defaultdict(set)
n = 0
for x in vd.copies(sys.argv[1]):
    if x["inner_proto"] != 17: continue
    key = tuple(sorted([(x["inner_src"], x["inner_sport"]), (x["inner_dst"], x["inner_dport"])]))
    flows[key].add(x["outer_dst"]); n += 1
per_backend = collections.Counter(next(iter(b)) for b in flows.values() if len(b) == 1)
split = [k for k, b in flows.items() if len(b) > 1]
dirs = collections.Counter("outbound" if x["inner_src"] == "192.0.2.10" else "inbound"
                           for x in vd.copies(sys.argv[1]) if x["inner_proto"] == 17)
print(f"{n} copies ({dict(dirs)}), {len(flows)} flows, flows per backend {dict(per_backend)}, split flows {len(split)}")
assert n == 240, f"expected 240 copies (40 flows x 3 x 2 directions), got {n}"
assert len(flows) == 40 and not split, f"flows split across backends: {split[:3]}"
assert set(per_backend) == {"198.51.100.2", "198.51.100.3"}, "both backends must get flows"
PY
