# A graceful stop followed by `mirror-agent cleanup` leaves no kernel
# state behind: no program of ours (tcx link or tc filter) on any device of the host namespace, no mirror
# or segmenter devices, no pins, no nftables table, and none of the programs, maps
# and links this run loaded still exists (checked by id: other runs on the machine
# may hold mirror_* programs of their own). The same after a `kill -9` + cleanup.
# A second cleanup is a no-op that succeeds.
source "$(dirname "$0")/../lib.sh"
topo_up
host_devs() { in_ns "$NS_HOST" ls /sys/class/net; }
# "DEV HOOK PROG_ID" for every BPF filter on every device of the host namespace.
our_filters() {
  local d h
  for d in $(host_devs); do
    for h in ingress egress; do
      hook_progs "$d" "$h" 2>/dev/null | awk -v d="$d" -v h="$h" '{print d, h, $2, $3}' || true
    done
  done
}
pins() { ls -A "$TOPO_DIR/bpffs" | grep -v '^\(maps\|progs\)\.debug$' || true; }

run_and_record() {   # start (with "$@"), apply a document using every part of the datapath, record ids
  agent_start "$@"
  # Enforced security groups (nftables), sessions, a VXLAN device and the segmenter.
  ctl apply -f examples/security-groups.json >/dev/null
  in_ns "$NS_HOST" nft list table inet mirror_enforce >/dev/null || fail "no enforcement table after apply"
  our_filters > "$TOPO_DIR/filters.txt"
  cat "$TOPO_DIR/filters.txt"
  grep -q "^tap-vm1 ingress " "$TOPO_DIR/filters.txt" && grep -q "^tap-vm1 egress " "$TOPO_DIR/filters.txt" ||
    fail "the agent attached nothing to tap-vm1"
  # Every program and map the agent holds (its descriptors' fdinfo), plus the
  # attached programs and their maps.
  local pid; pid=$(cat "$TOPO_DIR/agent.pid")
  progs=$( (awk '{print $3}' "$TOPO_DIR/filters.txt"; cat /proc/"$pid"/fdinfo/* 2>/dev/null | sed -n 's/^prog_id:[[:space:]]*//p') | sort -un)
  maps=$( (for p in $progs; do bpftool prog show id "$p" -j | python3 -c 'import json,sys; print(*json.load(sys.stdin).get("map_ids", []))'; done | tr ' ' '\n'
           cat /proc/"$pid"/fdinfo/* 2>/dev/null | sed -n 's/^map_id:[[:space:]]*//p') | grep . | sort -un)
  [ -n "$maps" ] || fail "could not read the maps of programs $progs"
  [ -n "$(pins)" ] || fail "nothing pinned under $TOPO_DIR/bpffs while running"
  echo "programs: $(echo $progs), maps: $(echo $maps), pins: $(pins | wc -l)"
}

check_nothing_left() {   # $1: how the agent went away
  local what=$1 left
  # Programs and maps are freed once nothing refers to them (deferred in the kernel).
  for _ in $(seq 1 30); do
    left=""
    for p in $progs; do bpftool prog show id "$p" >/dev/null 2>&1 && left="$left prog:$p"; done
    for m in $maps; do bpftool map show id "$m" >/dev/null 2>&1 && left="$left map:$m"; done
    [ -z "$left" ] && break
    sleep 0.1
  done
  [ -z "$left" ] || fail "$what: still in the kernel:$left"
  left=$(bpftool link show -j 2>/dev/null | python3 -c '
import json, sys
ours = set(map(int, sys.argv[1].split()))
print(" ".join(str(l["id"]) for l in json.load(sys.stdin) if l.get("prog_id") in ours))' "$(echo $progs)")
  [ -z "$left" ] || fail "$what: BPF links of our programs remain: $left"
  left=$(our_filters)
  [ -z "$left" ] || fail "$what: BPF filters remain in the host namespace: $left"
  for d in mirror0 mirseg0 mirseg1; do
    ! in_ns "$NS_HOST" ip link show "$d" >/dev/null 2>&1 || fail "$what: device $d remains"
  done
  [ -z "$(pins)" ] || fail "$what: pins remain under $TOPO_DIR/bpffs: $(pins | tr '\n' ' ')"
  ! in_ns "$NS_HOST" nft list table inet mirror_enforce >/dev/null 2>&1 || fail "$what: nft table mirror_enforce remains"
  [ ! -e "$AGENT_SOCK" ] || fail "$what: the control socket remains"
  # What we did not create is still there.
  for d in tap-vm1 peer0 underlay0; do in_ns "$NS_HOST" ip link show "$d" >/dev/null || fail "$what: cleanup removed $d"; done
  echo "$what: nothing left"
}

# 1) graceful stop: the datapath stays (mirroring goes on without the agent) ...
run_and_record
agent_stop
expect_eq "$(our_filters | awk '{print $1, $2, $3}' | sort)" "$(awk '{print $1, $2, $3}' "$TOPO_DIR/filters.txt" | sort)" \
  "filters after a graceful stop (the datapath stays)"
# ... until cleanup.
agent_cleanup || fail "cleanup failed: $(tail -3 "$AGENT_LOG")"
check_nothing_left "graceful stop + cleanup"
agent_cleanup || fail "a second cleanup failed: $(tail -3 "$AGENT_LOG")"

# 2) kill -9, then cleanup.
run_and_record
kill -9 "$(cat "$TOPO_DIR/agent.pid")"; wait "$(cat "$TOPO_DIR/agent.pid")" 2>/dev/null || true
rm -f "$TOPO_DIR/agent.pid"
agent_cleanup || fail "cleanup after kill -9 failed: $(tail -3 "$AGENT_LOG")"
check_nothing_left "kill -9 + cleanup"

# 3) a run on clsact: cleanup also removes the clsact qdiscs its filters sat on.
clsact_on() { in_ns "$NS_HOST" tc qdisc show dev "$1" | grep -q clsact; }
! clsact_on tap-vm1 || fail "tap-vm1 has a clsact qdisc before the clsact run"
run_and_record --tc-attach clsact
clsact_on tap-vm1 || fail "no clsact qdisc on tap-vm1 in a clsact run"
agent_stop
agent_cleanup || fail "cleanup after a clsact run failed: $(tail -3 "$AGENT_LOG")"
check_nothing_left "clsact run + cleanup"
! clsact_on tap-vm1 || fail "cleanup left the clsact qdisc on tap-vm1"

# 4) cleanup refuses to pull the datapath from under a running agent.
agent_start
ctl apply -f examples/demo.json >/dev/null
if agent_cleanup; then fail "cleanup ran while an agent was running"; fi
ctl status >/dev/null || fail "the agent is not answering after a refused cleanup"
[ -n "$(our_filters)" ] || fail "a refused cleanup removed filters"
echo "ok"
