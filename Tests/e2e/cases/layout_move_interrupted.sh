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

source "$(dirname "$0")/../layouts.sh"

agent_start
ctl apply -f examples/demo.json >/dev/null
expect_eq "$(layout_of)" "$layout_a layout-$layout_a []" "status of agent A"

start_audit_traffic
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
stop_audit_traffic "three interrupted layout moves under traffic"
echo "ok"
