# SPEC §11: `agentctl capture` writes what a session (or a source and direction)
# mirrors as pcapng, read here by tshark: the packets the test sent (count, 5-tuples,
# directions, the session and rule in each comment, wall-clock timestamps), three
# captures at once (one of them `-w -` piped into `tshark -r -`), while the collector
# receives every copy as without a capture. Then Ctrl-C, a reader too slow to keep
# up (its losses counted, the collector still complete), the refusals, an agent
# stopping during a capture (the summary still comes) and one killed during it (the
# next agent clears what it left in the classifier's maps).
source "$(dirname "$0")/../lib.sh"
topo_up
agent_start
ctl apply -f examples/demo.json
host_tap=$(mac_of "$NS_HOST" tap-vm1)
host_pr=$(mac_of "$NS_HOST" peer0)
# No ICMP errors or TCP resets for what the test sends to closed ports: every packet
# mirrored is one the test sent.
for ns in "$NS_VM" "$NS_PEER"; do
  in_ns "$ns" nft -f - <<'NFT'
table inet quiet {
  chain output {
    type filter hook output priority 0;
    icmp type destination-unreachable drop
    tcp flags & rst == rst drop
  }
}
NFT
done
AGENTCTL=("$BIN_DIR/agentctl" --socket "$AGENT_SOCK")
# wait_capturing FILE: until agentctl says the capture runs (its first line on stderr).
wait_capturing() {
  for _ in $(seq 1 100); do grep -q "^capturing" "$1" 2>/dev/null && return 0; sleep 0.1; done
  cat "$1" >&2
  fail "capture did not start: $1"
}
FIELDS=(-T fields -E separator=, -e frame.interface_name -e frame.packet_flags_direction -e ip.src -e ip.dst
  -e ip.proto -e udp.srcport -e udp.dstport -e tcp.srcport -e tcp.dstport -e frame.time_epoch -e frame.comment)

capture "$NS_COL" eth0 col udp port 4789
t0=$(date +%s.%N)
# Three at once: the session audit (40 packets, to a file), the source vm1 outbound
# (to standard output, read by tshark as it comes), and the session ids.
"${AGENTCTL[@]}" capture --session audit -c 40 -w "$TOPO_DIR/audit.pcapng" -o json >"$TOPO_DIR/audit.json" 2>"$TOPO_DIR/audit.err" &
audit_pid=$!
( "${AGENTCTL[@]}" capture --source vm1 --direction outbound --duration 4 -w - 2>"$TOPO_DIR/out.err" \
  | tshark -r - "${FIELDS[@]}" >"$TOPO_DIR/out.txt" 2>"$TOPO_DIR/out.tshark.err" ) &
out_pid=$!
"${AGENTCTL[@]}" capture --session ids -c 5 -w "$TOPO_DIR/ids.pcapng" 2>"$TOPO_DIR/ids.err" &
ids_pid=$!
wait_capturing "$TOPO_DIR/audit.err"
wait_capturing "$TOPO_DIR/out.err"
wait_capturing "$TOPO_DIR/ids.err"

# 20 UDP the ENI sends (audit outbound rule 1), 20 UDP it receives (audit inbound
# rule 3), 5 TCP it receives (ids inbound rule 1), 5 UDP it sends that ids rejects
# (outbound rule 1: 192.0.2.0/24 -> 203.0.113.128/25): never mirrored, never captured.
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":100,"count":20}' \
  | send_frames "$NS_VM" eth0 "$host_tap"
echo '{"family":4,"proto":"udp","src":"203.0.113.10","dst":"192.0.2.10","sport":6000,"dport":7000,"payload":200,"count":20}' \
  | send_frames "$NS_PEER" eth0 "$host_pr"
echo '{"family":4,"proto":"tcp","src":"203.0.113.10","dst":"192.0.2.10","sport":10000,"dport":80,"payload":10,"count":5}' \
  | send_frames "$NS_PEER" eth0 "$host_pr"
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.200","sport":4000,"dport":5002,"payload":100,"count":5}' \
  | send_frames "$NS_VM" eth0 "$host_tap"
wait "$audit_pid" || { cat "$TOPO_DIR/audit.err" >&2; fail "capture --session audit failed"; }
wait "$ids_pid" || { cat "$TOPO_DIR/ids.err" >&2; fail "capture --session ids failed"; }
wait "$out_pid" || { cat "$TOPO_DIR/out.err" "$TOPO_DIR/out.tshark.err" >&2; fail "capture -w - | tshark failed"; }
t1=$(date +%s.%N)
capture_stop col
cat "$TOPO_DIR/audit.err" "$TOPO_DIR/out.err" "$TOPO_DIR/ids.err"
tshark -r "$TOPO_DIR/audit.pcapng" "${FIELDS[@]}" >"$TOPO_DIR/audit.txt"
tshark -r "$TOPO_DIR/ids.pcapng" "${FIELDS[@]}" >"$TOPO_DIR/ids.txt"
# The file's interfaces: one per source and direction.
capinfos "$TOPO_DIR/audit.pcapng" >"$TOPO_DIR/audit.capinfos" 2>&1 || true
python3 - "$TOPO_DIR" "$t0" "$t1" <<'PY'
import collections, json, sys
sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
d, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])

def rows(name):
    out = []
    for line in open(f"{d}/{name}.txt"):
        f = line.rstrip("\n").split(",", 10)
        iface, flags, src, dst, proto, us, ud, ts, td, t, comment = f
        sport, dport = (us, ud) if proto == "17" else (ts, td)
        out.append(dict(iface=iface, direction={1: "inbound", 2: "outbound"}.get(int(flags, 16) & 3, flags), tuple=(src, dst, int(proto), int(sport), int(dport)),
                        time=float(t), comment=comment))
    return out

def check(name, expected):
    r = rows(name)
    got = collections.Counter((x["iface"], x["direction"], x["tuple"], x["comment"]) for x in r)
    print(f"{name}: {len(r)} packets: {dict(got)}")
    assert got == expected, f"{name}: expected {dict(expected)}"
    for x in r:
        assert t0 <= x["time"] <= t1, f"{name}: timestamp {x['time']} outside the test's wall-clock window {t0}..{t1}"

udp_out = ("192.0.2.10", "203.0.113.10", 17, 4000, 5001)
udp_in = ("203.0.113.10", "192.0.2.10", 17, 6000, 7000)
tcp_in = ("203.0.113.10", "192.0.2.10", 6, 10000, 80)
check("audit", collections.Counter({
    ("vm1/outbound", "outbound", udp_out, "session audit rule 1 (filter audit-all, outbound)"): 20,
    ("vm1/inbound", "inbound", udp_in, "session audit rule 3 (filter audit-all, inbound)"): 20}))
check("out", collections.Counter({
    ("vm1/outbound", "outbound", udp_out, "session audit rule 1 (filter audit-all, outbound)"): 20}))
check("ids", collections.Counter({
    ("vm1/inbound", "inbound", tcp_in, "session ids rule 1 (filter seed-rules, inbound)"): 5}))

# The collector received every copy, as without a capture.
c = list(vd.copies(f"{d}/col.pcap"))
by = collections.Counter((x["vni"], (x["inner_src"], x["inner_dst"], x["inner_proto"], x["inner_sport"], x["inner_dport"])) for x in c)
print(f"collector: {len(c)} copies: {dict(by)}")
assert by == collections.Counter({(200, udp_out): 20, (200, udp_in): 20, (100, tcp_in): 5}), "the collector's copies differ"

s = json.load(open(f"{d}/audit.json"))
print(f"audit summary: {s}")
assert s["packets"] == 40 and s["lost"] == 0 and s["ended"] == "count", s
PY
grep -q "^5 packets captured to .*ids.pcapng (capture-[0-9]*, ended: count)" "$TOPO_DIR/ids.err" || fail "ids: no text summary"
grep -q "^0 packets lost" "$TOPO_DIR/ids.err" || fail "ids: no loss line"
grep -q "ended: duration" "$TOPO_DIR/out.err" || fail "-w -: not ended by --duration"
# One interface block per source and direction the capture covers, written up front.
grep -q "Number of interfaces in file: 2" "$TOPO_DIR/audit.capinfos" || { cat "$TOPO_DIR/audit.capinfos"; fail "audit: expected 2 interfaces"; }

# Ctrl-C: the capture stops with its summary and a readable file.
"${AGENTCTL[@]}" capture --source vm1 -w "$TOPO_DIR/int.pcapng" 2>"$TOPO_DIR/int.err" &
int_pid=$!
wait_capturing "$TOPO_DIR/int.err"
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4001,"dport":5001,"payload":100,"count":3}' \
  | send_frames "$NS_VM" eth0 "$host_tap"
sleep 0.5
kill -INT "$int_pid"
wait "$int_pid" || { cat "$TOPO_DIR/int.err"; fail "capture ended by Ctrl-C did not exit 0"; }
cat "$TOPO_DIR/int.err"
grep -q "^3 packets captured .*ended: stopped" "$TOPO_DIR/int.err" || fail "Ctrl-C: summary missing"
expect_eq "$(tshark -r "$TOPO_DIR/int.pcapng" 2>/dev/null | wc -l)" 3 "packets in the file after Ctrl-C"

# A reader too slow to keep up: what it misses is counted, never waited for, and the
# collector still gets every copy.
capture "$NS_COL" eth0 col2 udp port 4789
slow_sent=6000
( "${AGENTCTL[@]}" capture --session audit --duration 8 -w - -o json 2>"$TOPO_DIR/slow.err" \
  | { sleep 5; cat >"$TOPO_DIR/slow.pcapng"; } ) &
slow_pid=$!
wait_capturing "$TOPO_DIR/slow.err"
echo "{\"family\":4,\"proto\":\"udp\",\"src\":\"192.0.2.10\",\"dst\":\"203.0.113.10\",\"sport\":4002,\"dport\":5001,\"payload\":1400,\"count\":$slow_sent}" \
  | send_frames "$NS_VM" eth0 "$host_tap"
wait "$slow_pid" || { cat "$TOPO_DIR/slow.err"; fail "slow capture failed"; }
capture_stop col2
cat "$TOPO_DIR/slow.err"
python3 - "$TOPO_DIR" "$slow_sent" <<'PY'
import json, sys
sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
d, sent = sys.argv[1], int(sys.argv[2])
text = open(f"{d}/slow.err").read()
s = json.loads(text[text.index("{"):])
copies = sum(1 for x in vd.copies(f"{d}/col2.pcap") if x["vni"] == 200 and x["inner_sport"] == 4002)
print(f"slow reader: summary {s}; collector {copies} of {sent}")
assert s["packets"] + s["lost"] == sent, "every packet is either captured or counted as lost"
assert s["lost"] > 0, "the slow reader lost nothing: the test did not test it"
assert copies == sent, "the collector lost copies because of a slow capture"
PY
n=$(tshark -r "$TOPO_DIR/slow.pcapng" 2>/dev/null | wc -l)
grep -q "\"packets\" : $n\b" "$TOPO_DIR/slow.err" || fail "slow: the file holds $n packets, not what the summary says"

# Refusals.
set +e
out=$("${AGENTCTL[@]}" capture --session nope -w "$TOPO_DIR/x.pcapng" 2>&1); rc=$?
set -e
expect_eq "$rc" 1 "unknown session exit code"
echo "$out" | grep -q "no session 'nope'" || fail "unknown session: $out"
[ ! -e "$TOPO_DIR/x.pcapng" ] || fail "a refused capture left a file"
set +e
out=$("${AGENTCTL[@]}" capture --source nope -w "$TOPO_DIR/x.pcapng" 2>&1); rc=$?
set -e
expect_eq "$rc" 1 "unknown source exit code"
echo "$out" | grep -q "no source 'nope'" || fail "unknown source: $out"
set +e
out=$("${AGENTCTL[@]}" capture --session audit --source vm1 -w "$TOPO_DIR/x.pcapng" 2>&1); rc=$?
set -e
expect_eq "$rc" 2 "--session with --source exit code"
echo "$out" | grep -q "cannot be used together" || fail "--session with --source: $out"
set +e
out=$("${AGENTCTL[@]}" capture --source vm1 --direction sideways -w "$TOPO_DIR/x.pcapng" 2>&1); rc=$?
set -e
expect_eq "$rc" 2 "bad direction exit code"
echo "$out" | grep -q "inbound" || fail "bad direction: $out"

# The agent stops (SIGTERM) during a capture: the capture ends with its summary and
# does not hold the stop up.
"${AGENTCTL[@]}" capture --session audit -w "$TOPO_DIR/stop.pcapng" 2>"$TOPO_DIR/stop.err" &
stop_pid=$!
wait_capturing "$TOPO_DIR/stop.err"
t_stop=$(date +%s)
agent_stop
wait "$stop_pid" || { cat "$TOPO_DIR/stop.err"; fail "capture during an agent stop did not exit 0"; }
cat "$TOPO_DIR/stop.err"
grep -q "ended: agent stopping" "$TOPO_DIR/stop.err" || fail "agent stop: no summary"
[ $(( $(date +%s) - t_stop )) -lt 5 ] || fail "the capture held the agent's stop up"

# An agent killed during a capture leaves the classifier wanting packets for a ring
# nobody reads; the next agent clears that at start.
wants() {
  bpftool -j map dump pinned "$(echo "$TOPO_DIR"/bpffs/layout-*/mirror_capture_want)" | python3 -c '
import json, sys
print(sum(1 for e in json.load(sys.stdin) if any(int(b, 16) for b in e["value"])))'
}
agent_start
"${AGENTCTL[@]}" capture --source vm1 -w "$TOPO_DIR/kill.pcapng" 2>"$TOPO_DIR/kill.err" &
kill_pid=$!
wait_capturing "$TOPO_DIR/kill.err"
expect_eq "$(wants)" 2 "want entries while capturing vm1 (both directions)"
kill -9 "$(cat "$TOPO_DIR/agent.pid")"
rm -f "$TOPO_DIR/agent.pid"
if wait "$kill_pid"; then fail "agentctl exited 0 although its agent died"; fi
grep -q "ended without its summary" "$TOPO_DIR/kill.err" || { cat "$TOPO_DIR/kill.err"; fail "agent killed: agentctl did not say so"; }
expect_eq "$(wants)" 2 "want entries a killed agent left"
agent_start
expect_eq "$(wants)" 0 "want entries after the next agent started"
# And the restarted agent's captures get packets (its programs replaced the dead one's).
"${AGENTCTL[@]}" capture --source vm1 -c 2 -w "$TOPO_DIR/again.pcapng" 2>"$TOPO_DIR/again.err" &
again_pid=$!
wait_capturing "$TOPO_DIR/again.err"
echo '{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4003,"dport":5001,"payload":100,"count":2}' \
  | send_frames "$NS_VM" eth0 "$host_tap"
wait "$again_pid" || { cat "$TOPO_DIR/again.err"; fail "capture after a restart failed"; }
grep -q "^2 packets captured" "$TOPO_DIR/again.err" || { cat "$TOPO_DIR/again.err"; fail "capture after a restart: no packets"; }
echo "capture: all checks passed"
