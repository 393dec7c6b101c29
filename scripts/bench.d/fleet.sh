#!/usr/bin/env bash
# scripts/bench fleet (issue 18 item 9): the fleet on a real etcd cluster, release build.
#   scripts/bench.d/fleet.sh OUT.json     OUT gets {"fleet": {...}}
# A 3-member etcd cluster (Debian etcd-server) with client-certificate TLS, as the
# tests run it (scripts/lib/etcd-cluster.sh: its own network namespace, 198.18.X.0/24),
# started here and removed on exit. mirror-bench fleet (Sources/mirror-bench/
# FleetBenchmark.swift) then stores a region at the SPEC §9 quotas (20,000 sessions,
# 100,000 sources over 1,000 hosts), starts mirror-controller and BENCH_FLEET_AGENTS
# (50) `mirror-agent --datapath memory`, and measures the full render and the
# controller's peak RSS, BENCH_FLEET_CHANGES (100) one-session changes end to end, and
# one agent's resync after a compaction. BENCH_QUICK=1: a region a tenth of the
# quotas, 20 agents, 20 changes (a smoke run; not the goals' conditions).
# Needs MIRROR_BIN_DIR (release mirror-controller, mirror-agent, mirror-bench) and root.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: scripts/bench.d/fleet.sh OUT.json}
bin=${MIRROR_BIN_DIR:?MIRROR_BIN_DIR: the release binaries}
for b in mirror-controller mirror-agent mirror-bench; do
  [ -x "$bin/$b" ] || { echo "fleet: $bin/$b is missing (swift build -c release)" >&2; exit 1; }
done
command -v etcd >/dev/null || { echo "fleet: etcd not installed (scripts/setup installs etcd-server)" >&2; exit 1; }
# shellcheck source=../lib/etcd-cluster.sh
source scripts/lib/etcd-cluster.sh

dir=$(mktemp -d /tmp/mirror-fleetbench.XXXXXX)
cleanup() {
  local rc=$?
  # The driver stops its controller and agents; what is left (it was killed) goes here:
  # it writes each child's pid to run/pids.
  [ -n "${driver:-}" ] && kill "$driver" 2>/dev/null || true
  if [ -f "$dir/run/pids" ]; then
    while read -r p; do kill -CONT "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done <"$dir/run/pids"
  fi
  etcd_down "$dir" || true
  rm -rf "$dir"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
etcd_up "$dir" "fbench-$$" || { echo "fleet: the etcd cluster did not start" >&2; exit 1; }
# shellcheck disable=SC1091
source "$dir/env"
echo "etcd: 3 members (etcd $(etcd --version | sed -n 's/^etcd Version: //p')), TLS with client certificates, $ETCD_ENDPOINTS"

args=(--etcd "$ETCD_ENDPOINTS" --etcd-cacert "$ETCD_CACERT" --etcd-cert "$ETCD_CERT" --etcd-key "$ETCD_KEY"
  --bin-dir "$bin" --work "$dir/run" --output "$out")
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  args+=(--sessions 2000 --sources 10000 --hosts 100 --agents "${BENCH_FLEET_AGENTS:-20}" --changes "${BENCH_FLEET_CHANGES:-20}")
else
  args+=(--agents "${BENCH_FLEET_AGENTS:-50}" --changes "${BENCH_FLEET_CHANGES:-100}")
fi
mkdir -p "$dir/run"
# The driver in its own process: the agents and the controller are its children.
"$bin/mirror-bench" fleet "${args[@]}" &
driver=$!
wait "$driver"
