# A loadBalancer target whose backends mix IPv4 and IPv6 (SPEC §11): every copy
# reaches the backend its flow hashes to, over the outer family of that backend
# (IPv6 backends get IPv6-outer VXLAN with the session's VNI), every flow at one
# backend, and what stage 2 counts as sent is what arrived.
source "$(dirname "$0")/../lib.sh"
topo_up
# The underlay carries both families: two IPv4 and two IPv6 backends on the collector.
in_ns "$NS_HOST" ip -6 addr add 2001:db8:2::1/64 dev underlay0 nodad
in_ns "$NS_COL" ip addr add 198.51.100.3/24 dev eth0
in_ns "$NS_COL" ip -6 addr add 2001:db8:2::2/64 dev eth0 nodad
in_ns "$NS_COL" ip -6 addr add 2001:db8:2::3/64 dev eth0 nodad
col_mac=$(mac_of "$NS_COL" eth0)
# Known neighbours, as in load_balancer: nothing queued behind resolution.
for a in 198.51.100.3 2001:db8:2::2 2001:db8:2::3; do
  in_ns "$NS_HOST" ip neigh replace "$a" lladdr "$col_mac" dev underlay0 nud permanent
done
in_ns "$NS_COL" ip neigh replace 2001:db8:2::1 lladdr "$(mac_of "$NS_HOST" underlay0)" dev eth0 nud permanent
agent_start
# Families alternate, so a backend's family is its own (its bit of the mask), not
# the target's or its neighbour's.
BACKENDS='["198.51.100.2", "2001:db8:2::2", "198.51.100.3", "2001:db8:2::3"]'
python3 - "$TOPO_DIR/doc.json" "$BACKENDS" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
d["targets"] = [{"id": "collector", "type": "loadBalancer", "backends": json.loads(sys.argv[2])}]
json.dump(d, open(sys.argv[1], "w"))
PY
ctl apply -f "$TOPO_DIR/doc.json"
host_tap=$(mac_of "$NS_HOST" tap-vm1); host_peer=$(mac_of "$NS_HOST" peer0)
capture "$NS_COL" eth0 col udp port 4789
# 40 IPv4 and 20 IPv6 UDP flows, 3 packets each way: all accepted by session
# `audit` (VNI 200) of examples/demo.json.
python3 -c '
import json
for p in range(20000, 20040):
    print(json.dumps({"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":p,"dport":5001,"payload":20,"count":3}))
for p in range(21000, 21020):
    print(json.dumps({"family":6,"proto":"udp","src":"2001:db8:1::10","dst":"2001:db8:3::10","sport":p,"dport":5001,"payload":20,"count":3}))
' | send_frames "$NS_VM" eth0 "$host_tap"
python3 -c '
import json
for p in range(20000, 20040):
    print(json.dumps({"family":4,"proto":"udp","src":"203.0.113.10","dst":"192.0.2.10","sport":5001,"dport":p,"payload":20,"count":3}))
for p in range(21000, 21020):
    print(json.dumps({"family":6,"proto":"udp","src":"2001:db8:3::10","dst":"2001:db8:1::10","sport":5001,"dport":p,"payload":20,"count":3}))
' | send_frames "$NS_PEER" eth0 "$host_peer"
capture_stop col
ctl stats -o json > "$TOPO_DIR/stats.json"
in_ns "$NS_HOST" ip -s -j link show mirror0 > "$TOPO_DIR/mirror0.json"
python3 - "$TOPO_DIR/col.pcap" "$BACKENDS" "$TOPO_DIR/stats.json" "$TOPO_DIR/mirror0.json" <<'PY'
import collections, ipaddress, json, struct, subprocess, sys
sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
pcap, backends = sys.argv[1], json.loads(sys.argv[2])

def flow_hash(src, dst, sport, dport, proto):
    """bpf/classify.bpf.c symmetric_flow_hash: the address words as the program
    loads them (network-order bytes read little endian), IPv4 in word 0."""
    words = lambda a: struct.unpack("<4I", ipaddress.ip_address(a).packed.ljust(16, b"\0"))
    h = 0
    for w in words(src) + words(dst):
        h ^= w
    h ^= ((sport ^ dport) * 0x9E3779B1) & 0xFFFFFFFF
    h ^= proto << 24
    h ^= h >> 16; h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13; h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h

def mix32(h):
    h ^= h >> 16; h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13; h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)

def backend_of(h):
    """bpf/mirror_backend.h mirror_pick_backend (all healthy), written again here:
    rendezvous hashing, each backend scored from the flow hash and its address
    words (as stage 2 loads them), the highest (score << 8 | index + 1) wins."""
    if len(backends) == 1:
        return backends[0]
    def key(i, b):
        w = struct.unpack("<4I", ipaddress.ip_address(b).packed.ljust(16, b"\0"))
        seed = mix32(w[0] ^ 0x9E3779B9)
        for x in w[1:]:
            seed = mix32(seed ^ x)
        return (mix32(h ^ seed) << 8) | (i + 1)
    return max((key(i, b), b) for i, b in enumerate(backends))[1]

# Every copy (the peers' ICMP errors about the closed UDP ports are mirrored too)
# goes to the backend its flow hashes to; ICMP has no ports, its hash none.
all_copies = list(vd.copies(pcap))
copies = [x for x in all_copies if x["inner_proto"] == 17]
flows, wrong = collections.defaultdict(set), []
for x in all_copies:
    if x["inner_proto"] == 17:
        key = tuple(sorted([(x["inner_src"], x["inner_sport"]), (x["inner_dst"], x["inner_dport"])]))
        flows[key].add(x["outer_dst"])
    h = flow_hash(x["inner_src"], x["inner_dst"], x["inner_sport"] or 0, x["inner_dport"] or 0, x["inner_proto"])
    want = backend_of(h)
    family = ipaddress.ip_address(want).version
    if x["outer_dst"] != want or x["outer_family"] != family or x["vni"] != 200 or not x["i_flag"]:
        wrong.append((x["inner_src"], x["inner_dst"], x["inner_proto"], x["outer_family"], x["outer_dst"], x["vni"], "want", want))
per_backend = collections.Counter(next(iter(b)) for b in flows.values() if len(b) == 1)
split = [k for k, b in flows.items() if len(b) > 1]
by_family = collections.Counter(x["outer_family"] for x in all_copies)
print(f"{len(all_copies)} copies, {len(copies)} of UDP (outer IPv4 {by_family[4]}, IPv6 {by_family[6]}), {len(flows)} flows, "
      f"flows per backend {dict(per_backend)}, split flows {len(split)}, misdirected {len(wrong)}")
expected = {}
for p in range(20000, 20040): expected[p] = ("192.0.2.10", "203.0.113.10")
for p in range(21000, 21020): expected[p] = ("2001:db8:1::10", "2001:db8:3::10")
missing = collections.Counter()
for p, (a, b) in expected.items():
    want = backend_of(flow_hash(a, b, p, 5001, 17))
    key = tuple(sorted([(a, p), (b, 5001)]))
    if key not in flows: missing[want] += 1
if missing: print(f"flows without any copy, by the backend they hash to: {dict(missing)}")
# Counted as sent = arrived; the mirror device dropped nothing.
stats = json.load(open(sys.argv[3]))
sent = sum(s["copiesSent"] for s in stats["sessions"])
dropped = {k: v for s in stats["sessions"] for k, v in s["dropped"].items() if v}
dev = json.load(open(sys.argv[4]))[0]["stats64"]["tx"]
print(f"stage 2 sent {sent}, dropped {dropped}; mirror0 tx errors {dev['errors']} dropped {dev['dropped']}")
assert not wrong, f"copies at the wrong backend or family: {wrong[:3]}"
assert all(x["outer_ip_csum_ok"] for x in all_copies if x["outer_family"] == 4), "bad outer IPv4 checksums"
# RFC 6935: receivers drop IPv6 UDP with a zero checksum unless told otherwise.
assert all(x["udp_csum"] for x in all_copies if x["outer_family"] == 6), "IPv6 copies without a UDP checksum"
assert len(copies) == 360, f"expected 360 copies (60 flows x 3 x 2 directions), got {len(copies)}"
assert len(flows) == 60 and not split, f"flows split across backends: {split[:3]}"
assert set(per_backend) == set(backends), f"every backend must get flows: {dict(per_backend)}"

# tshark, independently: IPv6-outer VXLAN to each IPv6 backend with VNI 200.
# The first occurrence of each field is the outer header's; frame.protocols says
# which family the outer header is (inner IPv6 frames also carry ipv6 fields).
out = subprocess.run(["tshark", "-r", pcap, "-d", "udp.port==4789,vxlan", "-Y", "vxlan", "-T", "fields",
                      "-E", "occurrence=f", "-e", "frame.protocols", "-e", "ipv6.dst", "-e", "vxlan.vni"],
                     capture_output=True, text=True, check=True).stdout.split("\n")
theirs = collections.Counter(tuple(l.split("\t")[1:]) for l in out
                             if l.startswith("eth:ethertype:ipv6:udp:vxlan:eth:ethertype:ip"))
ours = collections.Counter((x["outer_dst"], "200") for x in all_copies if x["outer_family"] == 6)
print(f"tshark: IPv6-outer VXLAN {dict(theirs)}")
assert theirs == ours and ours, f"tshark reads {dict(theirs)}, our decoder {dict(ours)}"

assert sent == len(all_copies), f"stage 2 counted {sent} copies sent, the collector got {len(all_copies)}"
assert not dropped and dev["errors"] == 0 and dev["dropped"] == 0
PY

# The agent keeps IPv6 off on its mirror device; IPv6 copies leave all the same,
# from the device's own IPv6 socket through the underlay.
expect_eq "$(in_ns "$NS_HOST" sysctl -n net.ipv6.conf.mirror0.disable_ipv6)" 1 "IPv6 on mirror0"

# A nic target with one IPv6 address (the target's family 6, no mask): its
# copies reach exactly that address.
python3 - "$TOPO_DIR/doc6.json" <<'PY'
import json, sys
d = json.load(open("examples/demo.json"))
d["targets"] = [{"id": "collector", "type": "nic", "address": "2001:db8:2::3"}]
json.dump(d, open(sys.argv[1], "w"))
PY
ctl apply -f "$TOPO_DIR/doc6.json"
capture "$NS_COL" eth0 col6 udp port 4789
python3 -c '
import json
for p in range(22000, 22010):
    print(json.dumps({"family":4,"proto":"udp","src":"192.0.2.10","dst":"203.0.113.10","sport":p,"dport":5001,"payload":20,"count":2}))
    print(json.dumps({"family":6,"proto":"udp","src":"2001:db8:1::10","dst":"2001:db8:3::10","sport":p,"dport":5001,"payload":20,"count":2}))
' | send_frames "$NS_VM" eth0 "$host_tap"
capture_stop col6
python3 - "$TOPO_DIR/col6.pcap" <<'PY'
import collections, sys; sys.path.insert(0, "Tests/e2e"); import vxlan_decode as vd
c = [x for x in vd.copies(sys.argv[1]) if x["inner_proto"] == 17]
at = collections.Counter((x["outer_family"], x["outer_dst"], x["vni"]) for x in c)
print(f"nic target 2001:db8:2::3: {len(c)} UDP copies, by (outer family, address, VNI) {dict(at)}")
assert len(c) == 40 and set(at) == {(6, "2001:db8:2::3", 200)}, "every copy to the IPv6 nic target, over IPv6"
PY
