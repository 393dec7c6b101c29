# Fleet mode under store faults (SPEC §9):
#  1. the etcd leader is killed under a stream of region changes: every host ends in
#     exactly the final state (nothing missed);
#  2. an agent stopped (SIGSTOP) while sessions are created, changed and deleted and
#     the store is compacted, its connections to etcd cut meanwhile, resumes its watch
#     from a compacted revision (ErrCompacted), lists again and ends, after SIGCONT,
#     in exactly the final state;
#  3. all of etcd down: the agents keep their policy, an agent restarted during the
#     outage serves its cached document, and after etcd returns the fleet converges.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../fleet.sh"
fleet_up
R=$TOPO_DIR/region.json
python3 Tests/e2e/fleet_region.py gen --hosts 2 --sources 40 --sessions 15 >"$R"
fctl apply -f "$R"
controller_start c1
for i in 1 2; do fleet_agent_start "hv$i" "$i"; done

share() {
  python3 - <<'PY' "$(hctl "$1" get sessions -o json)" "$(hctl "$1" get sources -o json)" \
    "$(hctl "$1" get filters -o json)" "$(hctl "$1" get targets -o json)"
import json, subprocess, sys
doc = dict(zip(["sessions", "sources", "filters", "targets"], (json.loads(a) for a in sys.argv[1:5])))
print(subprocess.run(["python3", "Tests/e2e/fleet_region.py", "canon"], input=json.dumps(doc), capture_output=True,
                     text=True, check=True).stdout.strip())
PY
}
converged() { [ "$(share "$1")" = "$(python3 Tests/e2e/fleet_region.py expect "$R" "$1")" ]; }
all_converged() { converged hv1 && converged hv2; }
wait_until 30 all_converged || fail "the hosts did not apply their shares"

# 1. The leader killed under a stream of changes.
leader=$(etcd_leader "$ETCD_DIR")
echo "etcd leader: member $leader"
for i in $(seq 1 12); do
  python3 Tests/e2e/fleet_region.py change "$R" "sess$(printf %04d $((i % 15)))" $((5000 + i)) >"$R.next" && mv "$R.next" "$R"
  fctl apply -f "$R" >/dev/null || { sleep 0.5; fctl apply -f "$R" >/dev/null || fail "apply $i failed twice"; }
  if [ "$i" = 4 ]; then etcd_stop_member "$ETCD_DIR" "$leader"; echo "killed member $leader after change 4"; fi
  sleep 0.1
done
wait_until 20 all_converged || fail "after the leader was killed: hv1 $(converged hv1 && echo ok), hv2 $(converged hv2 && echo ok)"
echo "new etcd leader: member $(etcd_leader "$ETCD_DIR")"
etcd_start_member "$ETCD_DIR" "$leader"

# 2. An agent stopped while the region changes and the store is compacted, its
# connections to etcd cut meanwhile (as a network fault would): nothing of the changes
# reaches it, its watch must start again from the revision after the last one it saw,
# which the compaction removed (ErrCompacted), so it lists again.
hv2_pid=$(cat "$TOPO_DIR/agent-hv2.pid")
kill -STOP "$hv2_pid"
# Every TCP connection of hv2's agent to a member (ss -K: the kernel aborts them).
cut_etcd() {
  local port n=0
  for port in $(ss -tnpH state established "( dport = :2379 )" | awk -v p="pid=$1," '$0 ~ p {n = split($3, a, ":"); print a[n]}'); do
    ss -K -tn state established "( sport = :$port and dport = :2379 )" >/dev/null
    n=$((n + 1))
  done
  echo "$n"
}
cut=$(cut_etcd "$hv2_pid")
[ "$cut" -ge 1 ] || fail "hv2's agent had no connection to etcd to cut"
echo "cut $cut connection(s) of the stopped hv2 agent to etcd"
python3 - "$R" >"$R.next" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
by_host = {s["id"]: s["host"] for s in r["sources"]}
hv2 = [s["id"] for s in r["sources"] if s["host"] == "hv2"]
r["sessions"] = [s for s in r["sessions"] if s["id"] not in ("sess0001", "sess0002")]     # deleted
for s in r["sessions"]:
    if s["id"] == "sess0003": s["vni"] = 99                                                 # changed
r["sessions"].append({"id": "new-on-hv2", "priority": 30000, "filter": "f00", "sources": [hv2[-1]],
                      "target": r["targets"][-1]["id"], "vni": 77})                          # created
print(json.dumps(r))
PY
mv "$R.next" "$R"
fctl apply -f "$R" >/dev/null
sleep 1
for v in 1 2 3; do
  python3 Tests/e2e/fleet_region.py change "$R" sess0004 $((600 + v)) >"$R.next" && mv "$R.next" "$R"
  fctl apply -f "$R" >/dev/null
done
rev=$(ectl endpoint status -w json | python3 -c 'import json,sys; print(max(e["Status"]["header"]["revision"] for e in json.load(sys.stdin)))')
ectl compact "$rev" >/dev/null
echo "compacted at revision $rev with hv2 stopped"
kill -CONT "$hv2_pid"
wait_until 20 all_converged || fail "after SIGCONT and a compaction hv2 is not in the final state"
grep -q "watch behind a compaction; listing again" "$TOPO_DIR/agent-hv2.log" ||
  fail "hv2 converged without its watch meeting the compaction: $(grep fleet: "$TOPO_DIR/agent-hv2.log" | tail -5)"
echo "hv2's watch met the compaction (ErrCompacted), it listed again and is in exactly the final state"

# 3. All of etcd down.
for m in 1 2 3; do etcd_stop_member "$ETCD_DIR" "$m"; done
before=$(share hv1)
sleep 1
expect_eq "$(share hv1)" "$before" "hv1's policy with etcd down"
fleet_agent_kill hv1
fleet_agent_start hv1 1
expect_eq "$(share hv1)" "$before" "hv1 restarted during the outage serves its cached document"
for m in 1 2 3; do etcd_start_member "$ETCD_DIR" "$m"; done
wait_until 20 bash -c "source scripts/lib/etcd-cluster.sh; etcd_ctl '$ETCD_DIR' endpoint health" || fail "etcd did not come back"
python3 Tests/e2e/fleet_region.py change "$R" sess0005 4321 >"$R.next" && mv "$R.next" "$R"
for _ in 1 2 3; do fctl apply -f "$R" >/dev/null && break; sleep 1; done
wait_until 30 all_converged || fail "the fleet did not converge after etcd returned"
synced() {
  fctl fleet status -o json | python3 -c '
import json,sys
rows = json.load(sys.stdin)["hosts"]
assert all(r["alive"] and r["appliedRevision"] == r["desiredRevision"] for r in rows) and len(rows) == 2, rows'
}
wait_until 15 synced || { fctl fleet status; fail "fleet status after etcd returned"; }
echo "fleet_faults: ok"
