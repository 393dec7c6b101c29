#!/usr/bin/env bash
# The deployment files (issue 18, item 7), offline: the systemd units pass
# `systemd-analyze verify`, the Kubernetes manifests pass the Kubernetes schemas
# (kubernetes-validate, whose package ships the schemas: no network), a manifest with
# a misspelt field is refused (so the check can fail), and what the manifests must
# hold (probes, hostPath, propagation, flags the agent has) is checked by
# check_manifests.py. Ends with "deploy: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN_DIR=${MIRROR_BIN_DIR:-$(swift build --show-bin-path)}
passed=0; failed=0
result() { if [ "$1" -eq 0 ]; then passed=$((passed + 1)); echo "deploy: PASS $2"; else failed=$((failed + 1)); echo "deploy: FAIL $2"; fi; }
work=$(mktemp -d /tmp/mirror-deploy.XXXXXX)
trap 'rm -rf "$work"' EXIT

# systemd-analyze verify also checks that ExecStart's binary exists: the units name
# /usr/local/bin, so they are verified as installed from this build (the path is the
# only change). Until this tree has mirror-controller, its unit runs /bin/true.
if command -v systemd-analyze >/dev/null; then
  controller=$BIN_DIR/mirror-controller
  [ -x "$controller" ] || controller=/bin/true
  sed "s|/usr/local/bin/mirror-agent|$BIN_DIR/mirror-agent|" deploy/systemd/mirror-agent.service > "$work/mirror-agent.service"
  sed "s|/usr/local/bin/mirror-controller|$controller|" deploy/systemd/mirror-controller.service > "$work/mirror-controller.service"
  out=$(systemd-analyze verify "$work/mirror-agent.service" "$work/mirror-controller.service" 2>&1); rc=$?
  [ -z "$out" ] || { echo "$out"; rc=1; }
  result $rc "systemd-analyze verify deploy/systemd/*.service"
else
  echo "deploy: systemd-analyze not installed: units not verified"; failed=$((failed + 1))
fi

if command -v kubernetes-validate >/dev/null; then
  kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml; result $? "kubernetes-validate --strict deploy/kubernetes/*.yaml"
  sed 's/mountPropagation:/mountPropogation:/' deploy/kubernetes/mirror-agent-daemonset.yaml > "$work/bad.yaml"
  if kubernetes-validate --strict --quiet "$work/bad.yaml" >/dev/null 2>&1; then rc=1; else rc=0; fi
  result $rc "a misspelt field is refused by the schema check"
else
  echo "deploy: kubernetes-validate not installed (scripts/setup installs it)"; failed=$((failed + 1))
fi

"$BIN_DIR/mirror-agent" run --help > "$work/agent-help.txt" 2>&1
python3 Tests/deploy/check_manifests.py "$work/agent-help.txt"; result $? "manifests and units hold what issue 18 asks"
echo "deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
