# Shared by the cases: topology, agent helpers, assertions.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source scripts/lib/topology.sh
source scripts/lib/agent.sh
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_eq() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }
# Number of VXLAN copies with VNI $2 in capture $1.
copies_with_vni() { python3 Tests/e2e/vxlan_decode.py "$1" | python3 -c "import json,sys; print(sum(1 for l in sys.stdin if json.loads(l)['vni']==$2))"; }
# The programs on hook $2 (ingress|egress) of host device $1, tcx links and clsact
# filters alike: "tcx|clsact PROG_ID NAME" lines in run order (Tests/e2e/hooks.py).
hook_progs() { in_ns "$NS_HOST" python3 Tests/e2e/hooks.py "$1" "$2"; }
# How many of ours (mirror_tc*) are on hook $2 of host device $1, however attached.
our_hooks() { hook_progs "$1" "$2" | grep -c " mirror_tc" || true; }
