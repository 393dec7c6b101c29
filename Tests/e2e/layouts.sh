# Shared by the cases that move an agent between map layouts (rolling_upgrade,
# layout_move_interrupted); sourced after lib.sh and topo_up.
#
# Layout A is this build's; layout B is the same sources with one pinned map changed
# (mirror_fragments one entry larger) and the next layout version (bpf/README.md,
# "Map layouts"), compiled here as the build plugin compiles them (no second Swift
# build) into $variant, for `mirror-agent --bpf-objects "$variant"`.
layout_a=$(sed -n 's/^#define MIRROR_LAYOUT_VERSION \([0-9]*\)$/\1/p' bpf/mirror_consts.h)
layout_b=$((layout_a + 1))
variant=$TOPO_DIR/objects-layout-$layout_b
mkdir -p "$variant"
layout_inc=(-Ibpf)
for d in /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu; do [ -e "$d/asm/types.h" ] && layout_inc+=("-I$d"); done
for o in classify encap; do
  clang -target bpf -O2 -g -Wall -Werror -Wno-unused-function "${layout_inc[@]}" \
    -DMIRROR_LAYOUT_VERSION=$layout_b -DMIRROR_FRAGMENT_ENTRIES=16385 -c "bpf/$o.bpf.c" -o "$variant/$o.bpf.o"
done

json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
# The packets session audit (examples/demo.json) has counted.
audit_packets() { ctl stats -o json | json_field '[s["packets"] for s in d["sessions"] if s["session"]=="audit"][0]'; }
# "LAYOUT layout-LAYOUT [MOVED FROM]" from the agent's status.
layout_of() { ctl status -o json | json_field '"%s %s %s" % (d["layout"], d["layoutDirectory"].rsplit("/", 1)[1], d["layoutMovedFrom"])'; }
layout_dirs() { (cd "$TOPO_DIR/bpffs" && ls -d layout-* 2>/dev/null) | tr '\n' ' '; }

# start_audit_traffic: captures at the collector (col) and the VM (vm), and sends
# outbound UDP to 203.0.113.10, decided by session audit (vni 200), every 2 ms for
# at most 120 s (stop_audit_traffic ends it).
start_audit_traffic() {
  local host_tap
  host_tap=$(mac_of "$NS_HOST" tap-vm1)
  capture "$NS_COL" eth0 col udp port 4789
  capture "$NS_VM" eth0 vm
  echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":64}' > "$TOPO_DIR/flow.json"
  ip netns exec "$NS_VM" python3 Tests/e2e/send.py --iface eth0 --dst-mac "$host_tap" --for-seconds 120 --interval 0.002 \
    "$TOPO_DIR/flow.json" >/dev/null &
  echo $! > "$TOPO_DIR/sender.pid"
}

# stop_audit_traffic WHAT: ends the traffic and the captures, then checks that every
# packet the VM sent has exactly one copy at the collector (WHAT names the run).
stop_audit_traffic() {
  kill "$(cat "$TOPO_DIR/sender.pid")"; wait "$(cat "$TOPO_DIR/sender.pid")" 2>/dev/null || true
  rm -f "$TOPO_DIR/sender.pid"
  capture_stop vm; capture_stop col
  python3 - "$TOPO_DIR/vm.pcap" "$TOPO_DIR/col.pcap" "$1" <<'PY'
import collections, sys
sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
sent = [(ts, fr.hex()) for _, fr, ts in vd.pcap_packets(sys.argv[1]) if fr[12:14] == b"\x08\x00"]
c = [x for x in vd.copies(sys.argv[2]) if x["vni"] == 200]
got = collections.Counter(x["inner_hex"] for x in c)
lost = [(ts, h) for ts, h in sent if got[h] == 0]
dups = {h: n for h, n in got.items() if n > 1}
ts = sorted(x["ts"] for x in c)
gap = max(b - a for a, b in zip(ts, ts[1:])) if len(ts) > 1 else 0
print(f"{sys.argv[3]}: VM sent {len(sent)}, collector got {len(c)} copies; "
      f"lost {len(lost)}, duplicated {len(dups)}; largest gap between copies {gap * 1000:.0f} ms")
assert len(sent) > 1000, "too little traffic to judge"
assert not lost, f"{len(lost)} packets lost their copy"
assert not dups, f"{len(dups)} packets copied more than once"
PY
}
