#!/usr/bin/env bash
# A real 3-member etcd cluster (Debian etcd-server) for tests, with client-certificate
# TLS: the members listen on three addresses of a network namespace the test owns,
# reached from the caller's namespace over a veth. Certificates are made here with
# openssl. Sourced by the e2e cases, and run as a command by the Swift tests
# (MirrorTestSupport.EtcdCluster), so both use one cluster recipe:
#
#   scripts/lib/etcd-cluster.sh up DIR ID      start; writes DIR/env (below)
#   scripts/lib/etcd-cluster.sh down DIR       stop the members, remove the namespace
#   scripts/lib/etcd-cluster.sh stop DIR N     kill member N (1-3), SIGKILL
#   scripts/lib/etcd-cluster.sh start DIR N    start member N again (its data is kept)
#   scripts/lib/etcd-cluster.sh pause DIR N    SIGSTOP member N: its connections stay open, silent
#   scripts/lib/etcd-cluster.sh resume DIR N   SIGCONT member N
#   scripts/lib/etcd-cluster.sh leader DIR     print the number (1-3) of the leader
#
# DIR/env holds ETCD_ENDPOINTS (https://A1:2379,https://A2:2379,https://A3:2379),
# ETCD_CACERT, ETCD_CERT, ETCD_KEY (a client certificate the members accept),
# ETCD_NETNS and ETCD_SUBNET. Addresses: 198.18.X.1-3, the caller's side 198.18.X.254
# (RFC 2544 benchmarking range), X chosen free on this machine.

etcd_ns() { echo "metcd-$1"; }

etcd_certs() {
  local dir=$1 subnet=$2
  mkdir -p "$dir/pki"
  (
    cd "$dir/pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=mirror-test-etcd-ca" \
      -keyout ca-key.pem -out ca.pem 2>/dev/null
    printf 'subjectAltName=IP:%s.1,IP:%s.2,IP:%s.3,IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' \
      "$subnet" "$subnet" "$subnet" >server.ext
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=etcd-member" -keyout server-key.pem -out server.csr 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
      -extfile server.ext -out server.pem 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=mirror-fleet" -keyout client-key.pem -out client.csr 2>/dev/null
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
      -extfile client.ext -out client.pem 2>/dev/null
    # A certificate from another CA: a client holding it must be refused too.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=intruder" \
      -keyout intruder-key.pem -out intruder.pem 2>/dev/null
    chmod 600 ./*-key.pem
  )
}

# etcd_member_run DIR N STATE: starts member N in the namespace, in the background.
etcd_member_run() {
  local dir=$1 n=$2 state=$3
  # shellcheck disable=SC1091
  source "$dir/env"
  local a="$ETCD_SUBNET.$n" cluster="m1=http://$ETCD_SUBNET.1:2380,m2=http://$ETCD_SUBNET.2:2380,m3=http://$ETCD_SUBNET.3:2380"
  # Peer traffic stays inside the test's namespace (plain); clients need a certificate.
  # Short heartbeat/election so that a killed leader is replaced within about a second.
  # In a subshell that first closes every inherited descriptor above 2: a caller that
  # waits for its child's descriptors to close (Foundation's Process does) must not
  # wait for the members too.
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec ip netns exec "$ETCD_NETNS" etcd --name "m$n" --data-dir "$dir/m$n" \
    --listen-client-urls "https://$a:2379" --advertise-client-urls "https://$a:2379" \
    --listen-peer-urls "http://$a:2380" --initial-advertise-peer-urls "http://$a:2380" \
    --initial-cluster "$cluster" --initial-cluster-state "$state" --initial-cluster-token "mirror-$ETCD_NETNS" \
    --client-cert-auth --trusted-ca-file "$dir/pki/ca.pem" \
    --cert-file "$dir/pki/server.pem" --key-file "$dir/pki/server-key.pem" \
    --heartbeat-interval 50 --election-timeout 500 --logger zap --log-level error \
    >>"$dir/m$n.log" 2>&1 </dev/null
  ) &
  echo $! >"$dir/m$n.pid"
  disown $!  # no "Killed" job notice when a test kills it
}

etcd_ctl() {
  local dir=$1; shift
  # shellcheck disable=SC1091
  source "$dir/env"
  ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" --cacert "$ETCD_CACERT" --cert "$ETCD_CERT" \
    --key "$ETCD_KEY" --dial-timeout 2s --command-timeout 5s "$@"
}

etcd_up() {
  local dir=$1 id=$2 ns x subnet host_if
  command -v etcd >/dev/null || { echo "etcd-cluster: etcd not installed (scripts/setup installs etcd-server)" >&2; return 1; }
  mkdir -p "$dir"
  ns=$(etcd_ns "$id")
  # A /24 nobody on this machine uses yet (parallel runs each get their own).
  x=$(( $(cksum <<<"$id" | cut -d' ' -f1) % 250 + 1 ))
  for _ in $(seq 1 250); do
    ip -4 route show 2>/dev/null | grep -q "^198\.18\.$x\.0/24" || break
    x=$(( x % 250 + 1 ))
  done
  subnet=198.18.$x
  host_if="et$(printf '%s' "$id" | tail -c 8)"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "$host_if" type veth peer name eth0 netns "$ns"
  ip addr add "$subnet.254/24" dev "$host_if"
  ip link set "$host_if" up
  for n in 1 2 3; do ip -n "$ns" addr add "$subnet.$n/24" dev eth0; done
  ip -n "$ns" link set eth0 up
  etcd_certs "$dir" "$subnet"
  cat >"$dir/env" <<EOF
ETCD_ENDPOINTS=https://$subnet.1:2379,https://$subnet.2:2379,https://$subnet.3:2379
ETCD_CACERT=$dir/pki/ca.pem
ETCD_CERT=$dir/pki/client.pem
ETCD_KEY=$dir/pki/client-key.pem
ETCD_NETNS=$ns
ETCD_SUBNET=$subnet
ETCD_HOST_IF=$host_if
EOF
  for n in 1 2 3; do etcd_member_run "$dir" "$n" new; done
  for _ in $(seq 1 100); do
    if etcd_ctl "$dir" endpoint health >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "etcd-cluster: the cluster did not become healthy; member logs:" >&2
  tail -n 20 "$dir"/m*.log >&2
  return 1
}

etcd_stop_member() {
  local dir=$1 n=$2 pid
  pid=$(cat "$dir/m$n.pid" 2>/dev/null) || return 0
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  rm -f "$dir/m$n.pid"
}

etcd_start_member() { etcd_member_run "$1" "$2" existing; }

etcd_leader() {
  local dir=$1
  etcd_ctl "$dir" endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    s = e["Status"]
    if s["header"]["member_id"] == s["leader"]:
        print(e["Endpoint"].split(":")[1].split(".")[-1]); break'
}

etcd_down() {
  local dir=$1
  [ -f "$dir/env" ] || return 0
  # shellcheck disable=SC1091
  source "$dir/env"
  for n in 1 2 3; do
    kill -CONT "$(cat "$dir/m$n.pid" 2>/dev/null)" 2>/dev/null || true
    etcd_stop_member "$dir" "$n"
  done
  ip netns del "$ETCD_NETNS" 2>/dev/null || true
  ip link del "$ETCD_HOST_IF" 2>/dev/null || true
  rm -rf "$dir/m1" "$dir/m2" "$dir/m3"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    up) etcd_up "$2" "$3" ;;
    down) etcd_down "$2" ;;
    stop) etcd_stop_member "$2" "$3" ;;
    start) etcd_start_member "$2" "$3" ;;
    leader) etcd_leader "$2" ;;
    pause) kill -STOP "$(cat "$2/m$3.pid")" ;;
    resume) kill -CONT "$(cat "$2/m$3.pid")" ;;
    *) echo "usage: $0 up DIR ID | down DIR | stop|start|pause|resume DIR N | leader DIR" >&2; exit 2 ;;
  esac
fi
