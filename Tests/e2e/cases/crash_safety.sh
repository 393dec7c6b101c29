# SPEC §7: crash safety.
#  a) `kill -9` of the agent under traffic: copies keep flowing while it is down
#     (pinned datapath: every packet the VM sent has exactly one copy, none
#     missing around the crashes, none duplicated), the restarted agent adopts what is in the kernel
#     (one filter per hook, status right, same generation) and the counters continue
#     (agentctl stats and GET /metrics never go backwards). No copy is duplicated.
#  b) `kill -9` in the middle of a stream of applies: the restarted agent restores a
#     committed document (one of the two applied) and the kernel agrees with it.
#  c) a crashed writer's leftovers (truncated state.json.tmp, datapath-slots.json.tmp)
#     do not stop the agent from restoring the last committed document, and the
#     next apply writes over them.
source "$(dirname "$0")/../lib.sh"
topo_up
agent_start
ctl apply -f examples/demo.json >/dev/null
host_tap=$(mac_of "$NS_HOST" tap-vm1)
filters() { our_hooks tap-vm1 "$1"; }
json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
audit_packets() { ctl stats -o json | json_field '[s["packets"] for s in d["sessions"] if s["session"]=="audit"][0]'; }
# GET /metrics inside the host namespace (the agent listens on 127.0.0.1 there).
metric_audit() {
  nsenter --net="/run/netns/$NS_HOST" curl -sf --max-time 5 http://127.0.0.1:9469/metrics |
    sed -n 's/^mirror_session_packets_total{session="audit"[^}]*} \([0-9]*\)$/\1/p'
}
status_line() {
  ctl status -o json | json_field '"%s %s %s %s" % (d["generation"], d["datapathGeneration"], d["sources"][0]["state"], json.dumps(d["datapathLoaded"]))'
}
# The maps of the agent's map layout (issue 18: pinned in <bpffs>/layout-N).
pins() { (cd "$TOPO_DIR/bpffs" && ls -d layout-* layout-*/*) | sort | tr '\n' ' '; }

# --- a) kill -9 under traffic -------------------------------------------------
# The collector listens first: a packet the VM sends (its own MLD report, say) in
# between the two starts would otherwise be in the VM's capture with its copy missed.
capture "$NS_COL" eth0 col udp port 4789
capture "$NS_VM" eth0 vm
# Outbound UDP to 203.0.113.10: decided by session audit (vni 200), every 10 ms.
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":64}' > "$TOPO_DIR/flow.json"
ip netns exec "$NS_VM" python3 Tests/e2e/send.py --iface eth0 --dst-mac "$host_tap" --for-seconds 60 --interval 0.01 \
  "$TOPO_DIR/flow.json" >/dev/null &
echo $! > "$TOPO_DIR/sender.pid"
sleep 1.5
pins_before=$(pins)
status_before=$(status_line)
stats_before=$(audit_packets); metric_before=$(metric_audit)
echo "before: status '$status_before', audit packets $stats_before (metrics $metric_before), pins: $pins_before"
[ "$stats_before" -gt 50 ] && [ "${metric_before:-0}" -gt 50 ] || fail "counters not counting before the crash"
t_kill=$(date +%s.%N)
kill -9 "$(cat "$TOPO_DIR/agent.pid")"
wait "$(cat "$TOPO_DIR/agent.pid")" 2>/dev/null || true
rm -f "$TOPO_DIR/agent.pid"
expect_eq "$(filters ingress)/$(filters egress)" "1/1" "filters while the agent is dead"
sleep 2
t_start=$(date +%s.%N)
agent_start
expect_eq "$(filters ingress)/$(filters egress)" "1/1" "filters after the restart"
expect_eq "$(status_line)" "$status_before" "status (generation, datapath generation, source state, loaded) after the restart"
expect_eq "$(pins)" "$pins_before" "pinned maps after the restart"
sleep 1
stats_after=$(audit_packets); metric_after=$(metric_audit)
echo "after:  audit packets $stats_after (metrics $metric_after)"
# About 3.5 s at 100 packets/s went by: the counters kept counting while the agent was dead.
[ "$stats_after" -ge $((stats_before + 100)) ] || fail "agentctl stats did not continue: $stats_before -> $stats_after"
[ "${metric_after:-0}" -ge $((metric_before + 100)) ] || fail "GET /metrics did not continue: $metric_before -> $metric_after"
# A second crash right after the restart: still one filter each.
kill -9 "$(cat "$TOPO_DIR/agent.pid")"; wait "$(cat "$TOPO_DIR/agent.pid")" 2>/dev/null || true; rm -f "$TOPO_DIR/agent.pid"
agent_start
expect_eq "$(filters ingress)/$(filters egress)" "1/1" "filters after the second restart"
[ "$(audit_packets)" -ge "$stats_after" ] || fail "stats went backwards after the second restart"
t_end=$(date +%s.%N)
sleep 0.5
kill "$(cat "$TOPO_DIR/sender.pid")"; wait "$(cat "$TOPO_DIR/sender.pid")" 2>/dev/null || true
capture_stop vm; capture_stop col
python3 - "$TOPO_DIR/vm.pcap" "$TOPO_DIR/col.pcap" "$t_kill" "$t_start" "$t_end" <<'PY'
import collections, sys
sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
vm_pcap, col_pcap, t_kill, t_start, t_end = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
# Every IPv4 packet the VM's eth0 saw is mirrored by audit: the UDP it sends and
# the peer's ICMP errors that come back (audit accepts all IPv4 both ways). Not
# the IPv6 the VM's kernel sends by itself (an MLD report to ff02::16 from ::):
# no rule of demo.json accepts it.
sent = [(ts, fr.hex()) for _, fr, ts in vd.pcap_packets(vm_pcap) if fr[12:14] == b"\x08\x00"]
copies = list(vd.copies(col_pcap))
c = [x for x in copies if x["vni"] == 200]
got = collections.Counter(x["inner_hex"] for x in c)
missing = [(ts, h) for ts, h in sent if got[h] == 0]
dups = {h: n for h, n in got.items() if n > 1}
unknown = set(got) - {h for _, h in sent}
other = [x for x in copies if x["vni"] != 200]
sent_down = [h for ts, h in sent if t_kill < ts < t_start and vd.ip_tuple(bytes.fromhex(h))["dport"] == 5001]
down = [x for x in c if t_kill < x["ts"] < t_start]
ts = sorted(x["ts"] for x in c if t_kill - 1 < x["ts"] < t_end)
gap = max(b - a for a, b in zip(ts, ts[1:]))
print(f"VM sent {len(sent)}, {len(c)} copies; while the agent was dead: {len(sent_down)} sent, {len(down)} copies; "
      f"largest gap between copies around the crashes {gap * 1000:.0f} ms; missing {len(missing)}, "
      f"duplicated {len(dups)}, unknown {len(unknown)}, other vni {len(other)}")
for ts, h in missing[:5]:
    print(f"  missing: sent at {ts - t_kill:+.3f} s from the kill: {vd.ip_tuple(bytes.fromhex(h))}")
assert len(sent_down) > 50, "too little traffic while the agent was dead to judge"
assert not missing, f"{len(missing)} packets the VM sent have no copy"
assert not dups, f"{len(dups)} packets were mirrored more than once"
assert not unknown and not other, "copies of packets the VM did not send, or with another vni"
PY

# --- b) kill -9 in the middle of applies ----------------------------------------
python3 - "$TOPO_DIR/doc-b.json" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
for s in d["sessions"]:
    s["vni"] += 1000
json.dump(d, open(sys.argv[1], "w"))
PY
for round in 1 2 3; do
  ( for i in $(seq 1 200); do
      ctl apply -f "$TOPO_DIR/doc-b.json" >/dev/null 2>&1 || exit 0
      ctl apply -f examples/demo.json >/dev/null 2>&1 || exit 0
    done ) &
  applier=$!
  sleep "0.$((RANDOM % 9 + 3))"
  kill -9 "$(cat "$TOPO_DIR/agent.pid")"; wait "$(cat "$TOPO_DIR/agent.pid")" 2>/dev/null || true; rm -f "$TOPO_DIR/agent.pid"
  wait "$applier" || true
  agent_start
  vni=$(ctl get sessions -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("items",d) if isinstance(d,dict) else d; print([s["vni"] for s in d if s["id"]=="audit"][0])')
  echo "round $round: restored after a crash mid-apply: $(status_line), audit vni $vni"
  case "$vni" in 200|1200) ;; *) fail "restored audit vni $vni is neither policy's";; esac
  expect_eq "$(filters ingress)/$(filters egress)" "1/1" "filters after crash mid-apply (round $round)"
  st=$(status_line); set -- $st
  expect_eq "$2" "$1" "datapath generation equals the restored generation"
  expect_eq "$3" "attached" "source state after crash mid-apply"
  # The kernel runs the restored policy: explain asks the loaded program.
  ctl explain --source vm1 --direction outbound --protocol udp --src 192.0.2.10:4000 --dst 203.0.113.10:5001 -o json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["agree"] is True and d["kernel"]["session"]=="audit", d' ||
    fail "kernel and oracle disagree after a crash mid-apply"
done

# --- c) a crashed writer's leftovers ----------------------------------------------
ctl apply -f examples/demo.json >/dev/null
gen=$(status_line | cut -d' ' -f1)
agent_stop
# A writer killed after writing part of the next document to its temp file.
head -c 700 "$TOPO_DIR/doc-b.json" > "$AGENT_STATE/state.json.tmp"
printf '{"sessions":{"aud' > "$AGENT_STATE/datapath-slots.json.tmp"
agent_start
expect_eq "$(status_line)" "$gen $gen attached true" "status after a crashed writer's leftovers"
ctl get sessions -o json | grep -q '"vni" *: *200' || fail "the last committed document (audit vni 200) was not restored"
ctl apply -f "$TOPO_DIR/doc-b.json" >/dev/null || fail "apply over a stale temp file failed"
agent_stop; agent_start
ctl get sessions -o json | grep -q '"vni" *: *1200' || fail "the document applied over the stale temp file was not restored"
[ ! -e "$AGENT_STATE/state.json.tmp" ] || fail "state.json.tmp left behind after a successful write"
expect_eq "$(filters ingress)/$(filters egress)" "1/1" "filters at the end"
echo "ok"
