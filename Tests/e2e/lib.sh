# Shared by the cases: topology, agent helpers, assertions.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source scripts/lib/topology.sh
source scripts/lib/agent.sh
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_eq() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }
# Number of VXLAN copies with VNI $2 in capture $1.
copies_with_vni() { python3 Tests/e2e/vxlan_decode.py "$1" | python3 -c "import json,sys; print(sum(1 for l in sys.stdin if json.loads(l)['vni']==$2))"; }
