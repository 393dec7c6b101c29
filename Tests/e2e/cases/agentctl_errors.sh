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
# A filter still in use: the refusal names the session that uses it, by id.
out=$(ctl delete filters seed-rules 2>&1) && fail "delete of a filter in use succeeded"
echo "$out"
echo "$out" | grep -q "filter seed-rules is used by session ids; delete or change it first" || fail "delete in use: users not named: $out"
echo "$out" | grep -q "sessions\[id=ids\].filter" || fail "delete in use: no path naming the session: $out"
# A dry run lists what would go and changes nothing; an invalid one is refused as apply refuses it.
python3 -c 'import json,sys; d=json.load(open("examples/demo.json")); d["sessions"]=[s for s in d["sessions"] if s["id"]!="audit"]; json.dump(d,open(sys.argv[1],"w"))' "$TOPO_DIR/less.json"
out=$(ctl apply --dry-run -f "$TOPO_DIR/less.json") || fail "dry run failed"
echo "$out"
echo "$out" | grep -q "^  remove  session audit$" || fail "dry run: the removed session is not listed: $out"
out=$(ctl apply --dry-run -f "$TOPO_DIR/bad2.json" 2>&1) && fail "dry run of an invalid document succeeded"
echo "$out" | grep -q "sessions\[0\].priority" || fail "invalid dry run: no path to the bad priority: $out"
out=$(ctl apply -o json -f "$TOPO_DIR/bad2.json") && fail "apply -o json of an invalid document succeeded"
echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["status"]==422 and "sessions[0].priority" in [e["path"] for e in d["errors"]], d' \
  || fail "apply -o json: no JSON refusal with paths: $out"
ctl get sessions -o json | python3 -c 'import json,sys; ids=sorted(s["id"] for s in json.load(sys.stdin)); assert ids==["audit","ids"], ids' \
  || fail "state changed after a dry run or a refused change"
# A non-root user is refused by the socket's permissions.
id nobody >/dev/null 2>&1 || fail "no 'nobody' user to test with"
out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$BIN_DIR/agentctl" --socket "$AGENT_SOCK" status 2>&1) \
  && fail "non-root agentctl status succeeded"
echo "$out"
echo "$out" | grep -qi "permission" || fail "non-root: message does not say permission: $out"
