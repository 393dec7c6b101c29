# SPEC §10 collector health checks. Three collector namespaces behind a
# loadBalancer target with an ICMP health check, a steady stream of flows from the
# VM. One collector's address is removed: within intervalMs × unhealthyThreshold
# + 1 s no copy reaches it, and the flows of the other two never move and lose no
# copy. Restored: its flows come back to it. Then a nic target with a TCP health
# check whose collector stops listening: its copies are dropped and counted as
# target_unhealthy. Prints the measured failover time.
source "$(dirname "$0")/../lib.sh"
topo_up
NS_COL2=mcol2-$TOPO_ID
NS_COL3=mcol3-$TOPO_ID
health_down() {
  local rc=$?
  set +e  # topo_down must run whatever happens here
  for ns in "$NS_COL2" "$NS_COL3"; do ip netns del "$ns" 2>/dev/null; done
  (exit $rc)
  topo_down
}
trap health_down EXIT

# A collector namespace on its own underlay veth: NET.2 there, NET.1 on the host.
add_collector() {
  local ns=$1 ul=$2 net=$3
  ip netns add "$ns"
  in_ns "$ns" ip link set lo up
  in_ns "$ns" sysctl -qw net.ipv6.conf.default.addr_gen_mode=1 net.ipv6.conf.default.accept_ra=0
  ip link add eth0 netns "$ns" type veth peer name "$ul" netns "$NS_HOST"
  in_ns "$ns" ip addr add "$net.2/24" dev eth0
  in_ns "$ns" ip link set eth0 up
  in_ns "$NS_HOST" ip addr add "$net.1/24" dev "$ul"
  in_ns "$NS_HOST" ip link set "$ul" up
  in_ns "$NS_HOST" ip neigh replace "$net.2" lladdr "$(mac_of "$ns" eth0)" dev "$ul" nud permanent
  in_ns "$ns" ip neigh replace "$net.1" lladdr "$(mac_of "$NS_HOST" "$ul")" dev eth0 nud permanent
  in_ns "$ns" nft -f - <<'NFT'
table inet collector {
  chain input {
    type filter hook input priority 0;
    udp dport 4789 drop
  }
}
NFT
}
add_collector "$NS_COL2" underlay2 198.18.2
add_collector "$NS_COL3" underlay3 198.18.3

INTERVAL_MS=200
UNHEALTHY=3
HEALTHY=2
BOUND_MS=$((INTERVAL_MS * UNHEALTHY + 1000))
agent_start
python3 - "$TOPO_DIR/doc.json" "$INTERVAL_MS" "$UNHEALTHY" "$HEALTHY" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
d["targets"] = [{"id": "collector", "type": "loadBalancer", "backends": ["198.51.100.2", "198.18.2.2", "198.18.3.2"],
                 "healthCheck": {"protocol": "icmp", "intervalMs": int(sys.argv[2]),
                                 "unhealthyThreshold": int(sys.argv[3]), "healthyThreshold": int(sys.argv[4])}}]
json.dump(d, open(sys.argv[1], "w"))
PY
ctl apply -f "$TOPO_DIR/doc.json"

# health TARGET COLLECTOR: its state in agentctl status (healthy, unhealthy, unchecked).
health() {
  ctl status -o json | python3 -c '
import json, sys
s = json.load(sys.stdin)
for t in s.get("targets") or []:
    for c in t["collectors"]:
        if t["id"] == sys.argv[1] and c["address"] == sys.argv[2]: print(c["health"])' "$1" "$2"
}
# wait_health TARGET COLLECTOR STATE: polls status (10 s at most); prints when it was seen.
wait_health() {
  for _ in $(seq 1 200); do
    if [ "$(health "$1" "$2")" = "$3" ]; then date +%s.%N; return 0; fi
    sleep 0.05
  done
  fail "$1/$2 never became $3; status: $(ctl status)"
}
metric() { in_ns "$NS_HOST" curl -sS --max-time 5 http://127.0.0.1:9469/metrics | { grep -F "$1" || true; } | awk '{print $2}'; }
for c in 198.51.100.2 198.18.2.2 198.18.3.2; do expect_eq "$(health collector $c)" healthy "$c before any failure"; done

capture "$NS_COL" eth0 col1 udp port 4789
capture "$NS_COL2" eth0 col2 udp port 4789
capture "$NS_COL3" eth0 col3 udp port 4789
host_tap=$(mac_of "$NS_HOST" tap-vm1)
# 30 UDP flows (source ports 20000..20029), one packet each every 40 ms; the IPv4
# id numbers the rounds, and each round's send time is logged.
in_ns "$NS_VM" python3 - "$host_tap" "$TOPO_DIR/sent.json" <<'PY' &
import json, socket, sys, time
sys.path.insert(0, "Tests/e2e"); import send
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("eth0", 0))
src_mac, dst_mac = s.getsockname()[4][:6], bytes.fromhex(sys.argv[1].replace(":", ""))
rounds = []
start = time.monotonic()
r = 0
while time.monotonic() - start < 7.5:
    r += 1
    rounds.append(time.time())
    for p in range(20000, 20030):
        s.send(send.frame({"family": 4, "proto": "udp", "src": "192.0.2.10", "dst": "203.0.113.10",
                           "sport": p, "dport": 5001, "payload": 20, "id": r}, src_mac, dst_mac))
    time.sleep(max(0, start + r * 0.04 - time.monotonic()))
json.dump(rounds, open(sys.argv[2], "w"))
PY
sender=$!
sleep 2
t_remove=$(date +%s.%N)
in_ns "$NS_COL2" ip addr del 198.18.2.2/24 dev eth0
t_unhealthy=$(wait_health collector 198.18.2.2 unhealthy)
ctl get targets | tee "$TOPO_DIR/get.txt"
grep -q "2/3 healthy (unhealthy: 198.18.2.2)" "$TOPO_DIR/get.txt" || fail "get targets shows no HEALTH for the collector down"
expect_eq "$(metric 'mirror_target_backend_up{target="collector",backend="198.18.2.2"}')" 0 "backend_up of the collector down"
expect_eq "$(metric 'mirror_target_backend_up{target="collector",backend="198.18.3.2"}')" 1 "backend_up of a healthy collector"
sleep 2
t_restore=$(date +%s.%N)
in_ns "$NS_COL2" ip addr add 198.18.2.2/24 dev eth0
t_healthy=$(wait_health collector 198.18.2.2 healthy)
wait "$sender"
for c in col1 col2 col3; do capture_stop $c; done
[ "$(grep -c "collector unhealthy" "$AGENT_LOG")" = 1 ] || fail "the transition to unhealthy is not logged exactly once: $(grep collector "$AGENT_LOG")"
[ "$(grep -c "collector healthy again" "$AGENT_LOG")" = 1 ] || fail "the transition back is not logged exactly once"

python3 - "$TOPO_DIR" "$t_remove" "$t_unhealthy" "$t_restore" "$t_healthy" "$BOUND_MS" <<'PY'
import collections, json, sys
sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
d = sys.argv[1]
t_remove, t_unhealthy, t_restore, t_healthy = map(float, sys.argv[2:6])
bound = int(sys.argv[6]) / 1000
rounds = json.load(open(f"{d}/sent.json"))
sent_at = {r + 1: t for r, t in enumerate(rounds)}
COL = {"col1": "198.51.100.2", "col2": "198.18.2.2", "col3": "198.18.3.2"}
copies = collections.defaultdict(list)  # (sport, round) -> [(collector, ts)]
for name, addr in COL.items():
    for x in vd.copies(f"{d}/{name}.pcap"):
        if x["inner_proto"] != 17 or x["inner_src"] != "192.0.2.10" or x["vni"] != 200:
            continue
        assert x["outer_dst"] == addr, f"{name} captured a copy for {x['outer_dst']}"
        ident = int(x["inner_hex"][36:40], 16)  # inner IPv4 identification (14 + 4 bytes in)
        copies[(x["inner_sport"], ident)].append((addr, x["ts"]))
flows = range(20000, 20030)
before = [r for r, t in sent_at.items() if t < t_remove - 0.05]
home = {}
for f in flows:
    got = {c[0] for r in before for c in copies[(f, r)]}
    assert len(got) == 1, f"flow {f} had copies at {got} before anything failed"
    home[f] = got.pop()
per_home = collections.Counter(home.values())
print(f"{len(rounds)} rounds of {len(flows)} flows; flows per collector {dict(per_home)}")
assert set(per_home) == set(COL.values()), "every collector gets flows"
moved = [f for f in flows if home[f] == COL["col2"]]
# The others: every packet, all along, has exactly one copy, at its own collector.
for f in flows:
    if f in moved: continue
    for r in sent_at:
        c = copies[(f, r)]
        assert [a for a, _ in c] == [home[f]], f"flow {f} round {r}: copies {c} (home {home[f]})"
# Failover: the last copy to reach the removed collector before it was restored.
to_col2 = [ts for v in copies.values() for a, ts in v if a == COL["col2"] and t_remove <= ts < t_restore]
failover = (max(to_col2) - t_remove) if to_col2 else 0.0
print(f"failover: last copy at the removed collector {failover * 1000:.0f} ms after its address went away "
      f"(agent saw it unhealthy after {(t_unhealthy - t_remove) * 1000:.0f} ms; bound {bound * 1000:.0f} ms)")
assert failover <= bound, f"copies reached the removed collector {failover:.3f} s after removal (bound {bound} s)"
# Its flows went to the other two meanwhile, one collector each, nothing lost.
after = [r for r, t in sent_at.items() if t_remove + bound < t < t_restore]
assert after, "no round sent while the collector was down"
spread = set()
for f in moved:
    got = [a for r in after for a, _ in copies[(f, r)]]
    assert len(got) == len(after), f"flow {f} lost copies while its collector was down: {len(got)} of {len(after)}"
    assert len(set(got)) == 1 and COL["col2"] not in got, f"flow {f} while down: {collections.Counter(got)}"
    spread |= set(got)
print(f"the removed collector's {len(moved)} flows went to {sorted(spread)}")
# Restored: its flows come back to it.
back = [r for r, t in sent_at.items() if t > t_healthy + 0.05]
assert back, "no round sent after the collector was healthy again"
for f in moved:
    for r in back:
        assert [a for a, _ in copies[(f, r)]] == [COL["col2"]], f"flow {f} round {r} after restore: {copies[(f, r)]}"
print(f"restored: healthy again {(t_healthy - t_restore) * 1000:.0f} ms after its address came back; "
      f"{len(back)} rounds of its flows reached it again")
PY

# A nic target with a TCP health check: its collector listens, then stops.
# `ip netns exec` execs python in place, so $! is the listener itself.
ip netns exec "$NS_COL3" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.3.2", 4790)); s.listen(64)
while True:
    c, _ = s.accept(); c.close()' &
echo $! > "$TOPO_DIR/listener.pid"
python3 - "$TOPO_DIR/doc.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["targets"] = [{"id": "collector", "type": "nic", "address": "198.18.3.2",
                 "healthCheck": {"protocol": "tcp", "port": 4790, "intervalMs": 200, "unhealthyThreshold": 2, "healthyThreshold": 1}}]
json.dump(d, open(sys.argv[1], "w"))
PY
ctl apply -f "$TOPO_DIR/doc.json"
sleep 1
expect_eq "$(health collector 198.18.3.2)" healthy "the listening nic collector"
kill "$(cat "$TOPO_DIR/listener.pid")"; rm -f "$TOPO_DIR/listener.pid"
wait_health collector 198.18.3.2 unhealthy >/dev/null
ctl status | grep -E "198.18.3.2 +unhealthy +connect to port 4790" || fail "status shows no unhealthy collector with its error: $(ctl status)"
dropped() { metric 'mirror_copies_dropped_total{session="audit",reason="target_unhealthy"}'; }
accepted() { metric 'mirror_session_packets_total{session="audit"}'; }
before=$(dropped); accepted_before=$(accepted)
capture "$NS_COL3" eth0 nic udp port 4789
python3 -c '
import json
for p in range(21000, 21050):
    print(json.dumps({"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":p,"dport":5001,"payload":20}))
' | send_frames "$NS_VM" eth0 "$host_tap"
capture_stop nic
after=$(dropped); accepted_after=$(accepted)
# Every copy the session made is dropped as target_unhealthy: the 50 sent, and the
# peer's ICMP port unreachable answers to some of them (the session mirrors those too).
echo "target_unhealthy drops: $before -> $after; packets the session accepted: $accepted_before -> $accepted_after"
[ "$((after - before))" -ge 50 ] || fail "only $((after - before)) copies counted as target_unhealthy for 50 packets sent"
expect_eq "$((after - before))" "$((accepted_after - accepted_before))" "copies dropped as target_unhealthy = packets the session accepted"
expect_eq "$(copies_with_vni "$TOPO_DIR/nic.pcap" 200)" 0 "copies reaching the nic collector that is down"
