# SPEC §8: hitless policy swaps. Under steady traffic both ways,
# `agentctl apply` alternates between two policies (A = examples/demo.json, B = a
# variant with other VNIs and rules, so a copy's VNI names the policy and session
# that decided it) as many times as fit in the time budget (the issue asks 1,000).
# Every frame the VM's eth0 saw is judged by the oracle under A and under B:
#   - every copy at the collector has a VNI that A or B gives that frame
#     (a copy with A's rules but B's VNI would be a mix);
#   - no frame has more copies than the VM saw of it (no packet mirrored twice);
#   - a frame that both A and B mirror has exactly one copy per time the VM saw it;
#   - no copy of anything the VM did not see.
source "$(dirname "$0")/../lib.sh"
APPLIES=${HITLESS_APPLIES:-1000}      # at most this many applies ...
BUDGET=${HITLESS_SECONDS:-45}         # ... within this many seconds
topo_up
agent_start
DOC_A=examples/demo.json
DOC_B=$TOPO_DIR/policy-b.json
python3 - "$DOC_B" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
f = {x["id"]: x for x in d["filters"]}
# ids (vni 101): outbound UDP to 203.0.113.10:5001 is now decided by ids (audit
# decides it under A); the reject of 203.0.113.128/25 is gone (mirrored by audit).
f["seed-rules"]["outbound"] = [
    {"priority": 1, "action": "accept", "ethertype": "ipv4", "protocol": "udp",
     "source": "192.0.2.10/32", "destination": "203.0.113.10/32", "destinationPorts": "5001"}]
# audit (vni 201): inbound UDP to port 7 is mirrored (rejected under A); outbound
# IPv6 is not mirrored (mirrored under A).
a = f["audit-all"]
a["inbound"][0]["action"] = "accept"
a["outbound"] = [r for r in a["outbound"] if r["ethertype"] == "ipv4"]
for s in d["sessions"]:
    s["vni"] += 1
json.dump(d, open(sys.argv[1], "w"), indent=1)
PY
ctl apply -f "$DOC_A" >/dev/null
host_tap=$(mac_of "$NS_HOST" tap-vm1); host_peer=$(mac_of "$NS_HOST" peer0)
capture "$NS_COL" eth0 col udp port 4789  # first: see crash_safety.sh
capture "$NS_VM" eth0 vm
# Every repetition is a distinct frame (IPv4 id / TCP sequence number count up).
cat > "$TOPO_DIR/vm-flows.json" <<'SPEC'
{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":4000,"dport":5001,"payload":64}
{"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.200","sport":4000,"dport":5001,"payload":32}
{"family":6,"proto":"tcp","src":"2001:db8:1::10","dst":"2001:db8:3::10","sport":4000,"dport":5001}
SPEC
cat > "$TOPO_DIR/peer-flows.json" <<'SPEC'
{"family":4,"proto":"tcp","src":"203.0.113.10","dst":"192.0.2.10","sport":10000,"dport":80}
{"family":4,"proto":"udp","src":"203.0.113.200","dst":"192.0.2.10","sport":5555,"dport":7,"payload":32}
{"family":6,"proto":"tcp","src":"2001:db8:3::10","dst":"2001:db8:1::10","sport":10000,"dport":53}
SPEC
send_for=$((BUDGET + 60))   # stopped right after the last apply
ip netns exec "$NS_VM" python3 Tests/e2e/send.py --iface eth0 --dst-mac "$host_tap" --for-seconds "$send_for" \
  --interval 0.01 "$TOPO_DIR/vm-flows.json" >/dev/null &
echo $! > "$TOPO_DIR/sender-vm.pid"
ip netns exec "$NS_PEER" python3 Tests/e2e/send.py --iface eth0 --dst-mac "$host_peer" --for-seconds "$send_for" \
  --interval 0.01 "$TOPO_DIR/peer-flows.json" >/dev/null &
echo $! > "$TOPO_DIR/sender-peer.pid"
sleep 1
n=0; gen0=$(ctl status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')
t0=$(date +%s)
while [ "$n" -lt "$APPLIES" ] && [ $(( $(date +%s) - t0 )) -lt "$BUDGET" ]; do
  if [ $((n % 2)) -eq 0 ]; then doc=$DOC_B; else doc=$DOC_A; fi
  ctl apply -f "$doc" >/dev/null || fail "apply #$((n + 1)) failed"
  n=$((n + 1))
done
elapsed=$(( $(date +%s) - t0 ))
gen1=$(ctl status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')
echo "applies: $n in ${elapsed}s (generation $gen0 -> $gen1)"
expect_eq "$((gen1 - gen0))" "$n" "every apply changed the policy (generations)"
[ "$n" -ge 200 ] || fail "only $n applies fit in ${BUDGET}s (at least 200 wanted)"
sleep 0.5
for s in vm peer; do kill "$(cat "$TOPO_DIR/sender-$s.pid")"; wait "$(cat "$TOPO_DIR/sender-$s.pid")" || true; done
sleep 0.3
capture_stop vm; capture_stop col
grep -i "dropped by kernel" "$TOPO_DIR"/vm.tcpdump.log "$TOPO_DIR"/col.tcpdump.log || true
for c in vm col; do
  d=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$TOPO_DIR/$c.tcpdump.log")
  [ "${d:-0}" = 0 ] || fail "the $c capture dropped $d packets: the comparison would be wrong"
done
python3 - "$DOC_A" "$DOC_B" "$(mac_of "$NS_VM" eth0)" "$TOPO_DIR/vm.pcap" "$TOPO_DIR/col.pcap" "$BIN_DIR/agentctl" <<'PY'
import collections, json, sys
sys.path.insert(0, "Tests/e2e")
import vxlan_decode as vd
from check_copies import explain
doc_a, doc_b, vm_mac, vm_pcap, col_pcap, agentctl = sys.argv[1:]
vm_mac = bytes.fromhex(vm_mac.replace(":", ""))
vnis = {doc: {s["id"]: s["vni"] for s in json.load(open(doc))["sessions"]} for doc in (doc_a, doc_b)}
cache = {}
seen = collections.Counter()       # frame hex -> times the VM's eth0 saw it
judged = {}                        # frame hex -> (vni under A or None, vni under B or None)
for _, fr, _ in vd.pcap_packets(vm_pcap):
    h = fr.hex()
    seen[h] += 1
    if h not in judged:
        direction = "outbound" if fr[6:12] == vm_mac else "inbound"
        v = []
        for doc in (doc_a, doc_b):
            _, d = explain(agentctl, doc, "vm1", direction, fr, cache)
            v.append(vnis[doc][d["session"]] if d["mirrored"] else None)
        judged[h] = tuple(v)
copies = list(vd.copies(col_pcap))
got = collections.defaultdict(collections.Counter)   # frame hex -> vni -> copies
for c in copies:
    got[c["inner_hex"]][c["vni"]] += 1
problems = collections.Counter()
examples = {}
def bad(kind, h, detail):
    problems[kind] += 1
    examples.setdefault(kind, f"{vd.ip_tuple(bytes.fromhex(h))} {detail}")
classes = collections.Counter()
for h, per_vni in got.items():
    if h not in judged:
        bad("copy of a frame the VM never saw", h, dict(per_vni)); continue
    allowed = {v for v in judged[h] if v is not None}
    for v, n in per_vni.items():
        if v not in allowed:
            bad("copy with a VNI neither policy gives (mixed or wrong)", h, f"vni {v}, allowed {allowed}")
    if sum(per_vni.values()) > seen[h]:
        bad("mirrored more than once", h, f"{dict(per_vni)} for {seen[h]} seen")
for h, (va, vb) in judged.items():
    n = sum(got.get(h, {}).values())
    kind = "both" if va and vb else "A only" if va else "B only" if vb else "neither"
    classes[kind] += seen[h]
    if va and vb and n != seen[h]:
        bad("mirrored by both policies but missing", h, f"{n} copies for {seen[h]} seen")
by_vni = collections.Counter(c["vni"] for c in copies)
print(f"VM frames: {sum(seen.values())} ({dict(classes)}); copies: {len(copies)}, per VNI {dict(sorted(by_vni.items()))}")
for k, n in problems.items():
    print(f"FAIL {k}: {n}, e.g. {examples[k]}")
# Both policies were really in force under traffic, for every kind of frame.
for v in (100, 101, 200, 201):
    if by_vni[v] < 20:
        print(f"FAIL too few copies with vni {v}: {by_vni[v]}"); problems["coverage"] += 1
for k in ("both", "A only", "B only"):
    if classes[k] < 100:
        print(f"FAIL too few frames mirrored by {k}: {classes[k]}"); problems["coverage"] += 1
sys.exit(1 if problems else 0)
PY
# The agent is alive and still holds one filter per hook.
ctl status >/dev/null || fail "agent not answering after the swaps"
f_in=$(our_hooks tap-vm1 ingress)
f_eg=$(our_hooks tap-vm1 egress)
expect_eq "$f_in/$f_eg" "1/1" "filters after the swaps"
