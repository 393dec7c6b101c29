# Tcx attachment at scale. Creating a tcx link waits for an RCU grace
# period with rtnl held (~12 ms on this VM, not parallel), so an apply creates only
# its first --tcx-links-per-apply links itself; it attaches the other hooks through
# clsact filters at once (mirroring starts with the apply) and a background mover
# gives them tcx links afterwards. With a budget of 2 and 200 extra source
# interfaces, this checks that:
#   - right after the apply, status reports interfaces still on clsact, and every
#     source is attached;
#   - they all end on tcx: one program of ours per hook, no filter of ours and no
#     clsact qdisc left in the host namespace (the agent created them all);
#   - traffic on tap-vm1, sent throughout, is mirrored: no packet missed, none
#     copied twice (not even while its hook has both the filter and the link);
#   - removing the 200 sources removes their links (also in the background), and an
#     agent started after a kill -9 removes the links its predecessor left on
#     interfaces that are no source of the document it is given.
source "$(dirname "$0")/../lib.sh"
if ! python3 Tests/e2e/hooks.py --has-tcx; then echo "skipped: this kernel has no tcx (< 6.6)"; exit 0; fi
N=200
topo_up
python3 -c 'import sys
for i in range(0, int(sys.argv[1]), 2): print(f"link add mv{i} type veth peer name mv{i + 1}")' $N | ip -n "$NS_HOST" -batch -
python3 - "$TOPO_DIR/doc.json" $N <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
d["sources"] += [{"id": f"mv{i}", "interface": f"mv{i}"} for i in range(int(sys.argv[2]))]
json.dump(d, open(sys.argv[1], "w"))
PY
agent_start --tcx-links-per-apply 2
host_tap=$(mac_of "$NS_HOST" tap-vm1)
# Outbound UDP from the VM (session audit, vni 200), every 5 ms, before, during and after the move.
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":64}' > "$TOPO_DIR/flow.json"
capture "$NS_COL" eth0 col udp port 4789
capture "$NS_VM" eth0 vm udp port 5001
ctl apply -f "$TOPO_DIR/doc.json" >/dev/null
ip netns exec "$NS_VM" python3 Tests/e2e/send.py --iface eth0 --dst-mac "$host_tap" --for-seconds 12 --interval 0.005 \
  "$TOPO_DIR/flow.json" >/dev/null &
echo $! > "$TOPO_DIR/sender.pid"
status_json() { ctl status -o json; }
read -r pending attached total <<<"$(status_json | python3 -c 'import json,sys; d=json.load(sys.stdin); s=d["sources"]
print(d.get("tcxPending"), sum(x["state"] == "attached" for x in s), len(s))')"
echo "after the apply: $attached of $total sources attached, $pending interfaces on clsact"
expect_eq "$attached" "$total" "sources attached right after the apply"
[ "$pending" -gt 100 ] || fail "expected most interfaces on clsact right after the apply, status says $pending"
tcx_metric() {
  nsenter --net="/run/netns/$NS_HOST" curl -sf --max-time 5 http://127.0.0.1:9469/metrics |
    sed -n 's/^mirror_tcx_pending_interfaces \([0-9]*\)$/\1/p'
}
m=$(tcx_metric)
[ "${m:-0}" -gt 0 ] || fail "mirror_tcx_pending_interfaces is '$m' while interfaces are still on clsact"
ctl status > "$TOPO_DIR/status.txt"
grep "interfaces on clsact until their tcx links are made" "$TOPO_DIR/status.txt" || fail "agentctl status does not say hooks are moving"
t0=$(date +%s.%N)
for _ in $(seq 1 600); do
  pending=$(status_json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("tcxPending"))')
  [ "$pending" = 0 ] && break
  sleep 0.1
done
expect_eq "$pending" "0" "interfaces on clsact 60 s after the apply"
expect_eq "$(tcx_metric)" "0" "mirror_tcx_pending_interfaces once all are moved"
echo "all on tcx links $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s after the apply"
in_ns "$NS_HOST" python3 Tests/e2e/hooks.py --all > "$TOPO_DIR/hooks.txt"
python3 - "$TOPO_DIR/hooks.txt" $N <<'PY'
import collections, sys
lines = [l.split() for l in open(sys.argv[1])]
ours = collections.Counter((d, h, m) for d, h, m, _, name in lines if name.startswith("mirror_tc"))
devs = ["tap-vm1"] + [f"mv{i}" for i in range(int(sys.argv[2]))]
bad = [(d, h, dict((m, ours[(d, h, m)]) for m in ("tcx", "clsact")))
       for d in devs for h in ("ingress", "egress") if ours[(d, h, "tcx")] != 1 or ours[(d, h, "clsact")] != 0]
print(f"{sum(ours.values())} programs of ours on {len(devs)} sources' hooks")
assert not bad, f"hooks without exactly one tcx program of ours: {bad[:5]}"
assert not any(m == "clsact" for _, _, m, _, _ in lines), "a clsact filter remains"
PY
qdiscs=$(in_ns "$NS_HOST" tc qdisc show | grep -c clsact || true)
expect_eq "$qdiscs" "0" "clsact qdiscs left in the host namespace"
wait "$(cat "$TOPO_DIR/sender.pid")" || true
capture_stop col
capture_stop vm
python3 - "$TOPO_DIR/vm.pcap" "$TOPO_DIR/col.pcap" <<'PY'
import collections, sys
sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
sent = [p.hex() for lt, p, ts in vd.pcap_packets(sys.argv[1])]
copies = [c for c in vd.copies(sys.argv[2]) if c["vni"] == 200]
got = collections.Counter(c["inner_hex"] for c in copies)
missing = [h for h in sent if got[h] == 0]
twice = {h for h in sent if got[h] > 1}
others = collections.Counter(str(vd.ip_tuple(bytes.fromhex(c["inner_hex"]))) for c in copies if c["inner_hex"] not in set(sent))
print(f"{len(sent)} packets sent through the move, {len(copies)} copies, {len(missing)} missing, {len(twice)} copied twice")
print("copies of other packets:", dict(others))
assert len(sent) > 500, "too few packets sent"
assert not missing, f"{len(missing)} packets were not mirrored during the move"
# A hook's new tcx link runs as soon as it is published, and our clsact filter is
# removed after the link's grace period (~12 ms): packets in that window pass both,
# and the first (the link) marks them so that the filter does not copy them again.
assert not twice, f"{len(twice)} packets copied twice while their hook moved from clsact to tcx"
PY

links() { ls "$TOPO_DIR"/bpffs/layout-*/links | wc -l; }
wait_links() {   # until $1 pinned links remain (at most 60 s)
  for _ in $(seq 1 600); do [ "$(links)" = "$1" ] && return 0; sleep 0.1; done
  fail "$2: $(links) pinned links, expected $1"
}
# tap-vm1's two hooks, stage 2 on mirror0, the segmenter's receive side.
OWN=4
expect_eq "$(links)" "$((OWN + 2 * N))" "pinned links with all sources"
ctl apply -f examples/demo.json >/dev/null
wait_links $OWN "after removing $N sources"
in_ns "$NS_HOST" python3 Tests/e2e/hooks.py --all > "$TOPO_DIR/hooks.txt"
left=$(grep -c '^mv[0-9]* .* mirror_' "$TOPO_DIR/hooks.txt" || true)
expect_eq "$left" "0" "programs of ours left on removed sources"
expect_eq "$(our_hooks tap-vm1 ingress)/$(our_hooks tap-vm1 egress)" "1/1" "tap-vm1 after the removal"

# Links left behind by a killed agent go when the next one learns they are unused.
ctl apply -f "$TOPO_DIR/doc.json" >/dev/null
wait_links $((OWN + 2 * N)) "after adding the sources back"
kill -9 "$(cat "$TOPO_DIR/agent.pid")"; wait "$(cat "$TOPO_DIR/agent.pid")" 2>/dev/null || true
rm -f "$TOPO_DIR/agent.pid"
agent_start --reset-state
ctl apply -f examples/demo.json >/dev/null
wait_links $OWN "after a kill -9 and an apply without the $N sources"
echo ok
