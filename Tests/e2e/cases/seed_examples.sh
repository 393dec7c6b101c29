# SPEC §4 examples mapped onto documentation addresses (examples/demo.json): real
# packets both ways produce exactly the expected copies (VNI per session, exact
# inner frame bytes, nothing extra), read by our decoder and by tshark.
source "$(dirname "$0")/../lib.sh"
topo_up
agent_start
ctl apply -f examples/demo.json
capture "$NS_COL" eth0 col udp port 4789  # first: see crash_safety.sh
capture "$NS_VM" eth0 vm
host_tap=$(mac_of "$NS_HOST" tap-vm1); host_peer=$(mac_of "$NS_HOST" peer0)
send_frames "$NS_PEER" eth0 "$host_peer" <<'SPEC'
{"family":4,"proto":"tcp","src":"203.0.113.10","dst":"192.0.2.10","sport":10000,"dport":80}
{"family":4,"proto":"tcp","src":"203.0.113.10","dst":"192.0.2.10","sport":10001,"dport":80,"payload":300}
{"family":4,"proto":"tcp","src":"203.0.113.10","dst":"192.0.2.10","sport":10002,"dport":80}
{"family":4,"proto":"tcp","src":"203.0.113.10","dst":"192.0.2.10","sport":10000,"dport":81}
{"family":4,"proto":"udp","src":"203.0.113.10","dst":"192.0.2.10","sport":5555,"dport":7,"payload":32}
{"family":4,"proto":"udp","src":"203.0.113.200","dst":"192.0.2.10","sport":5555,"dport":8,"payload":32}
{"family":6,"proto":"tcp","src":"2001:db8:3::10","dst":"2001:db8:1::10","sport":10000,"dport":80}
{"family":6,"proto":"udp","src":"2001:db8:3::10","dst":"2001:db8:1::10","sport":10000,"dport":53,"payload":40}
SPEC
send_frames "$NS_VM" eth0 "$host_tap" <<'SPEC'
{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.200","sport":4000,"dport":5001,"payload":64}
{"family":4,"proto":"tcp","src":"192.0.2.10","dst":"203.0.113.200","sport":4000,"dport":80}
{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":64}
{"family":4,"proto":"icmp","src":"192.0.2.10","dst":"203.0.113.10","payload":56}
{"family":6,"proto":"udp","src":"2001:db8:1::10","dst":"2001:db8:3::10","sport":4000,"dport":5001,"payload":16}
{"family":6,"proto":"icmpv6","src":"2001:db8:1::10","dst":"2001:db8:3::10","payload":16}
SPEC
capture_stop vm; capture_stop col
python3 Tests/e2e/check_copies.py --doc examples/demo.json --source vm1 \
  --vm-mac "$(mac_of "$NS_VM" eth0)" --vm-pcap "$TOPO_DIR/vm.pcap" --col-pcap "$TOPO_DIR/col.pcap" \
  --agentctl "$BIN_DIR/agentctl" --vnis '{"ids": 100, "audit": 200}'
# Both sessions must actually have been exercised (the check above cannot pass vacuously).
[ "$(copies_with_vni "$TOPO_DIR/col.pcap" 100)" -ge 2 ] || fail "session ids (vni 100) got fewer than 2 copies"
[ "$(copies_with_vni "$TOPO_DIR/col.pcap" 200)" -ge 4 ] || fail "session audit (vni 200) got fewer than 4 copies"
# The collector is IPv4 and its next hop is resolved: every copy above was
# encapsulated by the datapath itself and sent straight to the underlay (the
# template path, bpf/mirror_abi.h), and still decoded exactly as checked above.
ctl stats -o json | python3 -c '
import json, sys
s = json.load(sys.stdin)["sessions"]
sent, direct = sum(x["copiesSent"] for x in s), sum(x["copiesSentDirect"] for x in s)
print(f"copies sent {sent}, by the direct path {direct}")
assert sent > 0 and direct == sent, "expected every copy to take the direct path"
'
# The direct path computes the outer IPv4 checksum itself; tshark does not check
# it and the collector's stack would drop a bad one silently.
python3 -c '
import sys; sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
bad = [c for c in vd.copies(sys.argv[1]) if not c["outer_ip_csum_ok"]]
assert not bad, f"{len(bad)} copies with a bad outer IPv4 header checksum"
' "$TOPO_DIR/col.pcap"
