# Fleet mode (SPEC §9): a controller renders a region of 300 sources and 100+ sessions
# over three hosts; each host's agent applies exactly its share, checked against an
# independent computation (Tests/e2e/fleet_region.py). Then one changed session
# reaches only its hosts (propagation time reported), local changes are refused in
# fleet mode naming etcd, fleet status shows every host, and deleting every rendered
# key and restarting the controller rebuilds them.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../fleet.sh"
fleet_up
R=$TOPO_DIR/region.json
python3 Tests/e2e/fleet_region.py gen --hosts 3 --sources 300 --sessions 100 --seed 7 >"$R"
fctl apply -f "$R"
controller_start c1
for i in 1 2 3; do fleet_agent_start "hv$i" "$i"; done

share() {
  local host=$1
  python3 - "$host" <<'PY' "$(hctl "$host" get sessions -o json)" "$(hctl "$host" get sources -o json)" \
    "$(hctl "$host" get filters -o json)" "$(hctl "$host" get targets -o json)"
import json, subprocess, sys
host = sys.argv[1]
doc = dict(zip(["sessions", "sources", "filters", "targets"], (json.loads(a) for a in sys.argv[2:6])))
print(subprocess.run(["python3", "Tests/e2e/fleet_region.py", "canon"], input=json.dumps(doc), capture_output=True,
                     text=True, check=True).stdout.strip())
PY
}
converged() {
  local host=$1 want
  want=$(python3 Tests/e2e/fleet_region.py expect "$R" "$host")
  [ "$(share "$host")" = "$want" ]
}
for i in 1 2 3; do
  wait_until 30 converged "hv$i" || {
    cat "$TOPO_DIR"/controller-c1.log "$TOPO_DIR/agent-hv$i.log" | tail -30
    echo "want: $(python3 Tests/e2e/fleet_region.py expect "$R" "hv$i" | head -c 400)"
    echo "got:  $(share "hv$i" | head -c 400)"
    fail "hv$i did not apply its share"
  }
  n=$(hctl "hv$i" get sessions -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  echo "hv$i applied its share: $n sessions"
done

# One session changed: its hosts apply it; time from apply to the host having it.
sess=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print([s["id"] for s in r["sessions"] if len(s["sources"]) >= 2][0])' "$R")
python3 Tests/e2e/fleet_region.py change "$R" "$sess" 4242 >"$TOPO_DIR/r2.json"
host=$(python3 -c '
import json,sys; r=json.load(open(sys.argv[1])); s=[x for x in r["sessions"] if x["id"]==sys.argv[2]][0]
print({x["id"]: x["host"] for x in r["sources"]}[s["sources"][0]])' "$R" "$sess")
has_vni() { hctl "$host" get sessions "$sess" -o json | grep -q '"vni": 4242'; }
t0=$(date +%s%N)
fctl apply -f "$TOPO_DIR/r2.json" >/dev/null
wait_until 10 has_vni || fail "$host did not apply the change of $sess"
t1=$(date +%s%N)
echo "propagation: agentctl --etcd apply of one changed session to $host applying it: $(( (t1 - t0) / 1000000 )) ms"
cp "$TOPO_DIR/r2.json" "$R"
for i in 1 2 3; do wait_until 10 converged "hv$i" || fail "hv$i after the change"; done

# Local changes are refused in fleet mode, naming where the configuration lives.
if hctl hv1 delete sessions "$sess" 2>"$TOPO_DIR/del.err"; then fail "a local delete was accepted in fleet mode"; fi
grep -q "fleet mode" "$TOPO_DIR/del.err" && grep -q "/mirror/v1/hosts/hv1/desired" "$TOPO_DIR/del.err" ||
  fail "local delete refusal: $(cat "$TOPO_DIR/del.err")"
if hctl hv1 apply -f "$R" 2>"$TOPO_DIR/apply.err"; then fail "a local apply was accepted in fleet mode"; fi
grep -q "etcd" "$TOPO_DIR/apply.err" || fail "local apply refusal: $(cat "$TOPO_DIR/apply.err")"
hctl hv1 status >/dev/null || fail "status in fleet mode"
hctl hv1 stats >/dev/null || fail "stats in fleet mode"

# fleet status: every host alive, applied = desired.
fctl fleet status
synced() {
  fctl fleet status -o json | python3 -c '
import json,sys
rows = json.load(sys.stdin)["hosts"]
assert [r["host"] for r in rows] == ["hv1", "hv2", "hv3"], rows
for r in rows:
    assert r["alive"] and r["desiredRevision"] > 0 and r["appliedRevision"] == r["desiredRevision"], r
    assert r["error"] is None and set(r) == {"host","alive","desiredRevision","appliedRevision","sources","error"}, r
    assert set(r["sources"]) == {"attached", "pending"}, r'
}
wait_until 10 synced || { fctl fleet status -o json; fail "fleet status does not show every host applied"; }

# Derived state: delete every rendered key, restart the controller: rebuilt.
controller_kill c1
ectl del --prefix /mirror/v1/hosts/ >/dev/null
controller_start c2
rebuilt() { [ "$(ectl get --prefix /mirror/v1/hosts/ --keys-only | grep -c /desired)" = 3 ]; }
wait_until 15 rebuilt || fail "the controller did not rebuild the hosts' documents"
for i in 1 2 3; do wait_until 10 converged "hv$i" || fail "hv$i after the rebuild"; done
echo "fleet_share: ok"
