# Fleet mode (SPEC §9), failover of the writers and of the hosts: of two controllers
# one leads and the other waits; when the leader is killed the other takes over within
# the lease TTL and renders the next change. A killed agent disappears from fleet
# status within its lease TTL (10 s) and comes back when restarted.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../fleet.sh"
fleet_up
R=$TOPO_DIR/region.json
python3 Tests/e2e/fleet_region.py gen --hosts 2 --sources 20 --sessions 8 >"$R"
fctl apply -f "$R"
controller_start c1 --lease-ttl 3
leader() { ectl get /mirror/v1/controller/leader --print-value-only 2>/dev/null; }
for _ in $(seq 1 50); do [ "$(leader)" = c1 ] && break; sleep 0.1; done
expect_eq "$(leader)" "c1" "the first controller leads"
controller_start c2 --lease-ttl 3
for i in 1 2; do fleet_agent_start "hv$i" "$i"; done
has_vni() { hctl "$1" get sessions "$2" -o json 2>/dev/null | grep -q "\"vni\": $3"; }
sess=sess0000
host=$(python3 -c '
import json,sys; r=json.load(open(sys.argv[1])); s=[x for x in r["sessions"] if x["id"]==sys.argv[2]][0]
print({x["id"]: x["host"] for x in r["sources"]}[s["sources"][0]])' "$R" "$sess")
wait_until 15 has_vni "$host" "$sess" 1000 || fail "$host never applied $sess"
sleep 1
expect_eq "$(leader)" "c1" "the second controller waits"
grep -q "another controller leads" "$TOPO_DIR/controller-c2.log" || fail "c2 did not wait: $(cat "$TOPO_DIR/controller-c2.log")"

# The leader dies (no chance to revoke its lease): c2 takes over within the TTL.
t0=$(date +%s%N)
controller_kill c1
for _ in $(seq 1 100); do [ "$(leader)" = c2 ] && break; sleep 0.1; done
expect_eq "$(leader)" "c2" "the leader after c1 was killed"
t1=$(date +%s%N)
echo "controller takeover: $(( (t1 - t0) / 1000000 )) ms (lease TTL 3 s)"
[ $(( (t1 - t0) / 1000000 )) -le 5000 ] || fail "takeover took longer than the TTL and a margin"
python3 Tests/e2e/fleet_region.py change "$R" "$sess" 777 >"$TOPO_DIR/r2.json"
fctl apply -f "$TOPO_DIR/r2.json" >/dev/null
wait_until 10 has_vni "$host" "$sess" 777 || fail "the new leader did not render the change"

# A killed agent leaves fleet status within its lease TTL, and returns when restarted.
alive() { [ "$(fleet_status_field "$1" alive)" = "$2" ]; }
wait_until 10 alive hv2 true || fail "hv2 not alive in fleet status"
t0=$(date +%s%N)
fleet_agent_kill hv2
wait_until 14 alive hv2 false || { fctl fleet status; fail "a killed agent still shows alive after its TTL"; }
t1=$(date +%s%N)
echo "killed agent left fleet status after $(( (t1 - t0) / 1000000 )) ms (TTL 10 s)"
fctl fleet status
fleet_agent_start hv2 2
wait_until 10 alive hv2 true || fail "hv2 did not come back in fleet status"
echo "fleet_failover: ok"
