# Sourced by the fleet_* cases after lib.sh: a real 3-member etcd with client
# certificates (scripts/lib/etcd-cluster.sh), controllers and agents in fleet mode.
# Agents use --datapath memory unless a case gives its own flags: the fleet cases test
# what each host is told and applies; the datapath has its own cases.
source scripts/lib/etcd-cluster.sh
ETCD_DIR=$TOPO_DIR/etcd
FLEET_PORT_BASE=$(( 20000 + 10#${TOPO_ID: -4} % 4000 * 8 ))

fleet_down() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    for f in "$TOPO_DIR"/controller-*.log "$TOPO_DIR"/agent-*.log; do
      [ -f "$f" ] && { echo "== $(basename "$f") (last lines)"; tail -n 15 "$f"; }
    done
  fi
  for pid in $(cat "$TOPO_DIR"/*.pid 2>/dev/null); do kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in $(cat "$TOPO_DIR"/*.pid 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  etcd_down "$ETCD_DIR" || true
  if [ "${FLEET_TOPO:-0}" = 1 ]; then topo_down; fi
  rm -rf "$TOPO_DIR"
  return $rc
}

# fleet_up [--topo]: the etcd cluster (and the host topology with --topo).
fleet_up() {
  if [ "${1:-}" = --topo ]; then FLEET_TOPO=1; topo_up; fi
  trap fleet_down EXIT
  trap 'exit 130' INT TERM
  etcd_up "$ETCD_DIR" "$TOPO_ID"
  # shellcheck disable=SC1091
  source "$ETCD_DIR/env"
  ETCD_FLAGS=(--etcd "$ETCD_ENDPOINTS" --etcd-cacert "$ETCD_CACERT" --etcd-cert "$ETCD_CERT" --etcd-key "$ETCD_KEY")
}

fctl() { "$BIN_DIR/agentctl" "${ETCD_FLAGS[@]}" "$@"; }
ectl() { etcd_ctl "$ETCD_DIR" "$@"; }

# controller_start NAME [flags]: a mirror-controller with id NAME.
controller_start() {
  local name=$1; shift
  "$BIN_DIR/mirror-controller" "${ETCD_FLAGS[@]}" --id "$name" "$@" >>"$TOPO_DIR/controller-$name.log" 2>&1 &
  echo $! >"$TOPO_DIR/controller-$name.pid"
  disown $!
}
controller_kill() { kill -9 "$(cat "$TOPO_DIR/controller-$1.pid")" 2>/dev/null || true; rm -f "$TOPO_DIR/controller-$1.pid"; }

# fleet_agent_start HOST N [flags]: agent number N (its metrics port and socket) for
# host HOST, in the current namespace, with its own state directory.
fleet_agent_start() {
  local host=$1 n=$2; shift 2
  mkdir -p "$TOPO_DIR/agent-$host"
  "$BIN_DIR/mirror-agent" --socket "$TOPO_DIR/agent-$host/sock" --state-dir "$TOPO_DIR/agent-$host/state" \
    --bpffs "$TOPO_DIR/agent-$host/bpffs" --metrics-address "127.0.0.1:$((FLEET_PORT_BASE + n))" --datapath memory \
    "${ETCD_FLAGS[@]}" --host "$host" "$@" >>"$TOPO_DIR/agent-$host.log" 2>&1 &
  echo $! >"$TOPO_DIR/agent-$host.pid"
  disown $!
  for _ in $(seq 1 100); do
    if hctl "$host" status >/dev/null 2>&1; then return 0; fi
    kill -0 "$(cat "$TOPO_DIR/agent-$host.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "agent $host did not come up; its log:" >&2
  cat "$TOPO_DIR/agent-$host.log" >&2
  return 1
}
fleet_agent_kill() { kill -9 "$(cat "$TOPO_DIR/agent-$1.pid")" 2>/dev/null || true; rm -f "$TOPO_DIR/agent-$1.pid"; }

# hctl HOST ARGS: agentctl against host HOST's local agent.
hctl() { local host=$1; shift; "$BIN_DIR/agentctl" --socket "$TOPO_DIR/agent-$host/sock" "$@"; }

# fleet_host_json HOST: host HOST's applied document as the agent serves it (one
# line of canonical JSON: sessions, sources, filters, targets sorted by id).
fleet_host_json() {
  local host=$1
  for k in sessions sources filters targets; do
    hctl "$host" get "$k" -o json | python3 -c 'import json,sys; print(json.dumps(sorted([o["id"] for o in json.load(sys.stdin)])))'
  done | tr '\n' ' '
}

# wait_until SECONDS COMMAND...: polls COMMAND every 0.1 s; fails after SECONDS.
wait_until() {
  local limit=$1; shift
  local end=$(( $(date +%s%N) + limit * 1000000000 ))
  while [ "$(date +%s%N)" -lt "$end" ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}

# fleet_status_field HOST FIELD: one field of HOST's row of `fleet status -o json`.
fleet_status_field() {
  fctl fleet status -o json | python3 -c '
import json, sys
rows = [r for r in json.load(sys.stdin)["hosts"] if r["host"] == sys.argv[1]]
v = rows[0][sys.argv[2]] if rows else "absent"
print(json.dumps(v) if not isinstance(v, str) else v)' "$1" "$2"
}
