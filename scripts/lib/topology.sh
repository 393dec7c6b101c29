# Sourced by demo, end-to-end tests and benchmarks: a small cloud host in network
# namespaces. Every name carries a per-run suffix so parallel runs never collide, and
# `topo_down` (installed as an EXIT trap by `topo_up`) removes everything.
#
#   vm ──veth── host ──veth── peer          (the VM's traffic, routed by the host)
#   (eth0)   (tap) │  (pr)    (eth0)
#                  └─veth── collector       (the underlay toward the mirror target)
#                    (ul)     (eth0)
#
# Addresses (documentation ranges only):
#   vm        192.0.2.10/24     gw 192.0.2.1 (host)
#   peer      203.0.113.10/24 and 203.0.113.200/24, gw 203.0.113.1 (host)
#   collector 198.51.100.2/24   host side 198.51.100.1
#   IPv6:     2001:db8:1::10 (vm), 2001:db8:3::10 (peer), host ::1 on each
TOPO_ID=${TOPO_ID:-$$$RANDOM}
TOPO_ID=${TOPO_ID: -8}
NS_VM=mvm-$TOPO_ID
NS_HOST=mhost-$TOPO_ID
NS_PEER=mpeer-$TOPO_ID
NS_COL=mcol-$TOPO_ID
# Device names live inside the per-run namespaces, so fixed names never collide
# and documents can name the source interface as it is: tap-vm1.
TAP=tap-vm1              # the source ENI as the host sees it
UL=underlay0             # host side of the underlay toward the collector
PR=peer0                 # host side toward the peer
VM_IP=192.0.2.10
PEER_IP=203.0.113.10
PEER_IP2=203.0.113.200
COL_IP=198.51.100.2
HOST_UL_IP=198.51.100.1
VM_IP6=2001:db8:1::10
PEER_IP6=2001:db8:3::10
TOPO_DIR=$(mktemp -d /tmp/mirror-topo.XXXXXX)

topo_down() {
  local rc=$?
  for pid in $(cat "$TOPO_DIR"/*.pid 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  sleep 0.2
  for pid in $(cat "$TOPO_DIR"/*.pid 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  for ns in "$NS_VM" "$NS_HOST" "$NS_PEER" "$NS_COL"; do ip netns del "$ns" 2>/dev/null || true; done
  if mountpoint -q "$TOPO_DIR/bpffs" 2>/dev/null; then umount "$TOPO_DIR/bpffs" || true; fi
  rm -rf "$TOPO_DIR"
  return $rc
}

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

topo_up() {
  trap topo_down EXIT
  trap 'exit 130' INT TERM
  for ns in "$NS_VM" "$NS_HOST" "$NS_PEER" "$NS_COL"; do
    ip netns add "$ns"
    in_ns "$ns" ip link set lo up
    # No link-local addresses: no MLD reports or router solicitations, so every
    # packet a test counts is one it sent.
    in_ns "$ns" sysctl -qw net.ipv6.conf.default.addr_gen_mode=1 net.ipv6.conf.default.accept_ra=0
  done
  ip link add eth0 netns "$NS_VM" type veth peer name "$TAP" netns "$NS_HOST"
  ip link add eth0 netns "$NS_PEER" type veth peer name "$PR" netns "$NS_HOST"
  ip link add eth0 netns "$NS_COL" type veth peer name "$UL" netns "$NS_HOST"

  in_ns "$NS_VM" ip addr add $VM_IP/24 dev eth0
  in_ns "$NS_VM" ip -6 addr add $VM_IP6/64 dev eth0 nodad
  in_ns "$NS_VM" ip link set eth0 up
  in_ns "$NS_VM" ip route add default via 192.0.2.1
  in_ns "$NS_VM" ip -6 route add default via 2001:db8:1::1

  in_ns "$NS_PEER" ip addr add $PEER_IP/24 dev eth0
  in_ns "$NS_PEER" ip addr add $PEER_IP2/24 dev eth0
  in_ns "$NS_PEER" ip -6 addr add $PEER_IP6/64 dev eth0 nodad
  in_ns "$NS_PEER" ip link set eth0 up
  in_ns "$NS_PEER" ip route add default via 203.0.113.1
  in_ns "$NS_PEER" ip -6 route add default via 2001:db8:3::1

  in_ns "$NS_COL" ip addr add $COL_IP/24 dev eth0
  in_ns "$NS_COL" ip link set eth0 up
  # A collector consumes VXLAN; without a listener the kernel would answer every
  # copy with ICMP port unreachable (captures still see the copies: tcpdump taps
  # before the input hook).
  in_ns "$NS_COL" nft -f - <<'NFT'
table inet collector {
  chain input {
    type filter hook input priority 0;
    udp dport 4789 drop
  }
}
NFT

  in_ns "$NS_HOST" ip addr add 192.0.2.1/24 dev "$TAP"
  in_ns "$NS_HOST" ip -6 addr add 2001:db8:1::1/64 dev "$TAP" nodad
  in_ns "$NS_HOST" ip addr add 203.0.113.1/24 dev "$PR"
  in_ns "$NS_HOST" ip -6 addr add 2001:db8:3::1/64 dev "$PR" nodad
  in_ns "$NS_HOST" ip addr add $HOST_UL_IP/24 dev "$UL"
  for d in "$TAP" "$PR" "$UL"; do in_ns "$NS_HOST" ip link set "$d" up; done
  in_ns "$NS_HOST" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  # Neighbours are static so no ARP/ND shows up among the copies a test counts.
  local vm_mac pr_mac col_mac
  vm_mac=$(in_ns "$NS_VM" cat /sys/class/net/eth0/address)
  pr_mac=$(in_ns "$NS_PEER" cat /sys/class/net/eth0/address)
  col_mac=$(in_ns "$NS_COL" cat /sys/class/net/eth0/address)
  in_ns "$NS_HOST" ip neigh replace $VM_IP lladdr "$vm_mac" dev "$TAP" nud permanent
  in_ns "$NS_HOST" ip neigh replace $VM_IP6 lladdr "$vm_mac" dev "$TAP" nud permanent
  in_ns "$NS_HOST" ip neigh replace $PEER_IP lladdr "$pr_mac" dev "$PR" nud permanent
  in_ns "$NS_HOST" ip neigh replace $PEER_IP2 lladdr "$pr_mac" dev "$PR" nud permanent
  in_ns "$NS_HOST" ip neigh replace $PEER_IP6 lladdr "$pr_mac" dev "$PR" nud permanent
  in_ns "$NS_HOST" ip neigh replace $COL_IP lladdr "$col_mac" dev "$UL" nud permanent
  in_ns "$NS_VM" ip neigh replace 192.0.2.1 lladdr "$(in_ns "$NS_HOST" cat /sys/class/net/$TAP/address)" dev eth0 nud permanent
  in_ns "$NS_VM" ip neigh replace 2001:db8:1::1 lladdr "$(in_ns "$NS_HOST" cat /sys/class/net/$TAP/address)" dev eth0 nud permanent
  in_ns "$NS_PEER" ip neigh replace 203.0.113.1 lladdr "$(in_ns "$NS_HOST" cat /sys/class/net/$PR/address)" dev eth0 nud permanent
  in_ns "$NS_PEER" ip neigh replace 2001:db8:3::1 lladdr "$(in_ns "$NS_HOST" cat /sys/class/net/$PR/address)" dev eth0 nud permanent
  in_ns "$NS_COL" ip neigh replace $HOST_UL_IP lladdr "$(in_ns "$NS_HOST" cat /sys/class/net/$UL/address)" dev eth0 nud permanent
  # The agent's pins live on a bpffs this run mounts (never the host's /sys/fs/bpf).
  mkdir -p "$TOPO_DIR/bpffs"
  mount -t bpf bpf "$TOPO_DIR/bpffs"
}
