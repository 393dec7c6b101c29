#!/usr/bin/env bash
# Cold start of the agent (issue 18, item 7): its state directory holds an applied
# document (examples/demo.json), the kernel holds nothing of it (`mirror-agent
# cleanup`) and its bpffs is a fresh, empty mount, while the VM's traffic already
# flows. Measured: the time from exec of mirror-agent to the first copy at the
# collector (an AF_PACKET socket there; the same clock as the start), BENCH_COLD_RUNS
# runs (default 7) of each of two ways, alternated: the agent as it is (the classifier's
# two TC programs verified at once, explain's test programs after the first apply) and
# its baseline, every program verified one after the other as before
# (MIRROR_BENCH_SERIAL_LOAD=1). JSON on stdout; progress on stderr. Uses $MIRROR_BIN_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${BENCH_COLD_RUNS:-7}
TOPO_ID=$(printf 'cs%06d' $((RANDOM * RANDOM % 1000000)))
source scripts/lib/topology.sh
source scripts/lib/agent.sh
topo_up >&2
agent_start >&2
ctl apply -f examples/demo.json >/dev/null
agent_stop

# Session "audit" (vni 200) mirrors this flow, VM -> peer.
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":64}' \
  >"$TOPO_DIR/flow.json"
host_tap=$(mac_of "$NS_HOST" tap-vm1)
ip netns exec "$NS_VM" python3 Tests/e2e/send.py --iface eth0 --dst-mac "$host_tap" --for-seconds 3600 \
  --interval 0.001 "$TOPO_DIR/flow.json" >/dev/null &
echo $! >"$TOPO_DIR/sender.pid"

# first_copy FILE: waits (at most 30 s) for the first VXLAN copy on the collector's
# eth0 and writes its time to FILE; FILE.ready once listening.
first_copy() {
  ip netns exec "$NS_COL" python3 - "$1" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
s.settimeout(30)
open(sys.argv[1] + ".ready", "w").close()
end = time.time() + 30
while time.time() < end:
    try:
        d = s.recv(2048)
    except socket.timeout:
        break
    if d[12:14] == b"\x08\x00" and d[23] == 17 and d[36:38] == b"\x12\xb5":
        open(sys.argv[1], "w").write(f"{time.time():.6f}\n")
        break
PY
  echo $! >"$TOPO_DIR/waiter.pid"
  for _ in $(seq 1 100); do [ -f "$1.ready" ] && return 0; sleep 0.02; done
}

# one KIND N: one cold start (KIND serial: the baseline); prints the ms from exec to
# the first copy.
one() {
  local kind=$1 n=$2 f="$TOPO_DIR/first-$1-$2" t0 t1 serial=0
  [ "$kind" = serial ] && serial=1
  agent_cleanup
  umount "$TOPO_DIR/bpffs" && mount -t bpf bpf "$TOPO_DIR/bpffs"
  [ -s "$AGENT_STATE/state.json" ] || { echo "cold_start: the state is gone" >&2; exit 1; }
  # No copy may arrive before the start.
  sleep 0.3
  first_copy "$f"
  t0=$(date +%s.%N)
  MIRROR_BENCH_SERIAL_LOAD=$serial nsenter --net="/run/netns/$NS_HOST" "$BIN_DIR/mirror-agent" --socket "$AGENT_SOCK" \
    --state-dir "$AGENT_STATE" --bpffs "$TOPO_DIR/bpffs" --metrics-address 127.0.0.1:9469 >>"$AGENT_LOG" 2>&1 &
  echo $! >"$TOPO_DIR/agent.pid"
  wait "$(cat "$TOPO_DIR/waiter.pid")" || true
  rm -f "$TOPO_DIR/waiter.pid"
  [ -s "$f" ] || { echo "cold_start: no copy within 30 s of the start ($kind $n); agent log:" >&2; tail -20 "$AGENT_LOG" >&2; exit 1; }
  t1=$(cat "$f")
  agent_stop
  python3 -c "print(round(($t1 - $t0) * 1000, 1))"
}

cold=(); serial=()
for n in $(seq 1 "$RUNS"); do
  c=$(one cold "$n"); cold+=("$c")
  b=$(one serial "$n"); serial+=("$b")
  echo "cold start $n: $c ms (serial load, the baseline: $b ms)" >&2
done
python3 - "${cold[*]}" "${serial[*]}" "$RUNS" <<'PY'
import json, statistics, sys
cold = [float(x) for x in sys.argv[1].split()]
serial = [float(x) for x in sys.argv[2].split()]
print(json.dumps({"runs": int(sys.argv[3]), "cold_ms": cold, "cold_ms_median": statistics.median(cold),
                  "serial_load_ms": serial, "serial_load_ms_median": statistics.median(serial), "goal_ms": 1000,
                  "what": "exec of mirror-agent to the first copy at the collector; state present, empty bpffs, "
                  "nothing of ours in the kernel, traffic flowing (examples/demo.json); serial_load: the baseline, "
                  "every classifier program verified one after the other (MIRROR_BENCH_SERIAL_LOAD=1), alternated"}))
PY
