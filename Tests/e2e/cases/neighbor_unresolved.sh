# SPEC §11: every copy is on the wire or counted under a drop reason. Two nic
# targets on on-link addresses of the underlay where no host answers ARP (IPv4) or
# ND (IPv6): stage 2 counts no copy as sent and every copy as dropped
# (neighbor_unresolved), and nothing but ARP/ND goes toward them. The agent holds a
# managed neighbour entry of its own (proto 236) for each next hop, so the kernel
# re-probes it by itself: once the addresses come up on the collector (after the
# entries have FAILED), copies arrive and are counted as sent within 10 s (the
# kernel re-probes a managed entry every 5 s, then answers take 1 retransmit at
# most, and the agent looks again every 100 ms). Removing the targets removes the
# agent's entries and leaves the topology's static one alone.
source "$(dirname "$0")/../lib.sh"
topo_up
in_ns "$NS_HOST" ip -6 addr add 2001:db8:2::1/64 dev underlay0 nodad
# The kernel's own neighbour solicitations (a managed entry's, with no packet
# waiting) come from a link-local address: without one it sends none. The
# topology has none (addr_gen_mode=1); every real IPv6 interface has one.
in_ns "$NS_HOST" ip -6 addr add fe80::1/64 dev underlay0 nodad
agent_start
host_tap=$(mac_of "$NS_HOST" tap-vm1)
V4=198.51.100.77 V6=2001:db8:2::77

python3 - "$TOPO_DIR/silent.json" "$V4" "$V6" <<'PY'
import json, sys
path, v4, v6 = sys.argv[1:]
rule = lambda port: [{"priority": 1, "action": "accept", "ethertype": "ipv4", "protocol": "udp", "destinationPorts": str(port)}]
d = {
    "filters": [{"id": f"to{p}", "inbound": rule(p), "outbound": rule(p)} for p in (5001, 5002)],
    "targets": [{"id": "v4", "type": "nic", "address": v4}, {"id": "v6", "type": "nic", "address": v6}],
    "sources": [{"id": "vm1", "interface": "tap-vm1", "addresses": ["192.0.2.10"]}],
    "sessions": [{"id": "s4", "priority": 1, "filter": "to5001", "sources": ["vm1"], "target": "v4", "vni": 41},
                 {"id": "s6", "priority": 2, "filter": "to5002", "sources": ["vm1"], "target": "v6", "vni": 61}],
}
json.dump(d, open(path, "w"))
PY
send() {  # send N: N UDP frames from the VM to each port
  python3 -c "
import json
for port in (5001, 5002):
    print(json.dumps({'family':4,'proto':'udp','src':'192.0.2.10','dst':'203.0.113.10','sport':33000,'dport':port,'payload':40,'count':$1}))
" | send_frames "$NS_VM" eth0 "$host_tap"
}
# sent, neighbor_unresolved, packets of session $1 in stats file $2
counts() {
  python3 -c "
import json, sys
s = next(x for x in json.load(open('$2'))['sessions'] if x['session'] == '$1')
print(s['copiesSent'], s['dropped'].get('neighbor_unresolved', 0), s['packets'], s['copiesSentDevice'])"
}

ctl apply -f "$TOPO_DIR/silent.json" >/dev/null
neigh=$(in_ns "$NS_HOST" ip neigh show dev underlay0)
echo "$neigh"
for a in $V4 $V6; do
  echo "$neigh" | grep -E "^$a .*managed.*proto 236" >/dev/null || fail "no managed entry of the agent's for $a"
done
ctl stats -o json > "$TOPO_DIR/before.json"
capture "$NS_COL" eth0 silent
send 5
capture_stop silent
ctl stats -o json > "$TOPO_DIR/after.json"
for s in s4 s6; do
  read -r sent0 unres0 pk0 dev0 <<<"$(counts $s "$TOPO_DIR/before.json")"
  read -r sent1 unres1 pk1 dev1 <<<"$(counts $s "$TOPO_DIR/after.json")"
  echo "$s silent: $((pk1 - pk0)) accepted, $((sent1 - sent0)) sent, $((unres1 - unres0)) neighbor_unresolved, $((dev1 - dev0)) to the device"
  [ $((pk1 - pk0)) -ge 5 ] || fail "$s: the session accepted $((pk1 - pk0)) packets, want 5"
  expect_eq "$((sent1 - sent0))" 0 "$s: copies counted as sent toward a silent next hop"
  expect_eq "$((dev1 - dev0))" 0 "$s: copies handed to the VXLAN device"
  expect_eq "$((unres1 - unres0))" "$((pk1 - pk0))" "$s: every copy counted as neighbor_unresolved"
done
# Toward the silent addresses only ARP and neighbour solicitations.
other=$(tshark -r "$TOPO_DIR/silent.pcap" -Y 'not arp and not icmpv6.type == 135' -T fields -e frame.protocols | sort | uniq -c)
wire=$(tshark -r "$TOPO_DIR/silent.pcap" -T fields -e frame.protocols | sort | uniq -c)
echo "on the wire while silent: $wire"
[ -z "$other" ] || fail "frames other than ARP/ND toward the silent collectors: $other"

# The kernel gives up (FAILED); the agent's entries stay and are re-probed.
for _ in $(seq 1 100); do
  n=$(in_ns "$NS_HOST" ip neigh show dev underlay0 | grep -E "^($V4|$V6) .*FAILED" | wc -l)
  [ "$n" = 2 ] && break
  sleep 0.1
done
in_ns "$NS_HOST" ip neigh show dev underlay0
[ "$n" = 2 ] || fail "the next hops did not reach FAILED"
ctl stats -o json > "$TOPO_DIR/before-up.json"
in_ns "$NS_COL" ip addr add $V4/24 dev eth0
in_ns "$NS_COL" ip -6 addr add $V6/64 dev eth0 nodad
start=$(date +%s.%N)
ok=""
for _ in $(seq 1 50); do
  send 1
  ctl stats -o json > "$TOPO_DIR/up.json"
  read -r a4 _ _ _ <<<"$(counts s4 "$TOPO_DIR/up.json")"
  read -r a6 _ _ _ <<<"$(counts s6 "$TOPO_DIR/up.json")"
  read -r b4 _ _ _ <<<"$(counts s4 "$TOPO_DIR/before-up.json")"
  read -r b6 _ _ _ <<<"$(counts s6 "$TOPO_DIR/before-up.json")"
  if [ "$a4" -gt "$b4" ] && [ "$a6" -gt "$b6" ]; then ok=1; break; fi
  sleep 0.2
done
elapsed=$(python3 -c "import time; print(round(time.time() - $start, 2))")
in_ns "$NS_HOST" ip neigh show dev underlay0
[ -n "$ok" ] || fail "no copy counted as sent within ${elapsed}s of the collectors coming up"
echo "copies sent again ${elapsed}s after the collectors came up (bound 10 s)"
python3 -c "import sys; sys.exit(0 if $elapsed <= 10 else 1)" || fail "copies took ${elapsed}s to flow again, bound 10 s"

# Resolved: what is counted as sent is what arrives, and nothing is dropped.
ctl stats -o json > "$TOPO_DIR/before-flow.json"
capture "$NS_COL" eth0 flow udp port 4789
send 5
capture_stop flow
ctl stats -o json > "$TOPO_DIR/after-flow.json"
# The outer destination (the first IP header) and the VNI of each copy.
vnis=$(tshark -r "$TOPO_DIR/flow.pcap" -Y vxlan -T fields -E occurrence=f -e vxlan.vni -e ip.dst -e ipv6.dst)
arrived4=$(echo "$vnis" | grep -cP "^41\t$V4\t\$" || true)
arrived6=$(echo "$vnis" | grep -cP "^61\t[^\t]*\t$V6\$" || true)
for s in s4:$arrived4 s6:$arrived6; do
  read -r sent0 unres0 pk0 _ <<<"$(counts ${s%%:*} "$TOPO_DIR/before-flow.json")"
  read -r sent1 unres1 pk1 _ <<<"$(counts ${s%%:*} "$TOPO_DIR/after-flow.json")"
  echo "${s%%:*} resolved: $((pk1 - pk0)) accepted, $((sent1 - sent0)) sent, ${s##*:} arrived, $((unres1 - unres0)) neighbor_unresolved"
  expect_eq "$((sent1 - sent0))" "${s##*:}" "${s%%:*}: copies counted as sent vs arrived"
  expect_eq "$((sent1 - sent0))" "$((pk1 - pk0))" "${s%%:*}: every accepted packet sent"
  expect_eq "$((unres1 - unres0))" 0 "${s%%:*}: dropped as unresolved once resolved"
done

# Targets gone: the agent's entries go, the topology's static entry stays.
python3 - "$TOPO_DIR/silent.json" "$TOPO_DIR/none.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["targets"] = [{"id": "v4", "type": "nic", "address": "198.51.100.2"}, {"id": "v6", "type": "nic", "address": "198.51.100.2"}]
json.dump(d, open(sys.argv[2], "w"))
PY
ctl apply -f "$TOPO_DIR/none.json" >/dev/null
neigh=$(in_ns "$NS_HOST" ip neigh show dev underlay0)
echo "$neigh"
if echo "$neigh" | grep -q "proto 236"; then fail "the agent's neighbour entries outlived their collectors"; fi
echo "$neigh" | grep -E "^$COL_IP .*PERMANENT" >/dev/null || fail "the static entry of $COL_IP was touched"
