#!/usr/bin/env bash
# Throughput of mirroring, side by side in one run: the VM namespace sends small UDP
# frames as fast as trafgen can (AF_PACKET TX ring, qdisc bypass) into its veth; the
# host forwards them to the peer and, per mode, mirrors them to the collector.
# Modes: none | hook (an empty TC program on both hooks of the tap: the floor of any
# TC classifier) | tcxhook (the same program through tcx links) | u32 (tc u32 + mirred to a static VXLAN device) | nftdup (nft
# netdev dup to the same device) | agent (mirror-agent). Policies: N rules where the
# last matches, and 30 where none matches. Rounds are interleaved (round 1 of every
# mode, then round 2, ...) so that drift on a shared machine hits all modes alike;
# ratios against "none" are taken per round and their median reported. Then an
# alternating phase for the 97 % goal (see alternating_phase) and a breakdown of
# the unmatched path (see breakdown_phase).
# Writes raw rounds as JSON lines to $1.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: throughput.sh OUT.jsonl}
ROUNDS=${BENCH_ROUNDS:-5}
SECONDS_PER_ROUND=${BENCH_SECONDS:-3}
# The agent right after none, its unmatched policy first: that pair is measured
# seconds apart, and report.py takes their per-round ratio (the 97 % goal).
MODES=${BENCH_MODES:-"none agent tcxhook hook u32 nftdup"}
source scripts/lib/topology.sh
source scripts/lib/agent.sh
topo_up

VNI=4242
DPORT=5001
vm_mac=$(in_ns "$NS_VM" cat /sys/class/net/eth0/address)
tap_mac=$(in_ns "$NS_HOST" cat /sys/class/net/$TAP/address)

cat > "$TOPO_DIR/trafgen.cfg" <<CFG
{
  eth(da=$tap_mac, sa=$vm_mac, type=0x0800),
  ipv4(saddr=$VM_IP, daddr=$PEER_IP, ttl=64, proto=17),
  udp(sport=dinc(10000, 10999), dport=$DPORT),
  fill(0x00, 18)
}
CFG

# The peer and the collector count at their device's ingress and drop there: no
# ICMP port-unreachable answers, no stack work that would compete for the CPUs.
in_ns "$NS_PEER" nft -f - <<NFT
table netdev sink {
  chain rx {
    type filter hook ingress device "eth0" priority 0; policy drop;
  }
}
NFT
in_ns "$NS_COL" nft -f - <<NFT
table netdev sink {
  counter vxlan { }
  chain rx {
    type filter hook ingress device "eth0" priority 0; policy drop;
    udp dport 4789 counter name vxlan
  }
}
NFT
vxlan_copies() { in_ns "$NS_COL" nft -j list counter netdev sink vxlan | python3 -c 'import json,sys; print([o["counter"]["packets"] for o in json.load(sys.stdin)["nftables"] if "counter" in o][0])'; }

static_vxlan_up() {
  in_ns "$NS_HOST" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
  in_ns "$NS_HOST" ip link add vxs$TOPO_ID type vxlan id $VNI remote $COL_IP local $HOST_UL_IP dstport 4789 dev "$UL"
  in_ns "$NS_HOST" sysctl -qw net.ipv6.conf.default.disable_ipv6=0
  in_ns "$NS_HOST" sysctl -qw net.ipv6.conf.vxs$TOPO_ID.disable_ipv6=1 2>/dev/null || true
  in_ns "$NS_HOST" ip link set vxs$TOPO_ID up
}
static_vxlan_down() { in_ns "$NS_HOST" ip link del vxs$TOPO_ID 2>/dev/null || true; }

# $1 rules, $2 matching (1|0)
u32_up() {
  local n=$1 matching=$2 i port
  static_vxlan_up
  in_ns "$NS_HOST" tc qdisc add dev "$TAP" clsact
  for ((i = 1; i <= n; i++)); do
    port=$((6000 + i)); if [ "$i" -eq "$n" ] && [ "$matching" = 1 ]; then port=$DPORT; fi
    in_ns "$NS_HOST" tc filter add dev "$TAP" ingress protocol ip prio "$i" u32 \
      match ip protocol 17 0xff match ip dport "$port" 0xffff \
      action mirred egress mirror dev vxs$TOPO_ID
  done
}
u32_down() { in_ns "$NS_HOST" tc qdisc del dev "$TAP" clsact 2>/dev/null || true; static_vxlan_down; }

nftdup_up() {
  local n=$1 matching=$2 i port
  static_vxlan_up
  {
    echo "table netdev mirror {"
    echo "  chain rx {"
    echo "    type filter hook ingress device \"$TAP\" priority 0;"
    for ((i = 1; i <= n; i++)); do
      port=$((6000 + i)); if [ "$i" -eq "$n" ] && [ "$matching" = 1 ]; then port=$DPORT; fi
      echo "    ip protocol udp udp dport $port dup to \"vxs$TOPO_ID\""
    done
    echo "  }"
    echo "}"
  } > "$TOPO_DIR/mirror.nft"
  in_ns "$NS_HOST" nft -f "$TOPO_DIR/mirror.nft"
}
nftdup_down() { in_ns "$NS_HOST" nft delete table netdev mirror 2>/dev/null || true; static_vxlan_down; }

# The same policy meaning for the agent: N rules spread over sessions of at most 10
# outbound rules each (SPEC §3), in priority order; only the very last can match.
agent_doc() {
  python3 - "$1" "$2" <<'PY'
import json, sys
n, matching = int(sys.argv[1]), sys.argv[2] == "1"
filters, sessions = [], []
for s in range((n + 9) // 10):
    rules = []
    for r in range(min(10, n - 10 * s)):
        i = 10 * s + r + 1
        port = 5001 if (i == n and matching) else 6000 + i
        rules.append({"priority": r + 1, "action": "accept", "ethertype": "ipv4", "protocol": "udp",
                      "destinationPorts": str(port)})
    filters.append({"id": f"f{s}", "outbound": rules})
    sessions.append({"id": f"s{s}", "priority": s + 1, "filter": f"f{s}", "sources": ["vm"],
                     "target": "collector", "vni": 4242 + s})
print(json.dumps({"filters": filters, "sessions": sessions,
                  "targets": [{"id": "collector", "type": "nic", "address": "198.51.100.2"}],
                  "sources": [{"id": "vm", "interface": "tap-vm1"}]}))
PY
}
agent_running=0
agent_up() {
  local n=$1 matching=$2
  if [ $agent_running = 0 ]; then agent_start || return 1; agent_running=1; fi
  agent_doc "$n" "$matching" > "$TOPO_DIR/agent-policy.json"
  ctl apply -f "$TOPO_DIR/agent-policy.json" >/dev/null
}
# On clsact (--tc-attach clsact, or a kernel without tcx) the agent leaves the
# (empty) clsact qdisc on purpose (it may hold other owners'
# filters); here the bench owns the tap and removes it, so that the next mode starts
# from a bare device.
agent_down() {
  ctl apply -f <(echo '{}') >/dev/null 2>&1 || true
  in_ns "$NS_HOST" tc qdisc del dev "$TAP" clsact 2>/dev/null || true
}

# After a round of the agent's policies: stop it and clean up, so that its VXLAN
# device (port 4789, external) does not keep the peers' static device from
# carrying copies in the next round.
agent_end() { agent_stop; agent_cleanup || true; agent_running=0; }

none_up() { :; }
none_down() { :; }

# The empty program (returns TC_ACT_UNSPEC), built once per run: the hook modes'
# floor and the breakdown's `empty`.
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

counter() { in_ns "$1" cat "/sys/class/net/$2/statistics/$3"; }

# One round: send for SECONDS_PER_ROUND, count what the peer got and what the collector got.
round() {
  local mode=$1 rules=$2 matching=$3 r=$4
  local p0 c0 s0 p1 c1 s1
  p0=$(counter "$NS_PEER" eth0 rx_packets); c0=$(vxlan_copies); s0=$(counter "$NS_VM" eth0 tx_packets)
  in_ns "$NS_VM" timeout -s INT "$SECONDS_PER_ROUND" trafgen --dev eth0 --conf "$TOPO_DIR/trafgen.cfg" --cpus 1 2>&1 | grep -v "socket memory" >"$TOPO_DIR/trafgen.log" || true
  sleep 0.3; [ -n "${BENCH_DEBUG:-}" ] && cat "$TOPO_DIR/trafgen.log" >&2
  p1=$(counter "$NS_PEER" eth0 rx_packets); c1=$(vxlan_copies); s1=$(counter "$NS_VM" eth0 tx_packets)
  local fwd=$((p1 - p0)) copies=$((c1 - c0)) sent=$((s1 - s0))
  local expected=0; if [ "$mode" != none ] && [ "$matching" = 1 ]; then expected=$fwd; fi
  local lost=$((expected - copies)); [ $lost -lt 0 ] && lost=0
  python3 -c "import json,sys; print(json.dumps(dict(mode='$mode', rules=$rules, matching=bool($matching), round=$r, seconds=$SECONDS_PER_ROUND, sent=$sent, forwarded=$fwd, pps=$fwd/$SECONDS_PER_ROUND, copies=$copies, lost=$lost)))" | tee -a "$out"
}

: > "$out"
policies=("30 0" "1 1" "10 1" "30 1")
for ((r = 1; r <= ROUNDS; r++)); do
  for mode in $MODES; do
    case "$mode" in none|hook|tcxhook) set_list=("0 0") ;; *) set_list=("${policies[@]}") ;; esac
    for pol in "${set_list[@]}"; do
      read -r rules matching <<< "$pol"
      if ! "${mode}_up" "$rules" "$matching"; then echo "bench: mode $mode unavailable, skipped" >&2; "${mode}_down"; continue; fi
      round "$mode" "$rules" "$matching" "$r"
      "${mode}_down"
    done
    if declare -F "${mode}_end" >/dev/null; then "${mode}_end"; fi
  done
done

# The phases below run one sender without a break for their whole length
# (BUDGET seconds at most) and switch what the tap runs under it.
sender_start() {
  in_ns "$NS_VM" timeout -s INT "$1" trafgen --dev eth0 --conf "$TOPO_DIR/trafgen.cfg" --cpus 1 >/dev/null 2>&1 &
  sender=$!
  sleep 1
}
sender_stop() { kill -INT "$sender" 2>/dev/null || true; wait "$sender" 2>/dev/null || true; }
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
ALT_CYCLES=${BENCH_ALT_CYCLES:-60}
ALT_SECONDS=${BENCH_ALT_SECONDS:-0.5}
alternating_phase() {
  agent_start || return 1
  agent_doc 30 0 > "$TOPO_DIR/agent-policy.json"
  echo '{}' > "$TOPO_DIR/empty.json"
  coproc SAMPLER { in_ns "$NS_HOST" python3 scripts/bench.d/pps_sampler.py "/sys/class/net/$PR/statistics/tx_packets"; }
  local budget
  budget=$(python3 -c "print(int($ALT_CYCLES * 3 * ($ALT_SECONDS + 0.4) + 30))")
  sender_start "$budget"
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
      echo "{\"phase\": \"alternating\", \"mode\": \"$m\", \"cycle\": $c, \"seconds\": $ALT_SECONDS, \"pps\": $pps}" >> "$out"
    done
  done
  phase_end
  eval "exec ${SAMPLER[1]}>&-"
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
BREAKDOWN_CYCLES=${BENCH_BREAKDOWN_CYCLES:-60}
BREAKDOWN_SECONDS=${BENCH_BREAKDOWN_SECONDS:-0.3}
breakdown_phase() {
  noop_obj || return 1
  clang -target bpf -O2 -g -Wall -Werror -Wno-unused-function -I/usr/include/x86_64-linux-gnu -Ibpf \
    -DMIRROR_BENCH_NO_PULL -c bpf/classify.bpf.c -o "$TOPO_DIR/classify-nopull.o" || return 1
  gcc -O2 -o "$TOPO_DIR/progswap" scripts/bench.d/progswap.c -lbpf || return 1
  agent_start || return 1
  agent_doc 30 0 > "$TOPO_DIR/agent-policy.json"
  ctl apply -f "$TOPO_DIR/agent-policy.json" >/dev/null || { agent_end; return 1; }
  local ifx link budget rc=0
  ifx=$(in_ns "$NS_HOST" cat "/sys/class/net/$TAP/ifindex")
  link="$TOPO_DIR/bpffs/links/tcx-$ifx-ingress"
  [ -e "$link" ] || { echo "bench: the agent did not attach through tcx; no breakdown" >&2; agent_end; return 1; }
  budget=$(python3 -c "print(int($BREAKDOWN_CYCLES * 4 * ($BREAKDOWN_SECONDS + 0.2) + 30))")
  sender_start "$budget"
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
PROFILE_CYCLES=${BENCH_PROFILE_CYCLES:-5}
PROFILE_SECONDS=${BENCH_PROFILE_SECONDS:-3}
PROFILE_FREQ=4000
profile_phase() {
  perf record -q -e cpu-clock -o "$TOPO_DIR/perf-check.data" true >/dev/null 2>&1 ||
    { echo "bench: perf cannot sample here; no profile (Debian package: linux-perf)" >&2; return 1; }
  noop_obj || return 1
  [ -x "$TOPO_DIR/tcxload" ] || gcc -O2 -o "$TOPO_DIR/tcxload" scripts/bench.d/tcxload.c -lbpf || return 1
  agent_start || return 1
  agent_doc 30 0 > "$TOPO_DIR/agent-policy.json"
  echo '{}' > "$TOPO_DIR/empty.json"
  local budget c m p ok=1
  budget=$(python3 -c "print(int($PROFILE_CYCLES * 3 * ($PROFILE_SECONDS + 3) + 30))")
  sender_start "$budget"
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
