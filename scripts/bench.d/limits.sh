#!/usr/bin/env bash
# The mirrored path's cost of SPEC §10's limits when they never trigger, side by side
# with no limit: one continuous trafgen sender (64-byte UDP frames, as throughput.sh
# sends them) whose every packet the agent mirrors (one session, one matching rule),
# and every LIMITS_SECONDS an apply switches between the session without limits and
# the same session with a rateLimit far above the rate (packetsPerSecond 10^9,
# bitsPerSecond 10^12: the limiter runs its lock, clock and arithmetic on every
# copy and never skips one) and sampleOneIn 1, LIMITS_CYCLES times, the order
# reversed every other cycle so that the drift of a shared host cancels out. (The
# host budget is set only when the agent starts, so it cannot be alternated under
# one sender; its cost, and the limiter's, in ns per packet are in `mirror-bench
# classifier`'s 1x1_limits and 1x1_budget.)
# Forwarded pps (what the peer receives) and copies (what the collector receives)
# per sample, as JSON lines to $1; the summary (median of the per-cycle ratios
# limits/none) on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: limits.sh OUT.jsonl}
CYCLES=${LIMITS_CYCLES:-80}
# Frame size (Ethernet header to the end of UDP, no FCS): 64 as throughput.sh's
# small frames; LIMITS_FRAME_BYTES=1400 tries the other end (more bits per copy).
FRAME_BYTES=${LIMITS_FRAME_BYTES:-64}
[ "$FRAME_BYTES" -ge 60 ] && [ "$FRAME_BYTES" -le 1500 ] || { echo "limits.sh: LIMITS_FRAME_BYTES must be 60-1500" >&2; exit 2; }
SECONDS_PER_SAMPLE=${LIMITS_SECONDS:-0.4}
source scripts/lib/topology.sh
source scripts/lib/agent.sh
topo_up

vm_mac=$(in_ns "$NS_VM" cat /sys/class/net/eth0/address)
tap_mac=$(in_ns "$NS_HOST" cat /sys/class/net/$TAP/address)
cat > "$TOPO_DIR/trafgen.cfg" <<CFG
{
  eth(da=$tap_mac, sa=$vm_mac, type=0x0800),
  ipv4(saddr=$VM_IP, daddr=$PEER_IP, ttl=64, proto=17),
  udp(sport=dinc(10000, 10999), dport=5001),
  fill(0x00, $((FRAME_BYTES - 42)))
}
CFG
in_ns "$NS_PEER" nft -f - <<NFT
table netdev sink {
  chain rx { type filter hook ingress device "eth0" priority 0; policy drop; }
}
NFT
in_ns "$NS_COL" nft -f - <<NFT
table netdev sink {
  chain rx { type filter hook ingress device "eth0" priority 0; policy drop; }
}
NFT

doc() {
  python3 - "$1" <<'PY'
import json, sys
session = {"id": "s", "priority": 1, "filter": "f", "sources": ["vm"], "target": "collector", "vni": 4242}
if sys.argv[1] == "limits":
    session["rateLimit"] = {"packetsPerSecond": 10**9, "bitsPerSecond": 10**12}
    session["sampleOneIn"] = 1
print(json.dumps({
    "filters": [{"id": "f", "outbound": [{"priority": 1, "action": "accept", "ethertype": "ipv4",
                                         "protocol": "udp", "destinationPorts": "5001"}]}],
    "targets": [{"id": "collector", "type": "nic", "address": "198.51.100.2"}],
    "sources": [{"id": "vm", "interface": "tap-vm1"}], "sessions": [session]}))
PY
}
doc none > "$TOPO_DIR/none.json"
doc limits > "$TOPO_DIR/limits.json"

counter() { in_ns "$1" cat "/sys/class/net/$2/statistics/$3"; }
# pps forwarded and copies a second over SECONDS_PER_SAMPLE.
sample() {
  local p0 c0 p1 c1 t0 t1
  p0=$(counter "$NS_PEER" eth0 rx_packets); c0=$(counter "$NS_COL" eth0 rx_packets); t0=$(date +%s.%N)
  sleep "$SECONDS_PER_SAMPLE"
  p1=$(counter "$NS_PEER" eth0 rx_packets); c1=$(counter "$NS_COL" eth0 rx_packets); t1=$(date +%s.%N)
  python3 -c "t=$t1-$t0; print(f'{($p1-$p0)/t:.0f} {($c1-$c0)/t:.0f}')"
}

budget=$(python3 -c "print(int($CYCLES * 2 * ($SECONDS_PER_SAMPLE + 3) + 60))")
in_ns "$NS_VM" timeout -s INT "$budget" trafgen --dev eth0 --conf "$TOPO_DIR/trafgen.cfg" --cpus 1 >/dev/null 2>&1 &
sender=$!
echo $sender > "$TOPO_DIR/trafgen.pid"
sleep 1

agent_start
modes=(none limits)
for ((c = 1; c <= CYCLES; c++)); do
  for i in 0 1; do
    if ((c % 2)); then m=${modes[i]}; else m=${modes[1 - i]}; fi
    ctl apply -f "$TOPO_DIR/$m.json" >/dev/null
    sleep 0.2
    read -r pps copies < <(sample)
    echo "{\"phase\": \"session\", \"frame_bytes\": $FRAME_BYTES, \"mode\": \"$m\", \"cycle\": $c, \"pps\": $pps, \"copies\": $copies}" | tee -a "$out" >&2
  done
done
# $sender is the shell of in_ns; the INT must reach timeout (and so trafgen) itself.
pkill -INT -f "trafgen --dev eth0 --conf $TOPO_DIR/trafgen.cfg" 2>/dev/null || true; wait "$sender" 2>/dev/null || true
agent_stop; agent_cleanup || true

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for phase, other in (("session", "limits"),):
    by = {}
    for r in rows:
        if r["phase"] == phase:
            by.setdefault(r["cycle"], {})[r["mode"]] = r
    ratios = [c[other]["pps"] / c["none"]["pps"] for c in by.values() if other in c and "none" in c and c["none"]["pps"]]
    copies = [c[other]["copies"] / c["none"]["copies"] for c in by.values() if other in c and "none" in c and c["none"]["copies"]]
    if not ratios:
        print(f"{phase}: no samples"); continue
    none = statistics.median(c["none"]["pps"] for c in by.values() if "none" in c)
    print(f"{phase}: {other} / none forwarded pps, median of {len(ratios)} cycles: {statistics.median(ratios):.4f}"
          f" (min {min(ratios):.4f}, max {max(ratios):.4f}); copies {statistics.median(copies):.4f};"
          f" none forwarded {none:.0f} pps")
PY
