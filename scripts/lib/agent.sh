# Sourced after topology.sh: run mirror-agent in the host namespace of the topology,
# with its socket, state and pins under the run's own directory.
BIN_DIR=${MIRROR_BIN_DIR:-$(swift build --show-bin-path 2>/dev/null)}
AGENT_SOCK=$TOPO_DIR/agent.sock
AGENT_STATE=$TOPO_DIR/state
AGENT_LOG=$TOPO_DIR/agent.log

ctl() { "$BIN_DIR/agentctl" --socket "$AGENT_SOCK" "$@"; }

# nsenter joins only the network namespace (ip netns exec would also remount /sys
# in a private mount namespace); the bpffs the topology mounted stays visible.
agent_start() {
  nsenter --net="/run/netns/$NS_HOST" "$BIN_DIR/mirror-agent" --socket "$AGENT_SOCK" \
    --state-dir "$AGENT_STATE" --bpffs "$TOPO_DIR/bpffs" --metrics-address 127.0.0.1:9469 \
    "$@" >>"$AGENT_LOG" 2>&1 &
  echo $! > "$TOPO_DIR/agent.pid"
  for _ in $(seq 1 100); do
    if ctl status >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$(cat "$TOPO_DIR/agent.pid")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "agent did not come up; its log:" >&2
  cat "$AGENT_LOG" >&2
  return 1
}

agent_stop() {
  local pid
  pid=$(cat "$TOPO_DIR/agent.pid" 2>/dev/null) || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$TOPO_DIR/agent.pid"
}

agent_cleanup() {
  nsenter --net="/run/netns/$NS_HOST" "$BIN_DIR/mirror-agent" cleanup --socket "$AGENT_SOCK" \
    --state-dir "$AGENT_STATE" --bpffs "$TOPO_DIR/bpffs" >>"$AGENT_LOG" 2>&1
}

# capture NS IFACE NAME [FILTER...]: tcpdump into $TOPO_DIR/NAME.pcap until capture_stop.
capture() {
  local ns=$1 ifc=$2 name=$3; shift 3
  # `ip netns exec` execs tcpdump in place, so $! is tcpdump itself (a shell
  # function run with & would leave tcpdump orphaned when its pid is killed).
  # --immediate-mode: without it libpcap hands packets over a ring block at a time,
  # and those still in the ring when tcpdump is stopped are never written. In that
  # mode every ring slot is snaplen bytes, so snaplen is bounded (largest frame
  # here: a 9216-byte packetLength copy plus headers) and the buffer is large.
  ip netns exec "$ns" tcpdump --immediate-mode -B 65536 -i "$ifc" -U -n -s 9400 -w "$TOPO_DIR/$name.pcap" "$@" 2>"$TOPO_DIR/$name.tcpdump.log" &
  echo $! > "$TOPO_DIR/capture-$name.pid"
  for _ in $(seq 1 50); do grep -q "listening on" "$TOPO_DIR/$name.tcpdump.log" 2>/dev/null && return 0; sleep 0.1; done
}
capture_stop() {
  local name=$1 pid size last=-1
  # tcpdump may still be writing a burst out of its ring: wait until the file has
  # stopped growing for 0.5 s (at most 20 s), then stop it.
  for _ in $(seq 1 40); do
    sleep 0.5
    size=$(stat -c %s "$TOPO_DIR/$name.pcap" 2>/dev/null || echo 0)
    [ "$size" = "$last" ] && break
    last=$size
  done
  pid=$(cat "$TOPO_DIR/capture-$name.pid")
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$TOPO_DIR/capture-$name.pid"
}

mac_of() { in_ns "$1" cat "/sys/class/net/$2/address"; }

# send NS IFACE GW_MAC < spec-lines: frames out of IFACE (see Tests/e2e/send.py).
send_frames() { in_ns "$1" python3 Tests/e2e/send.py --iface "$2" --dst-mac "$3" - >/dev/null; }
