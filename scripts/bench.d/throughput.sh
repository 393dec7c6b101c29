#!/usr/bin/env bash
# Throughput of mirroring: a matrix of cells, every cell side by side in one run.
# The VM namespace sends UDP frames into its veth ("the tap"); the host forwards
# them to the peer and, per mode, mirrors them to the collector.
#
# Matrix (each dimension a variable below; `BENCH_*` narrows it for a smoke run):
#   layout       paged:  trafgen (AF_PACKET TX ring): all but the Ethernet header in
#                        a page fragment;
#                linear: scripts/bench.d/lsend.c, AF_PACKET sendmmsg without a ring:
#                        the whole frame in the skb head, as a VM's small packets
#                        arrive from tap/vhost.
#   frame_bytes  64 and 1,400 bytes written (Ethernet header to the end of UDP, no FCS)
#   rules_shape  30 rules differing by: port | src32 | src24 | dst32 | dst24 | proto |
#                ipv6 (scripts/bench.d/rules.py writes each for the agent, u32 and nft)
#   matching     the last rule matches (every packet mirrored) | none matches
#   mode         none | agent | tcxhook (an empty program on tcx links: the floor of
#                any classifier) | u32 (tc u32 + mirred to a static VXLAN device) |
#                nftdup (nft netdev dup to the same device) | hook (the empty program
#                on clsact; not in the default set)
#   tcp          iperf3 from the VM to the peer, 1 and 4 streams, GSO/TSO as the
#                kernel does it, one accept-all rule (every segment mirrored):
#                Gbit/s, the segments the peer received and the copies at the
#                collector.
# Rounds are interleaved: round 1 of every cell, then round 2, ...; within a round,
# cells are grouped by (layout, frame size), `none` first, so that drift on a shared
# machine hits all modes alike; report.py takes each cell's pps over none's in the
# same round and group, and reports the median. Then (unless --quick shrinks them)
# the unmatched-path phases: alternating, breakdown, profile.
# Writes raw cells as JSON lines to $1. BENCH_BUDGET_ONLY=1: print the budget, exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: throughput.sh OUT.jsonl}
QUICK=${BENCH_QUICK:-0}
# The full run's defaults are chosen so that `scripts/bench` (all parts) fits in 40
# minutes on a 2-core VM; the profile of the unmatched path is `scripts/bench
# profile` (its phase runs here only when BENCH_PROFILE_CYCLES asks for it).
if [ "$QUICK" = 1 ]; then q_rounds=1 q_secs=1 q_tcp=1 q_alt=2 q_brk=2 q_prof=0 q_prof_s=1
else q_rounds=3 q_secs=1.5 q_tcp=2 q_alt=20 q_brk=20 q_prof=0 q_prof_s=3; fi
ROUNDS=${BENCH_ROUNDS:-$q_rounds}
SECONDS_PER_ROUND=${BENCH_SECONDS:-$q_secs}
TCP_SECONDS=${BENCH_TCP_SECONDS:-$q_tcp}
LAYOUTS=${BENCH_LAYOUTS-"paged linear"}
FRAME_SIZES=${BENCH_FRAME_BYTES-"64 1400"}
SHAPES=${BENCH_SHAPES-"port src32 src24 dst32 dst24 proto ipv6"}
MATCHING=${BENCH_MATCHING-"1 0"}
TCP_STREAMS=${BENCH_TCP_STREAMS-"1 4"}
# The agent right after none: that pair is measured closest together.
MODES=${BENCH_MODES:-"none agent tcxhook u32 nftdup"}
RULES=30
WARM=0.3   # seconds between the sender's start and the measured window
# Seconds a cell costs beyond its measured window (policy up and down, the sender's
# start and stop, counters), and the agent's one start and cleanup: the budget's
# only guesses (each cell records its `wall` time to check them).
CELL_OVERHEAD=${BENCH_CELL_OVERHEAD:-1.0}
TCP_OVERHEAD=1.5
AGENT_OVERHEAD=12   # the agent's one start and its cleanup at the end
ALT_CYCLES=${BENCH_ALT_CYCLES:-$q_alt}
ALT_SECONDS=${BENCH_ALT_SECONDS:-0.5}
# The alternating phase's rules and frames: `port` on `paged` as in every earlier
# run; BENCH_ALT_SHAPE / BENCH_ALT_LAYOUT try another cell the same way.
ALT_SHAPE=${BENCH_ALT_SHAPE:-port}
ALT_LAYOUT=${BENCH_ALT_LAYOUT:-paged}
BREAKDOWN_CYCLES=${BENCH_BREAKDOWN_CYCLES:-$q_brk}
BREAKDOWN_SECONDS=${BENCH_BREAKDOWN_SECONDS:-0.3}
PROFILE_CYCLES=${BENCH_PROFILE_CYCLES:-$q_prof}
PROFILE_SECONDS=${BENCH_PROFILE_SECONDS:-$q_prof_s}

# Cells of one round: per (layout, frame size) none once per address family the
# shapes need, the floors once, every mirror once per shape and matching; then TCP.
has_mode() { case " $MODES " in *" $1 "*) return 0 ;; esac; return 1; }
families() { case " $SHAPES " in *" ipv6 "*) echo "ipv4 ipv6" ;; *) echo ipv4 ;; esac; }
budget() {
  local groups=0 per_group=0 mirrors=0 m tcp_modes=0 streams
  for m in $MODES; do
    case $m in
      none) per_group=$((per_group + $(families | wc -w))) ;;
      hook|tcxhook) per_group=$((per_group + 1)) ;;
      *) mirrors=$((mirrors + 1)); tcp_modes=$((tcp_modes + 1)) ;;
    esac
  done
  has_mode none && tcp_modes=$((tcp_modes + 1))
  per_group=$((per_group + mirrors * $(echo $SHAPES | wc -w) * $(echo $MATCHING | wc -w)))
  groups=$(($(echo $LAYOUTS | wc -w) * $(echo $FRAME_SIZES | wc -w)))
  streams=$(echo $TCP_STREAMS | wc -w)
  python3 - "$groups" "$per_group" "$tcp_modes" "$streams" <<PY
import sys
groups, per_group, tcp_modes, streams = map(int, sys.argv[1:])
rounds, secs, tcp_s = $ROUNDS, $SECONDS_PER_ROUND, $TCP_SECONDS
udp_cells = groups * per_group
tcp_cells = tcp_modes * streams
udp = rounds * udp_cells * ($WARM + secs + $CELL_OVERHEAD) + ($AGENT_OVERHEAD if rounds and udp_cells else 0)
tcp = rounds * tcp_cells * (tcp_s + $TCP_OVERHEAD)
alt = $ALT_CYCLES * 3 * ($ALT_SECONDS + 0.4) + 10 if $ALT_CYCLES else 0
brk = $BREAKDOWN_CYCLES * 4 * ($BREAKDOWN_SECONDS + 0.2) + 15 if $BREAKDOWN_CYCLES else 0
prof = $PROFILE_CYCLES * 3 * ($PROFILE_SECONDS + 1.5) + 10 if $PROFILE_CYCLES else 0
total = udp + tcp + alt + brk + prof
print(f"throughput budget: {udp_cells} UDP cells x {rounds} rounds x ({secs} s + {$WARM + $CELL_OVERHEAD:.1f} s) = {udp / 60:.1f} min; "
      f"{tcp_cells} TCP cells x {rounds} x ({tcp_s} s + {$TCP_OVERHEAD} s) = {tcp / 60:.1f} min; "
      f"alternating {alt / 60:.1f} + breakdown {brk / 60:.1f} + profile {prof / 60:.1f} min; total {total / 60:.1f} min")
if "${BENCH_BUDGET_ONLY:-0}" == "1":
    print(f"budget_seconds={total:.0f}", file=sys.stderr)
PY
}
budget
[ "${BENCH_BUDGET_ONLY:-0}" = 1 ] && exit 0

source scripts/lib/topology.sh
source scripts/lib/agent.sh
topo_up

VNI=4242
DPORT=5001
vm_mac=$(in_ns "$NS_VM" cat /sys/class/net/eth0/address)
tap_mac=$(in_ns "$NS_HOST" cat /sys/class/net/$TAP/address)

# The underlay carries copies of 1,514-byte frames (TCP) whole: jumbo MTU, as cloud
# underlays have, so no mirror truncates or fragments them. Its UDP-tunnel
# segmentation offload is off so that GSO copies leave the host as the segments a
# wire carries (the kernel segments them in software, as for a NIC without VXLAN
# TSO) and the collector counts segments, not 64 KB super-packets.
in_ns "$NS_HOST" ip link set "$UL" mtu 9000
in_ns "$NS_COL" ip link set eth0 mtu 9000
in_ns "$NS_HOST" ethtool -K "$UL" tx-udp_tnl-segmentation off tx-udp_tnl-csum-segmentation off >/dev/null 2>&1 ||
  echo "bench: could not turn off UDP tunnel segmentation on the underlay; TCP copies may be counted as super-packets" >&2

# trafgen's frames: one configuration per family and size (frame_bytes = bytes written).
for size in $FRAME_SIZES 64; do
  cat > "$TOPO_DIR/trafgen-ipv4-$size.cfg" <<CFG
{
  eth(da=$tap_mac, sa=$vm_mac, type=0x0800),
  ipv4(saddr=$VM_IP, daddr=$PEER_IP, ttl=64, proto=17),
  udp(sport=dinc(10000, 10999), dport=$DPORT),
  fill(0x00, $((size - 42)))
}
CFG
  cat > "$TOPO_DIR/trafgen-ipv6-$size.cfg" <<CFG
{
  eth(da=$tap_mac, sa=$vm_mac, type=0x86dd),
  ipv6(saddr=$VM_IP6, daddr=$PEER_IP6, hoplimit=64, nexthdr=17),
  udp(sport=dinc(10000, 10999), dport=$DPORT),
  fill(0x00, $((size - 62)))
}
CFG
done
cp "$TOPO_DIR/trafgen-ipv4-64.cfg" "$TOPO_DIR/trafgen.cfg"   # the phases' sender
if [[ " $LAYOUTS " == *" linear "* ]]; then
  cc -O2 -Wall -o "$TOPO_DIR/lsend" scripts/bench.d/lsend.c
fi

# The peer counts at its device's ingress and drops UDP there: no ICMP
# port-unreachable answers, no stack work that would compete for the CPUs. TCP
# (the iperf3 cells) goes on to its stack. The collector counts VXLAN and drops it.
in_ns "$NS_PEER" nft -f - <<NFT
table netdev sink {
  chain rx {
    type filter hook ingress device "eth0" priority 0; policy drop;
    meta l4proto tcp accept
  }
}
NFT
in_ns "$NS_COL" nft -f - <<NFT
table netdev sink {
  counter vxlan { }
  chain rx {
    type filter hook ingress device "eth0" priority 0; policy drop;
    udp dport { 4789, 4790 } counter name vxlan
  }
}
NFT
vxlan_copies() { in_ns "$NS_COL" nft list counter netdev sink vxlan | awk '$1 == "packets" { print $2 }'; }
counter() { in_ns "$1" cat "/sys/class/net/$2/statistics/$3"; }
# Segments the peer received: IP packets counted the way ip_rcv counts them by ECN
# codepoint, a GSO packet as its gso_segs (Tcp InSegs would count a forwarded TSO
# super-packet once). Only the VM's TCP reaches the peer's IP layer (its sink drops
# UDP at the device).
peer_segments() {
  in_ns "$NS_PEER" awk '/^IpExt:/ { if (!h) { for (i = 2; i <= NF; i++) if ($i ~ /^In(NoECT|ECT1|ECT0|CE)Pkts$/) c[i] = 1; h = 1 }
    else { for (i in c) n += $i; print n } }' /proc/net/netstat
}

# Forwarded pps in a window, read in the host namespace (the peer side's tx counter).
coproc SAMPLER { in_ns "$NS_HOST" python3 scripts/bench.d/pps_sampler.py "/sys/class/net/$PR/statistics/tx_packets"; }
echo "$SAMPLER_PID" > "$TOPO_DIR/sampler.pid"
# sample_pps SECONDS: sets $pps (not in $(...): a subshell has no coproc descriptors).
sample_pps() { echo "$1" >&"${SAMPLER[1]}"; read -r pps <&"${SAMPLER[0]}"; }

# Senders. `ip netns exec` execs timeout in place, so $! is timeout's pid: SIGINT
# to it stops the sender. Its pid file lets topo_down stop it on any exit.
# sender_start LAYOUT FRAME_BYTES FAMILY MAX_SECONDS
sender_start() {
  local src=$VM_IP dst=$PEER_IP
  [ "$3" = ipv6 ] && { src=$VM_IP6; dst=$PEER_IP6; }
  case $1 in
    paged) ip netns exec "$NS_VM" timeout -s INT "$4" trafgen --dev eth0 --conf "$TOPO_DIR/trafgen-$3-$2.cfg" \
             --cpus 1 >"$TOPO_DIR/sender.log" 2>&1 & ;;
    linear) ip netns exec "$NS_VM" timeout -s INT "$4" "$TOPO_DIR/lsend" eth0 "$tap_mac" "$vm_mac" "$src" "$dst" \
             "$DPORT" "$2" "$4" >"$TOPO_DIR/sender.log" 2>&1 & ;;
    *) echo "bench: unknown layout $1" >&2; return 1 ;;
  esac
  sender=$!
  echo "$sender" > "$TOPO_DIR/sender.pid"
}
sender_stop() {
  kill -INT "$sender" 2>/dev/null || true
  wait "$sender" 2>/dev/null || true
  rm -f "$TOPO_DIR/sender.pid"
  [ -n "${BENCH_DEBUG:-}" ] && cat "$TOPO_DIR/sender.log" >&2
  return 0
}

# The peers' static VXLAN device. Its UDP port is 4790, not 4789: a VXLAN device
# binds its port, and the agent's own device (external, 4789) cannot share a socket
# with it; on another port both stay up for the whole run, so the agent is started
# once (its start and cleanup load the classifier, seconds each) instead of around
# every group. The port is a constant in the header: the encapsulation's cost is the
# same. The collector counts both ports.
static_vxlan_up() {
  in_ns "$NS_HOST" ip link show vxs$TOPO_ID >/dev/null 2>&1 && return 0
  in_ns "$NS_HOST" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
  in_ns "$NS_HOST" ip link add vxs$TOPO_ID type vxlan id $VNI remote $COL_IP local $HOST_UL_IP dstport 4790 dev "$UL"
  in_ns "$NS_HOST" sysctl -qw net.ipv6.conf.default.disable_ipv6=0
  in_ns "$NS_HOST" sysctl -qw net.ipv6.conf.vxs$TOPO_ID.disable_ipv6=1 2>/dev/null || true
  in_ns "$NS_HOST" ip link set vxs$TOPO_ID up
}
static_vxlan_down() { in_ns "$NS_HOST" ip link del vxs$TOPO_ID 2>/dev/null || true; }

static_vxlan_up

# Every mode: MODE_up SHAPE RULES MATCHING and MODE_down around each cell.
u32_up() {
  static_vxlan_up
  in_ns "$NS_HOST" tc qdisc add dev "$TAP" clsact
  python3 scripts/bench.d/rules.py u32 "$1" "$2" "$3" "$TAP" "vxs$TOPO_ID" > "$TOPO_DIR/u32.batch"
  in_ns "$NS_HOST" tc -batch "$TOPO_DIR/u32.batch"
}
u32_down() { in_ns "$NS_HOST" tc qdisc del dev "$TAP" clsact 2>/dev/null || true; }

nftdup_up() {
  static_vxlan_up
  python3 scripts/bench.d/rules.py nft "$1" "$2" "$3" "$TAP" "vxs$TOPO_ID" > "$TOPO_DIR/mirror.nft"
  in_ns "$NS_HOST" nft -f "$TOPO_DIR/mirror.nft"
}
nftdup_down() { in_ns "$NS_HOST" nft delete table netdev mirror 2>/dev/null || true; }

# agent_doc SHAPE RULES MATCHING: the same rules for the agent.
agent_doc() { python3 scripts/bench.d/rules.py agent "${1:-port}" "${2:-30}" "${3:-0}"; }
agent_running=0
agent_up() {
  if [ $agent_running = 0 ]; then agent_start || return 1; agent_running=1; fi
  agent_doc "$1" "$2" "$3" > "$TOPO_DIR/agent-policy.json"
  ctl apply -f "$TOPO_DIR/agent-policy.json" >/dev/null
}
# On clsact (--tc-attach clsact, or a kernel without tcx) the agent leaves the
# (empty) clsact qdisc on purpose (it may hold other owners' filters); here the
# bench owns the tap and removes it, so that the next mode starts from a bare device.
agent_down() {
  ctl apply -f <(echo '{}') >/dev/null 2>&1 || true
  in_ns "$NS_HOST" tc qdisc del dev "$TAP" clsact 2>/dev/null || true
}
# After the matrix (the phases start their own): stop it and clean up.
agent_end() { agent_stop; agent_cleanup || true; agent_running=0; }

none_up() { :; }
none_down() { :; }

# The empty program (returns TC_ACT_UNSPEC), built once per run: the floors and
# the breakdown's `empty`.
noop_obj() {
  [ -f "$TOPO_DIR/noop.o" ] || clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu \
    -c scripts/bench.d/noop.bpf.c -o "$TOPO_DIR/noop.o"
}
# The hook's own cost: clsact plus a program that only returns TC_ACT_UNSPEC.
hook_up() {
  noop_obj || return 1
  in_ns "$NS_HOST" tc qdisc add dev "$TAP" clsact
  in_ns "$NS_HOST" tc filter add dev "$TAP" ingress bpf direct-action obj "$TOPO_DIR/noop.o" sec tc
  in_ns "$NS_HOST" tc filter add dev "$TAP" egress bpf direct-action obj "$TOPO_DIR/noop.o" sec tc
}
hook_down() { in_ns "$NS_HOST" tc qdisc del dev "$TAP" clsact 2>/dev/null || true; }
# The same empty program through tcx links (kernel >= 6.6): no clsact qdisc, no
# cls_bpf. What a tcx-attached classifier starts from (the agent attaches this way).
tcxhook_up() {
  noop_obj || return 1
  [ -x "$TOPO_DIR/tcxload" ] || gcc -O2 -o "$TOPO_DIR/tcxload" scripts/bench.d/tcxload.c -lbpf || return 1
  in_ns "$NS_HOST" "$TOPO_DIR/tcxload" "$TOPO_DIR/noop.o" "$TAP" "$TOPO_DIR/bpffs" >/dev/null
}
tcxhook_down() { rm -f "$TOPO_DIR/bpffs/tcx0" "$TOPO_DIR/bpffs/tcx1"; }

# One UDP cell: the mode's rules up, the sender started, the forwarded pps over a
# window of SECONDS_PER_ROUND after WARM; copies and lost over the whole send
# (counted after the sender stopped and the queues drained).
# cell MODE SHAPE RULES MATCHING LAYOUT FRAME_BYTES FAMILY ROUND
cell() {
  local mode=$1 shape=$2 rules=$3 matching=$4 layout=$5 size=$6 fam=$7 r=$8
  local p0 c0 s0 p1 c1 s1 pps t0=$EPOCHREALTIME
  if ! "${mode}_up" "$shape" "$rules" "$matching"; then
    echo "bench: $mode ($shape) unavailable, skipped" >&2; "${mode}_down"; return 0
  fi
  p0=$(counter "$NS_PEER" eth0 rx_packets); c0=$(vxlan_copies); s0=$(counter "$NS_VM" eth0 tx_packets)
  sender_start "$layout" "$size" "$fam" $((${SECONDS_PER_ROUND%.*} + 10))
  sleep $WARM
  sample_pps "$SECONDS_PER_ROUND"
  sender_stop
  sleep 0.2
  p1=$(counter "$NS_PEER" eth0 rx_packets); c1=$(vxlan_copies); s1=$(counter "$NS_VM" eth0 tx_packets)
  "${mode}_down"
  local fwd=$((p1 - p0)) copies=$((c1 - c0)) sent=$((s1 - s0))
  local expected=0; if [ "$mode" != none ] && [ "$matching" = 1 ]; then expected=$fwd; fi
  local lost=$((expected - copies)); [ $lost -lt 0 ] && lost=0
  [ "$fwd" -gt 0 ] || echo "bench: $mode $layout $size $fam ${shape:-}: nothing forwarded (sender log: $(tr '\n' ' ' < "$TOPO_DIR/sender.log"))" >&2
  local shape_json=null; [ -n "$shape" ] && shape_json="\"$shape\""
  printf '{"layout": "%s", "rules_shape": %s, "frame_bytes": %s, "family": "%s", "mode": "%s", "rules": %s, "matching": %s, "round": %s, "seconds": %s, "sent": %s, "forwarded": %s, "pps": %s, "copies": %s, "lost": %s, "wall": %.2f}\n' \
    "$layout" "$shape_json" "$size" "$fam" "$mode" "$rules" "$([ "$matching" = 1 ] && echo true || echo false)" \
    "$r" "$SECONDS_PER_ROUND" "$sent" "$fwd" "$pps" "$copies" "$lost" "$(wall_since "$t0")" | tee -a "$out"
}

# Seconds since $1 (an $EPOCHREALTIME): each cell records its wall time (`wall`),
# which calibrates the budget's per-cell overhead.
wall_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

# One group: every cell of one layout and frame size, `none` first.
group() {
  local layout=$1 size=$2 r=$3 mode shape m fam
  for mode in $MODES; do
    case $mode in
      none) for fam in $(families); do cell none "" 0 0 "$layout" "$size" "$fam" "$r"; done ;;
      hook|tcxhook) cell "$mode" "" 0 0 "$layout" "$size" ipv4 "$r" ;;
      *) for shape in $SHAPES; do
           [ "$shape" = ipv6 ] && fam=ipv6 || fam=ipv4
           for m in $MATCHING; do cell "$mode" "$shape" "$RULES" "$m" "$layout" "$size" "$fam" "$r"; done
         done ;;
    esac
  done
}

# TCP: iperf3 from the VM to the peer with one accept-all rule (every segment
# mirrored), under each mode. The copies at the collector are segments (see the
# underlay above), and so are the packets the peer received (peer_segments).
iperf_server_up() {
  [ -f "$TOPO_DIR/iperf3.pid" ] && return 0
  ip netns exec "$NS_PEER" iperf3 -s -p 5201 >/dev/null 2>&1 &
  echo $! > "$TOPO_DIR/iperf3.pid"
  for _ in $(seq 1 50); do in_ns "$NS_PEER" ss -ltn 2>/dev/null | grep -q ':5201 ' && return 0; sleep 0.1; done
  echo "bench: iperf3 server did not start" >&2; return 1
}
tcp_cell() {
  local mode=$1 streams=$2 r=$3 rules=1 matching=1 g0 c0 g1 c1 gbps t0=$EPOCHREALTIME
  [ "$mode" = none ] && { rules=0; matching=0; }
  if ! "${mode}_up" all "$rules" "$matching"; then
    echo "bench: $mode (tcp) unavailable, skipped" >&2; "${mode}_down"; return 0
  fi
  g0=$(peer_segments); c0=$(vxlan_copies)
  in_ns "$NS_VM" iperf3 -c "$PEER_IP" -p 5201 -t "$TCP_SECONDS" -P "$streams" -J > "$TOPO_DIR/iperf3.json" 2>&1 || true
  sleep 0.3
  g1=$(peer_segments); c1=$(vxlan_copies)
  "${mode}_down"
  gbps=$(python3 -c 'import json,sys
try:
    d = json.load(open(sys.argv[1])); print(d["end"]["sum_received"]["bits_per_second"] / 1e9)
except Exception:
    print("null")' "$TOPO_DIR/iperf3.json")
  [ "$gbps" = null ] && echo "bench: iperf3 failed under $mode: $(head -c 300 "$TOPO_DIR/iperf3.json")" >&2
  local segs=$((g1 - g0)) copies=$((c1 - c0)) lost=0
  [ "$matching" = 1 ] && lost=$((segs - copies)) && [ $lost -lt 0 ] && lost=0
  printf '{"layout": "tcp", "rules_shape": "all", "frame_bytes": null, "family": "ipv4", "mode": "%s", "rules": %s, "matching": %s, "streams": %s, "round": %s, "seconds": %s, "gbps": %s, "segments": %s, "pps": %s, "copies": %s, "lost": %s, "wall": %.2f}\n' \
    "$mode" "$rules" "$([ "$matching" = 1 ] && echo true || echo false)" "$streams" "$r" "$TCP_SECONDS" "$gbps" \
    "$segs" "$((segs / TCP_SECONDS))" "$copies" "$lost" "$(wall_since "$t0")" | tee -a "$out"
}
tcp_group() {
  local r=$1 mode st
  [ -n "$TCP_STREAMS" ] || return 0
  iperf_server_up || return 0
  for mode in $MODES; do
    case $mode in hook|tcxhook) continue ;; esac
    for st in $TCP_STREAMS; do tcp_cell "$mode" "$st" "$r"; done
  done
}

: > "$out"
started=$(date +%s)
for ((r = 1; r <= ROUNDS; r++)); do
  for layout in $LAYOUTS; do
    for size in $FRAME_SIZES; do group "$layout" "$size" "$r"; done
  done
  tcp_group "$r"
  echo "bench: round $r of $ROUNDS done after $(($(date +%s) - started)) s" >&2
done
[ $agent_running = 1 ] && agent_end
[ -f "$TOPO_DIR/iperf3.pid" ] && { kill "$(cat "$TOPO_DIR/iperf3.pid")" 2>/dev/null || true; rm -f "$TOPO_DIR/iperf3.pid"; }

# The phases below run one sender without a break for their whole length
# (BUDGET seconds at most) and switch what the tap runs under it.
# The end of every phase: the sender stopped, the tap bare, the agent gone.
phase_end() { sender_stop; tcxhook_down; agent_end; }
# Under a running agent: the agent's unmatched policy applied (its own tcx
# links) or an empty document (detached); or the empty program's tcx links.
switch_on() {
  case $1 in
    agent) ctl apply -f "$TOPO_DIR/agent-policy.json" >/dev/null ;;
    tcxhook|empty) tcxhook_up ;;
  esac
}
switch_off() {
  case $1 in
    agent) ctl apply -f "$TOPO_DIR/empty.json" >/dev/null ;;
    tcxhook|empty) tcxhook_down ;;
  esac
}

# The 97 % goal's two sides, and the empty tcx program, alternated every
# ALT_SECONDS under one continuous trafgen, ALT_CYCLES times (order none, agent,
# tcxhook, then reversed), so that the drift of a shared host, seconds to minutes
# long and as large as the gap in the rounds above, cancels out: report.py takes
# the median over cycles of each mode's pps over none's in the same cycle. The
# agent's side is the agent itself: an apply of the unmatched 30-rule policy
# attaches it (its own tcx links), an apply of an empty document detaches it.
alternating_phase() {
  agent_start || return 1
  agent_doc "$ALT_SHAPE" 30 0 > "$TOPO_DIR/agent-policy.json"
  echo '{}' > "$TOPO_DIR/empty.json"
  local budget
  budget=$(python3 -c "print(int($ALT_CYCLES * 3 * ($ALT_SECONDS + 0.4) + 30))")
  sender_start "$ALT_LAYOUT" 64 "$([ "$ALT_SHAPE" = ipv6 ] && echo ipv6 || echo ipv4)" "$budget"; sleep 1
  local modes=(none agent tcxhook) c i m pps ok=1
  # Called in an `||` list, so errexit is off here: a switch that fails ends the
  # phase rather than recording a sample of the wrong mode.
  for ((c = 1; c <= ALT_CYCLES && ok; c++)); do
    for ((i = 0; i < 3; i++)); do
      if ((c % 2)); then m=${modes[i]}; else m=${modes[2 - i]}; fi
      switch_on "$m" || { ok=0; break; }
      sleep 0.1
      echo "$ALT_SECONDS" >&"${SAMPLER[1]}"
      read -r pps <&"${SAMPLER[0]}"
      switch_off "$m" || { ok=0; break; }
      echo "{\"phase\": \"alternating\", \"layout\": \"$ALT_LAYOUT\", \"rules_shape\": \"$ALT_SHAPE\", \"mode\": \"$m\", \"cycle\": $c, \"seconds\": $ALT_SECONDS, \"pps\": $pps}" >> "$out"
    done
  done
  phase_end
  [ "$ok" = 1 ] || { echo "bench: switching to $m failed in cycle $((c - 1)); the phase stopped there" >&2; return 1; }
}
if [ "$ALT_CYCLES" -gt 0 ]; then
  echo "alternating none / agent (unmatched, 30 rules) / tcxhook every ${ALT_SECONDS} s, $ALT_CYCLES cycles" >&2
  alternating_phase || echo "bench: alternating phase failed" >&2
fi

# Where the unmatched path's cost goes, measured the same way: one tcx link on the
# tap whose program is swapped atomically (scripts/bench.d/progswap.c) under one
# continuous sender, every BREAKDOWN_SECONDS, BREAKDOWN_CYCLES times, between no
# program, the empty program, the agent's own classifier (the unmatched 30-rule
# policy applied) and the same classifier built without the pull of the headers
# into the linear area (-DMIRROR_BENCH_NO_PULL; it then sees this sender's frames,
# whose linear head is the 14-byte Ethernet header, as not IP). report.py turns
# the samples into each one's median fraction of none's pps.
breakdown_phase() {
  noop_obj || return 1
  clang -target bpf -O2 -g -Wall -Werror -Wno-unused-function -I/usr/include/x86_64-linux-gnu -Ibpf \
    -DMIRROR_BENCH_NO_PULL -c bpf/classify.bpf.c -o "$TOPO_DIR/classify-nopull.o" || return 1
  gcc -O2 -o "$TOPO_DIR/progswap" scripts/bench.d/progswap.c -lbpf || return 1
  agent_start || return 1
  agent_doc port 30 0 > "$TOPO_DIR/agent-policy.json"
  ctl apply -f "$TOPO_DIR/agent-policy.json" >/dev/null || { agent_end; return 1; }
  local ifx link budget rc=0
  ifx=$(in_ns "$NS_HOST" cat "/sys/class/net/$TAP/ifindex")
  link="$TOPO_DIR/bpffs/links/tcx-$ifx-ingress"
  [ -e "$link" ] || { echo "bench: the agent did not attach through tcx; no breakdown" >&2; agent_end; return 1; }
  budget=$(python3 -c "print(int($BREAKDOWN_CYCLES * 4 * ($BREAKDOWN_SECONDS + 0.2) + 30))")
  sender_start paged 64 ipv4 "$budget"; sleep 1
  in_ns "$NS_HOST" "$TOPO_DIR/progswap" "/sys/class/net/$PR/statistics/tx_packets" "$BREAKDOWN_SECONDS" 0.15 \
    "$BREAKDOWN_CYCLES" "$TAP" "$TOPO_DIR/bpffs" "$link" none=none empty=$TOPO_DIR/noop.o:noop \
    classifier=link:$link classifier_nopull=$TOPO_DIR/classify-nopull.o:mirror_tc_ingress \
    | sed 's/^{/{"phase": "breakdown", "seconds": '"$BREAKDOWN_SECONDS"', /' >> "$out" || rc=1
  phase_end
  return $rc
}
if [ "$BREAKDOWN_CYCLES" -gt 0 ]; then
  echo "breakdown of the unmatched path: none / empty program / classifier / classifier without the pull, every ${BREAKDOWN_SECONDS} s, $BREAKDOWN_CYCLES cycles" >&2
  breakdown_phase || echo "bench: breakdown phase failed" >&2
fi

# Where the unmatched path's CPU time goes: a system-wide perf profile (cpu-clock
# samples with call chains) under one continuous sender, PROFILE_SECONDS per mode,
# modes interleaved (none, the empty tcx program, the agent with its 30 unmatched
# rules), PROFILE_CYCLES times. Each sample window is exactly the one in which the
# forwarded packets are counted (the counting command is perf's workload), so
# profile_summary.py can turn samples into ns per packet: in total, and in the parts
# that a classifier adds (its program, the hook's dispatch) or moves (the pull of
# the headers, and the work it saves the stack). Needs perf (Debian: linux-perf).
PROFILE_FREQ=4000
profile_phase() {
  perf record -q -e cpu-clock -o "$TOPO_DIR/perf-check.data" true >/dev/null 2>&1 ||
    { echo "bench: perf cannot sample here; no profile (Debian package: linux-perf)" >&2; return 1; }
  noop_obj || return 1
  [ -x "$TOPO_DIR/tcxload" ] || gcc -O2 -o "$TOPO_DIR/tcxload" scripts/bench.d/tcxload.c -lbpf || return 1
  agent_start || return 1
  agent_doc port 30 0 > "$TOPO_DIR/agent-policy.json"
  echo '{}' > "$TOPO_DIR/empty.json"
  local budget c m p ok=1
  budget=$(python3 -c "print(int($PROFILE_CYCLES * 3 * ($PROFILE_SECONDS + 3) + 30))")
  sender_start paged 64 ipv4 "$budget"; sleep 1
  for ((c = 1; c <= PROFILE_CYCLES && ok; c++)); do
    for m in none empty agent; do
      switch_on "$m" || { ok=0; break; }
      sleep 0.3
      perf record -q -a -g -e cpu-clock -F $PROFILE_FREQ -o "$TOPO_DIR/perf.data" -- \
        ip netns exec "$NS_HOST" sh -c "cat /sys/class/net/$PR/statistics/tx_packets; sleep $PROFILE_SECONDS; cat /sys/class/net/$PR/statistics/tx_packets" \
        > "$TOPO_DIR/profile-packets" 2>/dev/null || { ok=0; break; }
      switch_off "$m" || { ok=0; break; }
      p=$(awk 'NR == 1 { a = $1 } NR == 2 { print $1 - a }' "$TOPO_DIR/profile-packets")
      python3 scripts/bench.d/profile_summary.py --data "$TOPO_DIR/perf.data" --freq $PROFILE_FREQ \
        --packets "${p:-0}" --mode $m --cycle $c >> "$out" || { ok=0; break; }
    done
  done
  phase_end
  rm -f "$TOPO_DIR/perf.data" "$TOPO_DIR/perf-check.data"
  [ "$ok" = 1 ] || { echo "bench: the profile stopped at $m in cycle $c" >&2; return 1; }
}
if [ "$PROFILE_CYCLES" -gt 0 ]; then
  echo "profile of the unmatched path (perf, cpu-clock): none / empty tcx program / agent, ${PROFILE_SECONDS} s each, $PROFILE_CYCLES cycles" >&2
  profile_phase || echo "bench: profile phase failed" >&2
fi
eval "exec ${SAMPLER[1]}>&-"
