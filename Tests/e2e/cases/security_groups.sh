# With nftables enforcement on (examples/security-groups.json,
# "enforce": true), a mix of new connections, replies, denied ports, denied
# remotes, ACL denies and reply-looking packets without a connection, both
# directions, IPv4 and IPv6, crosses the source. The copies at the collector must be
# exactly the packets enforcement let through (captured at the VM and the peer) that
# the session accepts: nothing denied is mirrored, nothing let through is missing.
source "$(dirname "$0")/../lib.sh"
DOC=examples/security-groups.json
topo_up
agent_start
ctl apply -f "$DOC"
in_ns "$NS_HOST" nft list table inet mirror_enforce >/dev/null || fail "enforcement table missing after apply"
# conntrack's default treats mid-stream TCP as established; the groups' meaning
# (and the agent's flow table) does not: a reply-looking packet with no connection is new.
in_ns "$NS_HOST" sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0

capture "$NS_COL" eth0 col udp port 4789  # first: see crash_safety.sh
capture "$NS_VM" eth0 vm
capture "$NS_PEER" eth0 peer
host_tap=$(mac_of "$NS_HOST" tap-vm1); host_peer=$(mac_of "$NS_HOST" peer0)
N=5   # packets per flow
gen() {  # gen FAMILY PROTO SRC SPORT0 DST DPORT0 FLOWS [FLAGS]: one spec line per flow
  python3 - "$@" <<'PY'
import json, sys
fam, proto, src, sp0, dst, dp0, flows = sys.argv[1:8]
flags = int(sys.argv[8], 0) if len(sys.argv) > 8 and sys.argv[8] else None
for i in range(int(flows)):
    sp, dp = int(sp0), int(dp0)
    spec = {"family": int(fam), "proto": proto, "src": src, "dst": dst, "count": int(sys.argv[9]) if len(sys.argv) > 9 else 5}
    if proto in ("tcp", "udp"):
        spec["sport"] = sp + i if sp >= 1024 else sp
        spec["dport"] = dp + i if dp >= 1024 else dp
    if proto == "udp":
        spec["payload"] = 24
    if flags is not None:
        spec["tcp_flags"] = flags
    print(json.dumps(spec))
PY
}
P4=$PEER_IP; P4B=$PEER_IP2; P6=$PEER_IP6; V4=$VM_IP; V6=$VM_IP6
# Inbound (from the peer). Flows: distinct source ports.
{
  gen 4 tcp $P4 41000 $V4 80 30            # allowed new connections (VM answers RST: replies)
  gen 6 tcp $P6 42000 $V6 80 30            # same, IPv6
  gen 4 tcp $P4 43000 $V4 8080 20          # denied port
  gen 4 udp $P4B 44000 $V4 53 20           # denied remote (udp 53 only from .10)
  gen 4 tcp $P4B 45000 $V4 80 20           # the group allows, the ACL denies (.200 -> :80)
  gen 4 udp $P4 46000 $V4 53 10            # allowed (the VM's port unreachable errors are related: allowed)
  gen 4 udp $P4 47000 $V4 9 10             # allowed, the session rejects it
  gen 4 tcp $P4 443 $V4 48000 20 0x10      # reply-looking ACK, no connection
  gen 6 udp $P6 49000 $V6 53 10            # denied (no IPv6 udp rule)
  gen 4 icmp $P4B 0 $V4 0 1 "" 20          # allowed ping (replies established)
  gen 6 icmpv6 $P6 0 $V6 0 1 "" 20         # allowed ping, IPv6
} > "$TOPO_DIR/inbound.jsonl"
# Outbound (from the VM).
{
  gen 4 tcp $V4 50000 $P4 443 30           # allowed new connections (the peer answers RST)
  gen 6 tcp $V6 51000 $P6 443 30           # same, IPv6
  gen 4 udp $V4 52000 $P4 5000 20          # the group denies all egress UDP
  gen 6 udp $V6 53000 $P6 5000 20          # same, IPv6
  gen 4 tcp $V4 54000 $P4B 443 20          # the group allows, the ACL denies (-> .200:443)
  gen 4 tcp $V4 80 $P4 55000 20 0x12       # reply-looking SYN-ACK, no connection
  gen 6 tcp $V6 80 $P6 56000 10 0x12       # same, IPv6
  gen 4 tcp $V4 57000 $P4B 22 10           # allowed (ssh to the bastion only)
  gen 4 tcp $V4 58000 $P4 22 10            # denied remote
} > "$TOPO_DIR/outbound.jsonl"
# Fragmented datagrams (3 fragments each, one per flow): later fragments show no
# ports and must follow their connection (conntrack reassembles them).
frag() {  # frag FAMILY PROTO SRC SPORT0 DST DPORT FLOWS ID0
  python3 - "$@" <<'PY'
import json, sys
fam, proto, src, sp0, dst, dp, flows, id0 = sys.argv[1:9]
for i in range(int(flows)):
    print(json.dumps({"family": int(fam), "proto": proto, "src": src, "dst": dst, "sport": int(sp0) + i,
                      "dport": int(dp), "payload": 200, "fragments": 3, "id": int(id0) + i}))
PY
}
frag 4 udp $P4 46500 $V4 53 10 1000 >> "$TOPO_DIR/inbound.jsonl"     # allowed
frag 6 tcp $P6 42500 $V6 80 10 2000 >> "$TOPO_DIR/inbound.jsonl"     # allowed (VM answers RST)
frag 4 tcp $V4 50500 $P4 443 10 3000 >> "$TOPO_DIR/outbound.jsonl"   # allowed
frag 6 tcp $V6 51500 $P6 443 10 4000 >> "$TOPO_DIR/outbound.jsonl"   # allowed
frag 4 udp $V4 52500 $P4 5000 10 5000 >> "$TOPO_DIR/outbound.jsonl"  # egress UDP denied
flows=$(cat "$TOPO_DIR/inbound.jsonl" "$TOPO_DIR/outbound.jsonl" | wc -l)
[ "$flows" -ge 200 ] || fail "only $flows flows"
# In slices, so captures keep up.
split -l 40 "$TOPO_DIR/inbound.jsonl" "$TOPO_DIR/in."
split -l 40 "$TOPO_DIR/outbound.jsonl" "$TOPO_DIR/out."
for f in "$TOPO_DIR"/in.*; do send_frames "$NS_PEER" eth0 "$host_peer" < "$f"; sleep 0.2; done
for f in "$TOPO_DIR"/out.*; do send_frames "$NS_VM" eth0 "$host_tap" < "$f"; sleep 0.2; done
sleep 0.5
capture_stop vm; capture_stop peer; capture_stop col

python3 Tests/e2e/check_security.py --doc "$DOC" --source vm1 --vm-mac "$(mac_of "$NS_VM" eth0)" \
  --vm-pcap "$TOPO_DIR/vm.pcap" --peer-pcap "$TOPO_DIR/peer.pcap" --col-pcap "$TOPO_DIR/col.pcap" \
  --agentctl "$BIN_DIR/agentctl" --vnis '{"ids": 600}' --summary "$TOPO_DIR/summary.json"

# The check above must not pass vacuously: enough traffic, and every case exercised.
python3 - "$TOPO_DIR/summary.json" "$TOPO_DIR/inbound.jsonl" <<'PY' || fail "traffic mix not as intended (see above)"
import json, sys
s = json.load(open(sys.argv[1]))
sent_in = sum(json.loads(l).get("count", 1) * json.loads(l).get("fragments", 1) for l in open(sys.argv[2]))
def n(prefix, what):
    return sum(v for k, v in s.items() if "|" in k and k.split("|")[0].startswith(prefix) and k.split("|")[1] == what)
out_frames = sum(v for k, v in s.items() if k.startswith("outbound") and k.split("|")[1] in ("through", "dropped by enforcement"))
crossing = sent_in + out_frames
checks = {
    "packets crossing the source >= 2000": crossing >= 2000,
    "replies of allowed inbound TCP mirrored as outbound (v4)": n("outbound ipv4 6 AR", "expected copy") >= 100,
    "replies of allowed inbound TCP mirrored as outbound (v6)": n("outbound ipv6 6 AR", "expected copy") >= 100,
    "replies of allowed outbound TCP mirrored as inbound": n("inbound  ipv4 6 AR", "expected copy") >= 100,
    "reply-looking SYN-ACKs without connection dropped": n("outbound ipv4 6 SA", "dropped by enforcement") >= 100
        and n("outbound ipv6 6 SA", "dropped by enforcement") >= 50,
    "egress UDP dropped": n("outbound ipv4 17", "dropped by enforcement") >= 100,
    "ACL and group denies outbound (SYN) dropped": n("outbound ipv4 6 S", "dropped by enforcement") >= 100,
    "session reject exercised": n("inbound  ipv4 17 47", "not mirrored: rejected_by_rule") >= 10,
    "inbound copies arrived despite the egress UDP deny": n("copy     ipv4 6", "received") >= 200,
    "ping replies mirrored": n("outbound ipv4 1 type 0", "expected copy") >= 10 and n("outbound ipv6 58 type 129", "expected copy") >= 10,
    "ICMP errors about allowed flows (related) mirrored": n("outbound ipv4 1 type 3", "expected copy") >= 1,
    "later fragments of allowed flows mirrored": n("inbound  ipv4 17 fragment (later)", "expected copy") >= 10
        and n("inbound  ipv6 6 fragment (later)", "expected copy") >= 10
        and n("outbound ipv4 6 fragment (later)", "expected copy") >= 10
        and n("outbound ipv6 6 fragment (later)", "expected copy") >= 10,
    "later fragments of denied flows dropped": n("outbound ipv4 17 fragment (later)", "dropped by enforcement") >= 10,
}
print(f"crossing the source: {crossing} packets ({sent_in} sent inbound, {out_frames} sent by the VM)")
bad = [k for k, ok in checks.items() if not ok]
for k in checks: print(("ok   " if checks[k] else "FAIL ") + k)
sys.exit(1 if bad else 0)
PY

# explain (the agent, through the kernel program) names the group/ACL and rule.
out=$(ctl explain --source vm1 --direction outbound --protocol udp --src 192.0.2.10:52000 --dst 203.0.113.10:5000)
echo "$out"
echo "$out" | grep -q "security group web rule 1" || fail "explain does not name security group web rule 1"
out=$(ctl explain --source vm1 --direction outbound --protocol tcp --src 192.0.2.10:54000 --dst 203.0.113.200:443)
echo "$out"
echo "$out" | grep -q "network ACL edge rule 5" || fail "explain does not name network ACL edge rule 5"

# The metrics count what the groups and the ACL suppressed, per source and direction.
metrics=$(in_ns "$NS_HOST" python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9469/metrics").read().decode())')
metric() {  # metric DIRECTION REASON
  echo "$metrics" | awk -v d="$1" -v r="$2" '/^mirror_packets_not_mirrored_total\{/ && index($0, "source=\"vm1\"") && index($0, "direction=\"" d "\"") && index($0, "reason=\"" r "\"") {print $NF}'
}
sg=$(metric outbound suppressed_by_security_group); acl=$(metric outbound suppressed_by_acl)
echo "metrics: outbound suppressed_by_security_group=$sg suppressed_by_acl=$acl"
[ "${sg:-0}" -ge 400 ] || fail "metrics: outbound suppressed_by_security_group is '${sg}', want >= 400"
[ "${acl:-0}" -ge 100 ] || fail "metrics: outbound suppressed_by_acl is '${acl}', want >= 100"
# And what the groups let through as part of the connections they allowed (the later
# packets of each allowed flow, the VM's and the peer's answers), and those connections.
established() {  # established DIRECTION
  echo "$metrics" | awk -v d="$1" '/^mirror_source_packets_established_total\{/ && index($0, "source=\"vm1\"") && index($0, "direction=\"" d "\"") {print $NF}'
}
est_in=$(established inbound); est_out=$(established outbound)
conns=$(echo "$metrics" | awk '$1 == "mirror_security_flows" {print $2}')
echo "metrics: established inbound=$est_in outbound=$est_out, connections held=$conns"
[ "${est_in:-0}" -ge 100 ] || fail "metrics: inbound established is '${est_in}', want >= 100"
[ "${est_out:-0}" -ge 100 ] || fail "metrics: outbound established is '${est_out}', want >= 100"
[ "${conns:-0}" -ge 100 ] || fail "metrics: mirror_security_flows is '${conns}', want >= 100 (the allowed connections)"
if command -v promtool >/dev/null; then
  echo "$metrics" | promtool check metrics || fail "promtool check metrics complains about the scrape"
fi

# Every apply runs nft (a check, then the transaction) and nothing of it stays in
# the agent: twelve more applies, the table dropped and restored, leave its file
# descriptors where the warm-up left them.
agent_pid=$(cat "$TOPO_DIR/agent.pid")
fds() { ls /proc/"$agent_pid"/fd | wc -l; }
echo '{}' > "$TOPO_DIR/empty.json"
# Warmed up by six pairs first: what the agent opens once, lazily (a pool, a pipe
# of the process runner), is not a leak; a leak grows with every apply after it.
for _ in 1 2 3 4 5 6; do ctl apply -f "$TOPO_DIR/empty.json" >/dev/null; ctl apply -f "$DOC" >/dev/null; done
fds0=$(fds)
for _ in 1 2 3 4 5 6; do ctl apply -f "$TOPO_DIR/empty.json" >/dev/null; ctl apply -f "$DOC" >/dev/null; done
# A leak stays; a connection or pipe still closing after the last apply does not:
# give those two seconds to go.
for _ in $(seq 1 20); do fds1=$(fds); [ "$fds1" -le "$fds0" ] && break; sleep 0.1; done
in_ns "$NS_HOST" nft list table inet mirror_enforce >/dev/null || fail "enforcement table missing after the re-applies"
echo "re-applies: agent fds $fds0 -> $fds1"
[ "$fds1" -le "$fds0" ] || fail "the agent's file descriptors grew over 12 applies that ran nft: $fds0 -> $fds1"

# cleanup removes the enforcement table with everything else.
agent_stop
agent_cleanup
if in_ns "$NS_HOST" nft list tables | grep -q mirror_enforce; then fail "cleanup left table inet mirror_enforce"; fi
echo "security_groups: OK"
