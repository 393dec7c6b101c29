# `session disable` stops copies within one second, `enable` restarts them;
# changing a session's VNI by apply takes effect for the next packets; deleting
# the session stops its copies.
source "$(dirname "$0")/../lib.sh"
topo_up
agent_start
ctl apply -f examples/demo.json
capture "$NS_COL" eth0 col udp port 4789
host_tap=$(mac_of "$NS_HOST" tap-vm1)
# Outbound UDP to 203.0.113.10: decided by session audit (vni 200), every 10 ms.
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":64}' \
  > "$TOPO_DIR/flow.json"
ip netns exec "$NS_VM" python3 Tests/e2e/send.py --iface eth0 --dst-mac "$host_tap" --for-seconds 9 --interval 0.01 \
  "$TOPO_DIR/flow.json" >/dev/null &
echo $! > "$TOPO_DIR/sender.pid"
sleep 1.5
t_disable=$(date +%s.%N); ctl session disable audit
sleep 2
# What the disabled session would have mirrored is counted as such (not no_match).
disabled=$(ctl stats -o json | python3 -c 'import json,sys; print(sum(s["notMirrored"].get("session_disabled", 0) for s in json.load(sys.stdin)["sources"] if s["source"] == "vm1" and s["direction"] == "outbound"))')
t_enable=$(date +%s.%N); ctl session enable audit
[ "$disabled" -ge 100 ] || fail "about 200 packets of the disabled session audit: counted session_disabled $disabled"
echo "session_disabled while audit was disabled: $disabled"
sleep 1.5
python3 - "$TOPO_DIR/doc2.json" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
for s in d["sessions"]:
    if s["id"] == "audit":
        s["vni"] = 300
json.dump(d, open(sys.argv[1], "w"))
PY
t_vni=$(date +%s.%N); ctl apply -f "$TOPO_DIR/doc2.json"
sleep 1.5
t_delete=$(date +%s.%N); ctl delete session audit
sleep 1.5
wait "$(cat "$TOPO_DIR/sender.pid")" || true
capture_stop col
python3 - "$TOPO_DIR/col.pcap" "$t_disable" "$t_enable" "$t_vni" "$t_delete" <<'PY'
import sys
sys.path.insert(0, "Tests/e2e")
import vxlan_decode as vd
pcap, t_dis, t_en, t_vni, t_del = sys.argv[1], *map(float, sys.argv[2:])
c = list(vd.copies(pcap))
def n(vni, a, b): return sum(1 for x in c if x["vni"] == vni and a <= x["ts"] < b)
checks = [
    ("copies before disable", n(200, 0, t_dis) > 50),
    ("no copy from 1 s after disable until enable", n(200, t_dis + 1, t_en) == 0 and n(300, 0, t_vni) == 0),
    ("copies again within 1 s of enable", n(200, t_en + 1, t_vni) > 20),
    ("new vni within 1 s of apply", n(300, t_vni + 1, t_del) > 20 and n(200, t_vni + 1, 1e12) == 0),
    ("no copy from 1 s after delete", n(300, t_del + 1, 1e12) == 0 and n(200, t_del + 1, 1e12) == 0),
]
bad = [name for name, ok in checks if not ok]
print({"vni200_total": n(200, 0, 1e12), "vni300_total": n(300, 0, 1e12)})
for name, ok in checks: print(("ok   " if ok else "FAIL ") + name)
sys.exit(1 if bad else 0)
PY
