# agentctl against a stopped agent, with a bad file, as a non-root user: one clear
# line and a non-zero exit each; a rejected apply changes nothing.
source "$(dirname "$0")/../lib.sh"
topo_up
out=$(ctl status 2>&1) && fail "status against no agent succeeded"
echo "$out"
[ "$(echo "$out" | wc -l)" -le 2 ] || fail "unreachable agent: expected one clear line, got: $out"
echo "$out" | grep -qi "agent" || fail "unreachable agent: message does not say so: $out"
agent_start
ctl apply -f examples/demo.json
printf '{"sessions": [{"id": "x", "priority": 0}]' > "$TOPO_DIR/bad.json"
out=$(ctl apply -f "$TOPO_DIR/bad.json" 2>&1) && fail "apply of truncated JSON succeeded"
echo "$out"
printf '{"sessions": [{"id": "x", "priority": 0, "filter": "nope", "sources": [], "target": "t"}]}' > "$TOPO_DIR/bad2.json"
out=$(ctl apply -f "$TOPO_DIR/bad2.json" 2>&1) && fail "apply of an invalid document succeeded"
echo "$out"
echo "$out" | grep -q "sessions\[0\].priority" || fail "invalid document: no path to the bad priority"
echo "$out" | grep -q "sessions\[0\].filter" || fail "invalid document: no path to the dangling filter"
ctl get sessions -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); ids=sorted(s["id"] for s in (d if isinstance(d,list) else d.get("sessions", d.get("items", [])))); assert ids==["audit","ids"], ids' \
  || fail "state changed after rejected applies"
# A non-root user is refused by the socket's permissions.
id nobody >/dev/null 2>&1 || fail "no 'nobody' user to test with"
out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$BIN_DIR/agentctl" --socket "$AGENT_SOCK" status 2>&1) \
  && fail "non-root agentctl status succeeded"
echo "$out"
echo "$out" | grep -qi "permission" || fail "non-root: message does not say permission: $out"
