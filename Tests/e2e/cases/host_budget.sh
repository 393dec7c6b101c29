# SPEC §10: mirroring never starves the workload it watches. The underlay is shaped
# to a fixed capacity (tbf, 200 Mbit/s, on the host's side of underlay0). The
# workload crosses it: a paced TCP transfer (iperf3 -b 120M) from the VM to a server
# behind the underlay (the topology's only namespace there is the collector's, so the
# server runs there: the VM's traffic to it is routed by the host out of underlay0,
# where the copies leave too). A session mirrors the workload's data (the VM's
# outbound TCP). Three runs:
#   1. no mirroring: the workload's throughput T0, and what it puts on the underlay;
#   2. mirroring, no budget: copies compete with the workload for the capacity;
#   3. mirroring, the agent restarted with --max-mirror-bps = the capacity the
#      workload left over in run 1: the copies fit beside it.
# With the budget the workload keeps >= 95 % of T0, copies over the budget are
# counted as host_budget, and copies still arrive.
source "$(dirname "$0")/../lib.sh"
topo_up
CAPACITY=200000000
RATE=120M
SECONDS_PER_RUN=${BUDGET_SECONDS:-5}
# The server behind the underlay answers the VM through the host.
in_ns "$NS_COL" ip route add default via "$HOST_UL_IP"
in_ns "$NS_HOST" tc qdisc add dev "$UL" root tbf rate "$CAPACITY"bit burst 64kb latency 50ms
ip netns exec "$NS_COL" iperf3 -s -B "$COL_IP" >"$TOPO_DIR/iperf3-server.log" 2>&1 &
echo $! > "$TOPO_DIR/iperf3-server.pid"
for _ in $(seq 1 50); do in_ns "$NS_COL" ss -ltn | grep -q ":5201 " && break; sleep 0.1; done

doc() {
  python3 - "$TOPO_DIR/$1.json" "$1" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
d["filters"] = [{"id": "workload", "outbound": [{"priority": 1, "action": "accept", "ethertype": "ipv4",
                                                  "protocol": "tcp", "destinationPorts": "5201"}]}]
d["sessions"] = [] if sys.argv[2] == "none" else [
    {"id": "bulk", "priority": 1, "filter": "workload", "sources": ["vm1"], "target": "collector", "vni": 710}]
json.dump(d, open(sys.argv[1], "w"))
PY
}
doc none; doc mirrored

sent_bytes() { in_ns "$NS_HOST" tc -s -j qdisc show dev "$UL" | python3 -c 'import json,sys; print([q for q in json.load(sys.stdin) if q["kind"] == "tbf"][0]["bytes"])'; }
# run NAME: the workload for SECONDS_PER_RUN; prints "throughput_bps underlay_bps",
# the underlay's (all that left underlay0, as tbf counts it: Ethernet header on,
# no FCS) over the transfer's own duration.
run() {
  local b0 b1
  b0=$(sent_bytes)
  in_ns "$NS_VM" iperf3 -c "$COL_IP" -t "$SECONDS_PER_RUN" -b "$RATE" -J > "$TOPO_DIR/$1.json"
  b1=$(sent_bytes)
  python3 - "$TOPO_DIR/$1.json" "$b0" "$b1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["end"]["sum_received"]
b0, b1 = (float(x) for x in sys.argv[2:])
print(f"{r['bits_per_second']:.0f} {(b1 - b0) * 8 / r['seconds']:.0f}")
PY
}
scrape() { nsenter --net="/run/netns/$NS_HOST" curl -sf --max-time 5 http://127.0.0.1:9469/metrics >"$TOPO_DIR/metrics.txt"; }
series() { awk -v s="$1" '$1 == s { print $2 }' "$TOPO_DIR/metrics.txt"; }

agent_start
ctl apply -f "$TOPO_DIR/none.json" >/dev/null
read -r t0 u0 < <(run none)
leftover=$(python3 -c "print(max(1, int($CAPACITY - $u0)))")
echo "1. no mirroring: workload $t0 bit/s, underlay $u0 bit/s; capacity left over $leftover bit/s"

ctl apply -f "$TOPO_DIR/mirrored.json" >/dev/null
read -r t1 u1 < <(run nobudget)
scrape || fail "/metrics did not answer"
sent1=$(series 'mirror_copies_sent_total{session="bulk"}')
echo "2. mirroring, no budget: workload $t1 bit/s, underlay $u1 bit/s, $sent1 copies sent"
[ "${sent1:-0}" -gt 0 ] || fail "run 2 mirrored nothing"

agent_stop
agent_start --max-mirror-bps "$leftover"
read -r t2 u2 < <(run budget)
scrape || fail "/metrics did not answer"
skipped=$(series 'mirror_copies_skipped_total{session="bulk",reason="host_budget"}')
sent2=$(series 'mirror_copies_sent_total{session="bulk"}')
echo "3. mirroring, --max-mirror-bps $leftover: workload $t2 bit/s, underlay $u2 bit/s;" \
  "copies sent $((sent2 - sent1)), skipped for the host budget $skipped"
python3 - "$t0" "$t1" "$t2" <<'PY'
import sys
t0, t1, t2 = (float(x) for x in sys.argv[1:])
print(f"workload throughput: no mirroring {t0/1e6:.1f} Mbit/s; mirroring without budget {t1/1e6:.1f} ({t1/t0:.1%});"
      f" with the budget {t2/1e6:.1f} ({t2/t0:.1%})")
PY
[ "${skipped:-0}" -gt 0 ] || fail "no copy was skipped for the host budget"
[ $((sent2 - sent1)) -gt 0 ] || fail "with the budget no copy was sent at all"
python3 -c "import sys; sys.exit(0 if $t2 >= 0.95 * $t0 else 1)" ||
  fail "with the budget the workload kept only $t2 of $t0 bit/s (< 95 %)"
echo "PASS"
