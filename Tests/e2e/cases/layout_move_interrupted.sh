# A move between map layouts (issue 18, rolling upgrades) that is interrupted: the
# agent is killed (SIGKILL) in the middle of it, at each of the three steps a move
# can stop between (MIRROR_TEST_KILL_IN_LAYOUT_MOVE, KernelDatapath+Layout.swift):
#   filled       our maps hold the policy, nothing runs our programs yet;
#   stage-two    stage 2 runs the new layout's program, the classifiers the old one's;
#   classifiers  every hook runs the new programs, the old layout's counters are
#                not carried over and its pins are still there.
# The next agent started over those pins must finish the move: its status names the
# new layout and says it moved, the old layout's directory is gone, one classifier
# per hook. Traffic flows the whole time; every packet the VM sent must have exactly
# one copy at the collector. Bound 0 for both losses and duplicates: every hook
# changes programs only by an atomic replacement (BPF_LINK_UPDATE of a tcx link, or
# a clsact filter replaced in place) and both layouts' maps hold the same policy in
# both generation slots before anything moves, so whichever agent does a step and
# however often it is redone, each packet passes exactly one classifier and one
# stage 2. The session's packet counter only grows over the moves.
# Layouts A (this build) and B (mirror_fragments one entry larger, the next layout
# version) as in rolling_upgrade.sh: A -> B killed at `filled`, B -> A killed at
# `stage-two`, A -> B killed at `classifiers`.
source "$(dirname "$0")/../lib.sh"
topo_up

layout_a=$(sed -n 's/^#define MIRROR_LAYOUT_VERSION \([0-9]*\)$/\1/p' bpf/mirror_consts.h)
layout_b=$((layout_a + 1))
variant=$TOPO_DIR/objects-layout-$layout_b
mkdir -p "$variant"
inc=(-Ibpf)
for d in /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu; do [ -e "$d/asm/types.h" ] && inc+=("-I$d"); done
for o in classify encap; do
  clang -target bpf -O2 -g -Wall -Werror -Wno-unused-function "${inc[@]}" \
    -DMIRROR_LAYOUT_VERSION=$layout_b -DMIRROR_FRAGMENT_ENTRIES=16385 -c "bpf/$o.bpf.c" -o "$variant/$o.bpf.o"
done

json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
audit_packets() { ctl stats -o json | json_field '[s["packets"] for s in d["sessions"] if s["session"]=="audit"][0]'; }
layout_of() { ctl status -o json | json_field '"%s %s %s" % (d["layout"], d["layoutDirectory"].rsplit("/", 1)[1], d["layoutMovedFrom"])'; }
layout_dirs() { (cd "$TOPO_DIR/bpffs" && ls -d layout-* 2>/dev/null) | tr '\n' ' '; }

agent_start
ctl apply -f examples/demo.json >/dev/null
expect_eq "$(layout_of)" "$layout_a layout-$layout_a []" "status of agent A"

host_tap=$(mac_of "$NS_HOST" tap-vm1)
capture "$NS_COL" eth0 col udp port 4789
capture "$NS_VM" eth0 vm
# Outbound UDP to 203.0.113.10, decided by session audit (vni 200), every 2 ms.
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":64}' > "$TOPO_DIR/flow.json"
ip netns exec "$NS_VM" python3 Tests/e2e/send.py --iface eth0 --dst-mac "$host_tap" --for-seconds 120 --interval 0.002 \
  "$TOPO_DIR/flow.json" >/dev/null &
echo $! > "$TOPO_DIR/sender.pid"
sleep 1
counts="$(audit_packets)"

# killed_move FROM TO STEP [agent flags]: stop the agent; start the other build over
# its pins with the test hook, which kills it at STEP; then start it again without.
killed_move() {
  local from=$1 to=$2 step=$3 pid rc=0; shift 3
  agent_stop
  sleep 0.3
  MIRROR_TEST_KILL_IN_LAYOUT_MOVE=$step nsenter --net="/run/netns/$NS_HOST" "$BIN_DIR/mirror-agent" \
    --socket "$AGENT_SOCK" --state-dir "$AGENT_STATE" --bpffs "$TOPO_DIR/bpffs" --metrics-address 127.0.0.1:9469 \
    "$@" >>"$AGENT_LOG" 2>&1 &
  pid=$!
  wait "$pid" || rc=$?
  expect_eq "$rc" "137" "exit status of the agent killed at step $step of the move $from -> $to"
  grep -q "killed at step $step of the layout move" "$AGENT_LOG" || fail "the agent did not reach step $step"
  # Both layouts' pins are there, and the hooks still mirror (checked with the copies below).
  expect_eq "$(layout_dirs)" "$(printf 'layout-%s ' $(printf '%s\n' "$from" "$to" | sort -n))" \
    "layout directories right after the kill at $step"
  sleep 0.5
  agent_start "$@"
  expect_eq "$(layout_of)" "$to layout-$to [$from]" "status after the move $from -> $to killed at $step"
  expect_eq "$(layout_dirs)" "layout-$to " "layout directories after the move $from -> $to killed at $step"
  expect_eq "$(our_hooks tap-vm1 ingress)/$(our_hooks tap-vm1 egress)" "1/1" "classifiers on tap-vm1 after $step"
  expect_eq "$(hook_progs mirror0 egress | grep -c ' mirror_encap' || true)" "1" "stage 2 on mirror0 after $step"
  sleep 0.5
  counts="$counts $(audit_packets)"
}
killed_move "$layout_a" "$layout_b" filled --bpf-objects "$variant"
killed_move "$layout_b" "$layout_a" stage-two
killed_move "$layout_a" "$layout_b" classifiers --bpf-objects "$variant"
echo "audit packets after each move: $counts"
python3 -c 'import sys; c = [int(x) for x in sys.argv[1:]]; assert c == sorted(c) and len(set(c)) == len(c), c' $counts ||
  fail "the session's packet counter did not grow over every move: $counts"
kill "$(cat "$TOPO_DIR/sender.pid")"; wait "$(cat "$TOPO_DIR/sender.pid")" 2>/dev/null || true
rm -f "$TOPO_DIR/sender.pid"
capture_stop vm; capture_stop col

python3 - "$TOPO_DIR/vm.pcap" "$TOPO_DIR/col.pcap" <<'PY'
import collections, sys
sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
sent = [(ts, fr.hex()) for _, fr, ts in vd.pcap_packets(sys.argv[1]) if fr[12:14] == b"\x08\x00"]
c = [x for x in vd.copies(sys.argv[2]) if x["vni"] == 200]
got = collections.Counter(x["inner_hex"] for x in c)
lost = [(ts, h) for ts, h in sent if got[h] == 0]
dups = {h: n for h, n in got.items() if n > 1}
ts = sorted(x["ts"] for x in c)
gap = max(b - a for a, b in zip(ts, ts[1:])) if len(ts) > 1 else 0
print(f"three interrupted layout moves under traffic: VM sent {len(sent)}, collector got {len(c)} copies; "
      f"lost {len(lost)}, duplicated {len(dups)}; largest gap between copies {gap * 1000:.0f} ms")
assert len(sent) > 1000, "too little traffic to judge"
assert not lost, f"{len(lost)} packets lost their copy"
assert not dups, f"{len(dups)} packets copied more than once"
PY
echo "ok"
