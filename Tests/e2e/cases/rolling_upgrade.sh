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

# B's objects: the same sources, one pinned map changed, the layout version bumped
# (bpf/README.md, "Map layouts"). Compiled here, as the build plugin compiles them:
# no second Swift build.
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
prog_ids() { echo "$(hook_progs tap-vm1 ingress | awk '{print $2}') $(hook_progs tap-vm1 egress | awk '{print $2}') $(hook_progs mirror0 egress | awk '{print $2}')"; }
layout_dirs() { (cd "$TOPO_DIR/bpffs" && ls -d layout-* 2>/dev/null) | tr '\n' ' '; }

agent_start
ctl apply -f examples/demo.json >/dev/null
expect_eq "$(layout_of)" "$layout_a layout-$layout_a []" "status of agent A (layout, directory, moved from)"
ctl status | grep -E "^layout: +$layout_a \(pins in .*/layout-$layout_a\)$" >/dev/null || fail "status text: $(ctl status)"

host_tap=$(mac_of "$NS_HOST" tap-vm1)
capture "$NS_COL" eth0 col udp port 4789
capture "$NS_VM" eth0 vm
# Outbound UDP to 203.0.113.10, decided by session audit (vni 200), every 2 ms.
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":64}' > "$TOPO_DIR/flow.json"
ip netns exec "$NS_VM" python3 Tests/e2e/send.py --iface eth0 --dst-mac "$host_tap" --for-seconds 120 --interval 0.002 \
  "$TOPO_DIR/flow.json" >/dev/null &
echo $! > "$TOPO_DIR/sender.pid"
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
print(f"rolling upgrade and downgrade under traffic: VM sent {len(sent)}, collector got {len(c)} copies; "
      f"lost {len(lost)}, duplicated {len(dups)}; largest gap between copies {gap * 1000:.0f} ms")
assert len(sent) > 1000, "too little traffic to judge"
assert not lost, f"{len(lost)} packets lost their copy"
assert not dups, f"{len(dups)} packets copied more than once"
PY
echo "ok"
