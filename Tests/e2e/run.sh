#!/usr/bin/env bash
# End-to-end tests: the real agent, real BPF, real traffic in network namespaces,
# copies read at the collector by two decoders. One case per file in cases/, each
# in its own topology; run one with `Tests/e2e/run.sh NAME...`.
# Ends with the line "e2e: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" -ne 0 ]; then
  echo "e2e: skipped: needs root (network namespaces, BPF, tc)"
  echo "e2e: 0 passed, 0 failed"
  exit 0
fi
export MIRROR_BIN_DIR=${MIRROR_BIN_DIR:-$(swift build --show-bin-path)}
for b in mirror-agent agentctl mirror-controller; do
  [ -x "$MIRROR_BIN_DIR/$b" ] || { echo "e2e: $MIRROR_BIN_DIR/$b missing: run swift build first" >&2; exit 1; }
done
cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
  for f in Tests/e2e/cases/*.sh; do cases+=("$(basename "$f" .sh)"); done
fi
passed=0; failed=0; failures=()
logdir=$(mktemp -d /tmp/mirror-e2e.XXXXXX)
for c in "${cases[@]}"; do
  start=$(date +%s)
  # The case's namespaces carry this id (scripts/lib/topology.sh), so the leak
  # check below never touches another run's.
  export TOPO_ID=$(printf '%08d' $(( (RANDOM << 15 | RANDOM) % 100000000 )))
  if timeout 300 bash "Tests/e2e/cases/$c.sh" >"$logdir/$c.log" 2>&1; then
    passed=$((passed + 1)); echo "e2e: PASS $c ($(( $(date +%s) - start ))s)"
  else
    failed=$((failed + 1)); failures+=("$c"); echo "e2e: FAIL $c ($(( $(date +%s) - start ))s), its output:"
    sed 's/^/    /' "$logdir/$c.log" | tail -80
  fi
  left=$(ip netns list | awk '{print $1}' | grep -E "^m(vm|host|peer|col|etcd|hv[0-9]+)-$TOPO_ID\$" || true)
  if [ -n "$left" ]; then
    echo "e2e: FAIL $c left namespaces behind: $left"; failed=$((failed + 1))
    for ns in $left; do ip netns del "$ns" 2>/dev/null || true; done
  fi
done
rm -rf "$logdir"
echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
