# SPEC §6: segmentation-offload super-packets are mirrored as the wire-size packets
# a NIC would see, each once. A TCP bulk transfer (iperf3) with offloads on, twice:
# (a) source MTU 1400, at least 64 bytes under the underlay's 1500 (the seed's
#     advice): every wire segment arrives once, whole; the inner TCP payload of the
#     copies adds up to at least the bytes sent and exceeds them by no more than
#     what was retransmitted;
# (b) source MTU 1500 = underlay MTU: one copy per wire segment, each truncated to
#     fit, none above the underlay MTU, none dropped for size;
# (c) source MTU 1400 and the session's packetLength 128: the same, each copy cut
#     to 128 bytes.
# The agent's metrics agree: in (a) the whole super-packets are encapsulated once
# on the direct path and the underlay cuts them (none goes to the segmenter), and
# `sent` counts the wire segments the collector receives; copies that must be cut
# ((b), (c)) go to the segmenter; none is cut whole; and promtool accepts the
# scrape.
source "$(dirname "$0")/../lib.sh"
topo_up
# The underlay behaves like a NIC that segments in software before the wire: the
# collector's capture then shows wire packets, not super-packets.
in_ns "$NS_HOST" ethtool -K underlay0 tso off gso off tx-udp_tnl-segmentation off \
  tx-udp_tnl-csum-segmentation off >/dev/null 2>&1 || true
agent_start
# apply_bulk [PACKET_LENGTH]: one session mirroring the VM's TCP to the collector.
apply_bulk() {
  python3 - "$TOPO_DIR/doc.json" "${1:-0}" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
d["filters"] = [{"id": "tcp", "inbound": [{"priority": 1, "action": "accept", "ethertype": "ipv4", "protocol": "tcp"}],
                 "outbound": [{"priority": 1, "action": "accept", "ethertype": "ipv4", "protocol": "tcp"}]}]
d["sessions"] = [{"id": "bulk", "priority": 1, "filter": "tcp", "sources": ["vm1"], "target": "collector", "vni": 700}]
if int(sys.argv[2]):
    d["sessions"][0]["packetLength"] = int(sys.argv[2])
json.dump(d, open(sys.argv[1], "w"))
PY
  ctl apply -f "$TOPO_DIR/doc.json"
}
apply_bulk

# Segments the VM's TCP retransmitted (/proc/net/snmp of its namespace): iperf3
# reads its count before the test's last segments have left, so a late tail-loss
# probe would be missing from it.
vm_retrans() {
  in_ns "$NS_VM" awk '/^Tcp:/ { if (!n++) { for (i = 1; i <= NF; i++) if ($i == "RetransSegs") f = i } else print $f }' /proc/net/snmp
}

run() {
  local name=$1 mtu=$2
  in_ns "$NS_VM" ip link set eth0 mtu "$mtu"
  in_ns "$NS_HOST" ip link set tap-vm1 mtu "$mtu"
  # One test, then the server exits by itself (-1); its pid is killed at exit too.
  ip netns exec "$NS_PEER" iperf3 -s -1 -B "$PEER_IP" >"$TOPO_DIR/iperf3-server-$name.log" 2>&1 &
  echo $! > "$TOPO_DIR/iperf3-server.pid"
  for _ in $(seq 1 50); do in_ns "$NS_PEER" ss -ltn | grep -q ":5201 " && break; sleep 0.1; done
  capture "$NS_COL" eth0 "$name" udp port 4789
  local before; before=$(vm_retrans)
  in_ns "$NS_VM" iperf3 -c "$PEER_IP" -n 8M -J > "$TOPO_DIR/$name.json"
  capture_stop "$name"
  python3 - "$TOPO_DIR/$name.pcap" "$TOPO_DIR/$name.json" "$name" "$mtu" "$(( $(vm_retrans) - before ))" <<'PY'
import collections, json, sys
sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
pcap, result, name, mtu = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], int(sys.argv[4])
sent = result["end"]["sum_sent"]["bytes"]
# What the server read crossed the wire; the client's count is what it wrote to its
# socket, and the tail of that may never be sent when the one-shot server closes
# first (on a loaded machine the copies then end before `sent`).
received = result["end"]["sum_received"]["bytes"]
retrans = max(result["end"]["sum_sent"].get("retransmits", 0), int(sys.argv[5]))
data = [c for c in vd.copies(pcap) if c.get("inner_dport") == 5201 and c.get("inner_src") == "192.0.2.10"
        and c.get("inner_tcp_payload", 0) > 0]
mss = mtu - 40 - 12   # timestamps on
over = [c for c in vd.copies(pcap) if c["outer_len"] > 1500]
open(pcap + ".copies", "w").write(f"{len(list(vd.copies(pcap)))}\n")
print(f"{name}: iperf3 sent {sent} bytes, server read {received} ({retrans} retransmits); {len(data)} data copies, "
      f"inner lengths {min((c['inner_len'] for c in data), default=0)}..{max((c['inner_len'] for c in data), default=0)}, "
      f"{len(over)} copies above the underlay MTU")
assert not over, "a copy exceeds the underlay MTU"
seqs = collections.Counter(c["inner_tcp_seq"] for c in data)
# Every wire segment of the bulk connection once, whatever iperf3 counted: its
# copies cover the stream from the SYN on without a hole, at least as far as the
# server read.
def tcp_flags(c):
    b = bytes.fromhex(c["inner_hex"]); ihl = (b[14] & 0x0F) * 4
    return b[14 + ihl + 13] if len(b) > 14 + ihl + 13 else 0
bulk_port = collections.Counter(c["inner_sport"] for c in data).most_common(1)[0][0]
syn = [c for c in vd.copies(pcap) if c.get("inner_sport") == bulk_port and c.get("inner_src") == "192.0.2.10"
       and tcp_flags(c) & 0x02]
assert syn, "no copy of the bulk connection's SYN"
isn = syn[0]["inner_tcp_seq"]
covered, holes = 0, []
for c in sorted((c for c in data if c["inner_sport"] == bulk_port), key=lambda c: (c["inner_tcp_seq"] - isn - 1) & 0xFFFFFFFF):
    start = (c["inner_tcp_seq"] - isn - 1) & 0xFFFFFFFF
    if start > covered:
        holes.append((covered, start))
    covered = max(covered, start + c["inner_tcp_payload"])
print(f"{name}: bulk stream covered from the SYN to byte {covered}, {len(holes)} holes {holes[:5]}")
assert not holes, "segments missing among the copies"
assert covered >= received, f"copies cover {covered} bytes of the stream, the server read {received}"
if name == "a":
    # Whole segments: the payload they carry is the payload sent.
    payload = sum(c["inner_tcp_payload"] for c in data if c["inner_len"] == c["inner_wire_len"])
    whole = sum(1 for c in data if c["inner_len"] == c["inner_wire_len"] <= mtu + 14)
    print(f"a: payload in copies {payload}, whole copies {whole}/{len(data)}")
    assert whole == len(data), "every copy must be one wire segment (no super-packet)"
    assert payload >= received, f"copies carry {payload} payload bytes, fewer than the {received} received"
    assert payload <= sent + (retrans + 2) * mss, f"copies carry {payload - sent} bytes more than sent plus retransmits"
else:
    # Truncated wire segments: one copy per segment sent.
    limit = 128 if name == "c" else 1500 - 50 + 14
    segments = -(-received // mss)
    print(f"{name}: {len(data)} copies for at least {segments} wire segments")
    assert all(c["inner_len"] <= limit for c in data), f"a copy is not truncated to {limit}"
    assert all(c["inner_wire_len"] <= mtu + 14 for c in data), "a copy is a super-packet, not one wire segment"
    assert len(data) >= segments, f"only {len(data)} copies for {segments} wire segments: segments were lost"
    # A super-packet may end in a short segment, so there can be more wire segments
    # than sent/mss: bound the copies by what they carry instead. A truncated copy's
    # IP header is intact, so inner_tcp_payload is its wire segment's payload.
    payload = sum(c["inner_tcp_payload"] for c in data)
    dups = sum(n - 1 for n in seqs.values())
    print(f"{name}: wire payload of the copies {payload}, {dups} repeated sequence numbers")
    assert payload >= received, f"copies stand for {payload} payload bytes, fewer than the {received} received"
    assert payload <= sent + (retrans + 2) * mss, f"copies stand for {payload - sent} bytes more than sent plus retransmits"
    twice = [(c["inner_sport"], c["inner_tcp_seq"], c["inner_tcp_payload"], round(c["ts"], 6)) for c in data if seqs[c["inner_tcp_seq"]] > 1]
    assert dups <= retrans, f"{dups} segments copied twice, only {retrans} retransmitted: {twice[:6]}"
PY
}
# scrape: the agent's /metrics into $TOPO_DIR/metrics.txt; series 'NAME{LABELS}': its value there.
scrape() { nsenter --net="/run/netns/$NS_HOST" curl -sf --max-time 5 http://127.0.0.1:9469/metrics >"$TOPO_DIR/metrics.txt"; }
series() { awk -v s="$1" '$1 == s { print $2 }' "$TOPO_DIR/metrics.txt"; }
# segmenter_counts NAME: checks the GSO counters after run NAME, prints the segmented count.
segmenter_counts() {
  scrape || fail "$1: /metrics did not answer"
  local segmented whole
  segmented=$(series 'mirror_copies_segmented_total{session="bulk"}')
  whole=$(series 'mirror_copies_truncated_gso_total{session="bulk"}')
  echo "$1: metrics: $segmented GSO copies segmented, $whole cut whole" >&2
  [ -n "$segmented" ] && [ -n "$whole" ] || fail "$1: the GSO counters are missing from /metrics"
  expect_eq "$whole" 0 "$1: GSO copies cut whole (the segmenter is there)"
  echo "$segmented"
}

run a 1400
seg_a=$(segmenter_counts a)
expect_eq "$seg_a" 0 "a: GSO copies sent to the segmenter although their wire segments fit (the underlay cuts them)"
# Every wire segment the collector received was counted as sent (the capture may
# miss none here; the agent also counts what left after it stopped).
sent_a=$(series 'mirror_copies_sent_total{session="bulk"}')
copies_a=$(cat "$TOPO_DIR/a.pcap.copies")
echo "a: metrics: $sent_a copies sent, $copies_a captured at the collector" >&2
[ -n "$sent_a" ] && [ "$sent_a" -ge "$copies_a" ] || fail "a: $sent_a copies counted as sent, the collector captured $copies_a"
[ "$sent_a" -le $((copies_a + copies_a / 10 + 20)) ] || fail "a: $sent_a copies counted as sent, far more than the $copies_a captured"
run b 1500
seg_b=$(segmenter_counts b)
[ "$seg_b" -gt 0 ] || fail "b: no GSO copy counted as segmented ($seg_b), yet every copy is one wire segment"
apply_bulk 128
run c 1400
seg_c=$(segmenter_counts c)
[ "$seg_c" -gt "$seg_b" ] || fail "c: no GSO copy counted as segmented ($seg_b before, $seg_c after)"
if command -v promtool >/dev/null; then
  promtool check metrics <"$TOPO_DIR/metrics.txt" || fail "promtool check metrics complains about the scrape"
fi
