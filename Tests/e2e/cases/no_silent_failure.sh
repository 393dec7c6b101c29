# Ordinary mistakes do not stop the copies, and status tells the truth, under
# steady traffic: a second agent on the same pins, and a cleanup with --socket
# forgotten, are refused and change nothing; the agent's own mirror device is
# refused as a source; a deleted mirror device is put back within 2 s and
# counted as a repair; a renamed source interface is not mirrored as the source
# until its name returns; failed starts (a port in use, a state directory that
# is a file) leave nothing. The collector keeps receiving throughout. Then a
# stop, a cleanup and a start: the session's counter does not go back.
source "$(dirname "$0")/../lib.sh"
topo_up
agent_start
ctl apply -f examples/demo.json >/dev/null
capture "$NS_COL" eth0 col udp port 4789
host_tap=$(mac_of "$NS_HOST" tap-vm1)
# Outbound UDP to 203.0.113.10: decided by session audit (vni 200), every 10 ms.
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":64}' \
  > "$TOPO_DIR/flow.json"
ip netns exec "$NS_VM" python3 Tests/e2e/send.py --iface eth0 --dst-mac "$host_tap" --for-seconds 19 --interval 0.01 \
  "$TOPO_DIR/flow.json" >/dev/null &
echo $! > "$TOPO_DIR/sender.pid"
sleep 1.5
health() { ctl status -o json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s.get("health"), s.get("repairs", {}).get("mirror_device", 0), s["generation"])'; }
expect_eq "$(health)" "ok 0 1" "status before the mistakes"

# 1) A second agent on the same bpffs (its own socket, state and port), and a
#    cleanup given the running agent's pins and state but another socket.
t_second=$(date +%s.%N)
if timeout 20 nsenter --net="/run/netns/$NS_HOST" "$BIN_DIR/mirror-agent" --socket "$TOPO_DIR/other.sock" \
    --state-dir "$TOPO_DIR/other-state" --bpffs "$TOPO_DIR/bpffs" --metrics-address 127.0.0.1:19469 \
    >"$TOPO_DIR/second.log" 2>&1; then
  fail "a second agent on the same bpffs started"
fi
grep -q "in use by another mirror-agent" "$TOPO_DIR/second.log" || fail "second agent: $(cat "$TOPO_DIR/second.log")"
if nsenter --net="/run/netns/$NS_HOST" "$BIN_DIR/mirror-agent" cleanup --socket "$TOPO_DIR/other.sock" \
    --state-dir "$AGENT_STATE" --bpffs "$TOPO_DIR/bpffs" >"$TOPO_DIR/cleanup.log" 2>&1; then
  fail "a cleanup ran from under the agent"
fi
grep -q "in use by another mirror-agent" "$TOPO_DIR/cleanup.log" || fail "cleanup: $(cat "$TOPO_DIR/cleanup.log")"
in_ns "$NS_HOST" ip link show mirror0 >/dev/null || fail "mirror0 went away"
expect_eq "$(health)" "ok 0 1" "status after the refused second agent and cleanup"
# Failed starts leave nothing: an agent of its own (mirror1, its own directories)
# whose metrics port is taken, and one whose state directory is a file.
: > "$TOPO_DIR/state-file"
failed_start() {   # $1: what the log must say; the rest: the agent's own flags
  local says=$1; shift
  if timeout 20 nsenter --net="/run/netns/$NS_HOST" "$BIN_DIR/mirror-agent" --socket "$TOPO_DIR/third.sock" \
      --bpffs "$TOPO_DIR/third-bpffs" --mirror-device mirror1 "$@" >"$TOPO_DIR/third.log" 2>&1; then
    fail "an agent started with $*"
  fi
  grep -q "cannot start.*$says" "$TOPO_DIR/third.log" || fail "expected '$says' for $*: $(cat "$TOPO_DIR/third.log")"
  ! grep -q "bind(descriptor" "$TOPO_DIR/third.log" || fail "NIO's words, not an operator's: $(cat "$TOPO_DIR/third.log")"
  ! in_ns "$NS_HOST" ip link show mirror1 >/dev/null 2>&1 || fail "a failed start ($*) left mirror1"
  ! mountpoint -q "$TOPO_DIR/third-bpffs" 2>/dev/null || fail "a failed start ($*) mounted a bpffs"
}
failed_start "address already in use" --state-dir "$TOPO_DIR/third-state" --metrics-address 127.0.0.1:9469
failed_start "is not a directory" --state-dir "$TOPO_DIR/state-file" --metrics-address 127.0.0.1:19470
sleep 1.5

# 2) The agent's own device as a source: refused with its path, nothing applied.
t_own=$(date +%s.%N)
if ctl create sources bad --interface mirror0 >"$TOPO_DIR/own.log" 2>&1; then fail "mirror0 was accepted as a source"; fi
grep -q "mirror0" "$TOPO_DIR/own.log" || fail "the refusal does not name mirror0: $(cat "$TOPO_DIR/own.log")"
expect_eq "$(health)" "ok 0 1" "status after the refused source"
sleep 1.5

# 3) The mirror device deleted: put back and counted.
t_del=$(date +%s.%N)
in_ns "$NS_HOST" ip link del mirror0
for _ in $(seq 1 30); do [ "$(health)" = "ok 1 1" ] && break; sleep 0.1; done
expect_eq "$(health)" "ok 1 1" "status 3 s after mirror0 was deleted"
in_ns "$NS_HOST" ip -d link show mirror0 | grep -q external || fail "mirror0 was not made again as an external VXLAN device"
sleep 1.5

# 4) The source's interface renamed, then renamed back.
state_of_vm1() { ctl status -o json | python3 -c 'import json,sys; print([s["state"] for s in json.load(sys.stdin)["sources"] if s["id"] == "vm1"][0])'; }
t_ren=$(date +%s.%N)
in_ns "$NS_HOST" ip link set tap-vm1 name tap-vm1-old
for _ in $(seq 1 20); do [ "$(state_of_vm1)" = pending ] && break; sleep 0.1; done
expect_eq "$(state_of_vm1)" pending "vm1's state while its interface has another name"
sleep 1.5
t_back=$(date +%s.%N)
in_ns "$NS_HOST" ip link set tap-vm1-old name tap-vm1
for _ in $(seq 1 20); do [ "$(state_of_vm1)" = attached ] && break; sleep 0.1; done
expect_eq "$(state_of_vm1)" attached "vm1's state once its name is back"

wait "$(cat "$TOPO_DIR/sender.pid")" || true
capture_stop col
python3 - "$TOPO_DIR/col.pcap" "$t_second" "$t_own" "$t_del" "$t_ren" "$t_back" <<'PY'
import sys
sys.path.insert(0, "Tests/e2e")
import vxlan_decode as vd
pcap, t_second, t_own, t_del, t_ren, t_back = sys.argv[1], *map(float, sys.argv[2:])
c = [x for x in vd.copies(pcap) if x["vni"] == 200]
def n(a, b): return sum(1 for x in c if a <= x["ts"] < b)
end = max((x["ts"] for x in c), default=0)
def gap(a, b):  # the longest time without a copy in [a, b)
    ts = [a] + sorted(x["ts"] for x in c if a <= x["ts"] < b) + [b]
    return max(y - x for x, y in zip(ts, ts[1:]))
checks = [
    ("copies before the mistakes", n(0, t_second) > 50),
    ("copies while the second agent and the cleanup were refused", n(t_second, t_own) > 50),
    ("copies while the own-device source was refused", n(t_own, t_del) > 50),
    ("copies again within 2 s of mirror0's deletion", n(t_del, t_ren) > 50 and gap(t_second, t_ren) < 2),
    ("no copy from 1 s after the rename until the name is back", n(t_ren + 1, t_back) == 0),
    ("copies again within 1 s of the name's return", n(t_back + 1, 1e12) > 50 and end > t_back + 3),
]
print({"copies": len(c), "longest_gap_until_rename_s": round(gap(t_second, t_ren), 3),
       "after_rename_back": n(t_back + 1, 1e12)})
for name, ok in checks: print(("ok   " if ok else "FAIL ") + name)
sys.exit(0 if all(ok for _, ok in checks) else 1)
PY

# 5) Stop, cleanup (the maps go), start: the session's counter goes on from where
#    the last scrape left it, never back.
audit_packets() {
  in_ns "$NS_HOST" curl -sS --max-time 5 http://127.0.0.1:9469/metrics |
    awk '/^mirror_session_packets_total\{/ && /session="audit"/ {print $2}'
}
before=$(audit_packets)
[ -n "$before" ] && [ "$before" -gt 100 ] || fail "no audit packets counted before the stop: '$before'"
agent_stop
agent_cleanup || fail "cleanup failed: $(tail -3 "$AGENT_LOG")"
agent_start
ctl apply -f examples/demo.json >/dev/null
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":64,"count":10}' \
  | send_frames "$NS_VM" eth0 "$host_tap"
after=$(audit_packets)
[ -n "$after" ] && [ "$after" -ge "$((before + 10))" ] || fail "mirror_session_packets_total{session=audit} went from $before to '$after'"
echo "audit packets: $before before the stop, $after after cleanup, start and 10 more"
