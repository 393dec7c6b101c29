# Rolling upgrades (issue 18). A DaemonSet update starts a new agent over the old
# one's pins. Traffic flows from the VM the whole time; agent A (this build) mirrors;
# it is stopped (SIGTERM: its pins stay and keep mirroring); agent B, the same
# build loading BPF objects with a changed pinned map (mirror_fragments one entry
# larger) and the next layout version, starts over A's pins and moves everything to
# its own maps; then A's objects again over B's pins (the downgrade). Every packet
# the VM sent must have exactly one copy at the collector (copies lost and
# duplicated are counted); the status names the layout; the old layout's directory
# is gone after each move; the counters continue across both moves.
source "$(dirname "$0")/../lib.sh"
topo_up

source "$(dirname "$0")/../layouts.sh"
prog_ids() { echo "$(hook_progs tap-vm1 ingress | awk '{print $2}') $(hook_progs tap-vm1 egress | awk '{print $2}') $(hook_progs mirror0 egress | awk '{print $2}')"; }

agent_start
ctl apply -f examples/demo.json >/dev/null
expect_eq "$(layout_of)" "$layout_a layout-$layout_a []" "status of agent A (layout, directory, moved from)"
ctl status | grep -E "^layout: +$layout_a \(pins in .*/layout-$layout_a\)$" >/dev/null || fail "status text: $(ctl status)"

start_audit_traffic
sleep 1
before=$(audit_packets)
ids_a=$(prog_ids)

# move OLD_LAYOUT NEW_LAYOUT [agent flags]: stop the agent, start the other build over its pins.
move() {
  local from=$1 to=$2; shift 2
  agent_stop
  sleep 0.5   # the stopped agent's pins mirror alone for a while
  local t0; t0=$(date +%s.%N)
  agent_start "$@"
  echo "layout $from -> $to: agent up after $(python3 -c "import time; print(f'{(time.time() - $t0) * 1000:.0f}')") ms"
  expect_eq "$(layout_of)" "$to layout-$to [$from]" "status after the move from layout $from"
  ctl status | grep -E "^layout: +$to \(pins in .*/layout-$to; moved from layout $from at start\)$" >/dev/null ||
    fail "status text after the move: $(ctl status)"
  expect_eq "$(layout_dirs)" "layout-$to " "layout directories after the move from layout $from"
  expect_eq "$(our_hooks tap-vm1 ingress)/$(our_hooks tap-vm1 egress)" "1/1" "classifiers on tap-vm1 after the move"
  sleep 1
}
move "$layout_a" "$layout_b" --bpf-objects "$variant"
ids_b=$(prog_ids)
[ "$ids_b" != "$ids_a" ] || fail "the programs on the hooks did not change: $ids_a"
# The changed map is B's own: mirror_fragments one entry larger.
bpftool -j map show pinned "$TOPO_DIR/bpffs/layout-$layout_b/mirror_fragments" | grep -q '"max_entries":16385' ||
  fail "layout $layout_b's mirror_fragments is not the variant's"
mid=$(audit_packets)
move "$layout_b" "$layout_a"
ids_a2=$(prog_ids)
[ "$ids_a2" != "$ids_b" ] || fail "the programs on the hooks did not change back: $ids_b"
after=$(audit_packets)
echo "audit packets: $before before, $mid after the upgrade, $after after the downgrade"
[ "$mid" -gt "$before" ] && [ "$after" -gt "$mid" ] || fail "the counters did not continue across the moves"
stop_audit_traffic "rolling upgrade and downgrade under traffic"
echo "ok"
