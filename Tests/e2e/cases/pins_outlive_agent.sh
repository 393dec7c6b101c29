# Pins must outlive the agent (issue 18). The topology's bpffs is the host's:
# status says "persistent". A bpffs only the agent's own private mount namespace
# has (started under `ip netns exec` on a directory that is not yet a bpffs) would
# die with it: the agent refuses to start, saying why; with --ephemeral-pins it starts
# and status says "ephemeral". Then the cold start: everything removed from the
# kernel and the bpffs emptied, the state kept, traffic flowing: the time from
# starting the agent to the first copy at the collector (goal < 1 s, printed).
source "$(dirname "$0")/../lib.sh"
topo_up
agent_start
ctl apply -f examples/demo.json
ctl status | grep -E '^pins: +persistent \(' || fail "status: $(ctl status)"
expect_eq "$(ctl status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pins"])')" "persistent" "status -o json pins"
agent_stop

# A fresh directory under `ip netns exec`: the agent mounts a bpffs the host never
# sees. In a namespace of its own: one netns holds one VXLAN external device per port.
NS_EPH=meph-$TOPO_ID
ip netns add "$NS_EPH"
# set +e: the trap runs under errexit, and a failed step here must not skip topo_down.
trap 'rc=$?; set +e; ip netns del "$NS_EPH" 2>/dev/null; (exit $rc); topo_down' EXIT
priv=$TOPO_DIR/private-pins
mkdir -p "$priv"
eph=(--socket "$TOPO_DIR/eph.sock" --state-dir "$TOPO_DIR/eph-state" --bpffs "$priv" --metrics-address 127.0.0.1:9479)
rc=0; out=$(timeout 20 ip netns exec "$NS_EPH" "$BIN_DIR/mirror-agent" "${eph[@]}" 2>&1) || rc=$?
echo "refused (rc $rc): $out"
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "an agent on pins that die with it started (rc $rc)"
echo "$out" | grep -q "exists only in this agent's private mount namespace" || fail "the refusal does not say why: $out"
echo "$out" | grep -q -- "--ephemeral-pins" || fail "the refusal does not name --ephemeral-pins: $out"
mountpoint -q "$priv" && fail "the private bpffs is visible in the host's namespace"
ip -n "$NS_EPH" link show mirror0 >/dev/null 2>&1 && fail "the refused agent made its mirror device"

ip netns exec "$NS_EPH" "$BIN_DIR/mirror-agent" "${eph[@]}" --ephemeral-pins >"$TOPO_DIR/eph.log" 2>&1 &
eph_pid=$!
echo $eph_pid > "$TOPO_DIR/eph.pid"
# Not polled through the socket while it starts: wait for its log line.
for _ in $(seq 1 100); do grep -q "control API listening" "$TOPO_DIR/eph.log" && break; sleep 0.1; done
sleep 1
st=$("$BIN_DIR/agentctl" --socket "$TOPO_DIR/eph.sock" status) || {
  kill -9 $eph_pid 2>/dev/null || true
  fail "ephemeral agent: $(cat "$TOPO_DIR/eph.log")"
}
kill -TERM $eph_pid; wait $eph_pid || true
rm -f "$TOPO_DIR/eph.pid"
echo "$st" | grep -E "^pins: +ephemeral \(.*private mount namespace" || fail "status of the ephemeral agent: $st"
grep -q "ephemeral-pins: pins die with the agent" "$TOPO_DIR/eph.log" || fail "no warning in the log: $(cat "$TOPO_DIR/eph.log")"
ip netns del "$NS_EPH"

# Cold start: nothing in the kernel, an empty bpffs, the state present.
host_tap=$(mac_of "$NS_HOST" tap-vm1)
capture "$NS_COL" eth0 col udp port 4789
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":64}' > "$TOPO_DIR/flow.json"
agent_cleanup
umount "$TOPO_DIR/bpffs" && mount -t bpf bpf "$TOPO_DIR/bpffs"
[ -z "$(pins)" ] || fail "the bpffs is not empty: $(pins)"
[ -s "$AGENT_STATE/state.json" ] || fail "the state is gone: $(ls "$AGENT_STATE")"
ip netns exec "$NS_VM" python3 Tests/e2e/send.py --iface eth0 --dst-mac "$host_tap" --for-seconds 15 --interval 0.005 \
  "$TOPO_DIR/flow.json" >/dev/null &
sender=$!
sleep 1
t_start=$(date +%s.%N); agent_start
t_up=$(date +%s.%N)
wait $sender || true
capture_stop col
ctl status | grep -E '^pins: +persistent' >/dev/null || fail "status after the cold start: $(ctl status)"
python3 - "$TOPO_DIR/col.pcap" "$t_start" "$t_up" <<'PY'
import sys; sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
pcap, t_start, t_up = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
print(f"agent started and answering its socket after {(t_up - t_start) * 1000:.0f} ms")
before = [x for x in vd.copies(pcap) if x["vni"] == 200 and x["ts"] < t_start]
after = [x for x in vd.copies(pcap) if x["vni"] == 200 and x["ts"] >= t_start]
assert not before, f"{len(before)} copies before the agent started: the kernel was not empty"
assert after, "no copy after the cold start"
gap = after[0]["ts"] - t_start
print(f"cold start (empty bpffs, state present) to the first copy: {gap * 1000:.0f} ms; {len(after)} copies after")
# The goal is 1 s and is NOT met yet: verifying the classifier programs takes
# seconds (BPF_PROG_LOAD was 6 of 9 s under strace on this 2-core machine at load
# ~8), see the fleetcore report. This bound only catches a start that stalls.
assert gap < 14.0, f"cold start took {gap:.2f} s"
PY
