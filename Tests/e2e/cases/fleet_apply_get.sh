# Fleet mode, the region document (SPEC §9): agentctl --etcd apply validates the whole
# region document (every error with its path, nothing stored), stores it atomically and
# get reads it back (table and -o json); a client without a valid certificate gets
# nothing; commands that act on one agent refuse --etcd.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../fleet.sh"
fleet_up
R=$TOPO_DIR/region.json
python3 Tests/e2e/fleet_region.py gen --hosts 3 --sources 30 --sessions 10 >"$R"

# Nothing stored yet.
expect_eq "$(fctl get sessions)" "no sessions" "get before any apply"
fctl apply -f "$R" | tee "$TOPO_DIR/apply.out"
grep -q "stored .* revision [0-9]*, 3 hosts" "$TOPO_DIR/apply.out" || fail "apply output: $(cat "$TOPO_DIR/apply.out")"
want=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["sessions"]))' "$R")
expect_eq "$(fctl get sessions -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" "$want" "sessions read back"
fctl get sources | grep -q "s0007" || fail "get sources (table) lacks s0007"
expect_eq "$(fctl get sources s0004 -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["host"])')" "hv2" "a source's host read back"
before=$(ectl get /mirror/v1/region -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kvs"][0]["mod_revision"])')

# Bad documents: every error with its JSON path, and nothing changes.
python3 - "$R" >"$TOPO_DIR/bad.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
del r["sources"][3]["host"]                 # no host
r["sources"][5]["host"] = "hv 9/x"          # not a host name
r["sessions"][2]["priority"] = 0            # out of range
r["sessions"][4]["filter"] = "nope"         # dangling reference
print(json.dumps(r))
PY
if fctl apply -f "$TOPO_DIR/bad.json" 2>"$TOPO_DIR/bad.err"; then fail "a bad region document was accepted"; fi
cat "$TOPO_DIR/bad.err"
for path in "sources\[3\].host" "sources\[5\].host" "sessions\[2\].priority" "sessions\[4\].filter"; do
  grep -q "$path" "$TOPO_DIR/bad.err" || fail "the refusal does not name $path"
done
fctl apply -f "$TOPO_DIR/bad.json" -o json >"$TOPO_DIR/bad.json.out" && fail "a bad region document was accepted (-o json)"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["errors"]) >= 4, d' "$TOPO_DIR/bad.json.out"
after=$(ectl get /mirror/v1/region -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kvs"][0]["mod_revision"])')
expect_eq "$after" "$before" "the region's revision after refused applies"

# A client without a certificate, or with one of another CA, gets nothing.
if "$BIN_DIR/agentctl" --etcd "$ETCD_ENDPOINTS" --etcd-cacert "$ETCD_CACERT" get sessions >"$TOPO_DIR/anon.out" 2>&1; then
  fail "a client without a certificate read the region: $(cat "$TOPO_DIR/anon.out")"
fi
grep -q "unavailable" "$TOPO_DIR/anon.out" || fail "anonymous client: $(cat "$TOPO_DIR/anon.out")"
if "$BIN_DIR/agentctl" --etcd "$ETCD_ENDPOINTS" --etcd-cacert "$ETCD_CACERT" --etcd-cert "$ETCD_DIR/pki/intruder.pem" \
  --etcd-key "$ETCD_DIR/pki/intruder-key.pem" apply -f "$R" >/dev/null 2>&1; then
  fail "a client with a foreign certificate stored a region"
fi
expect_eq "$(ectl get /mirror/v1/region -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kvs"][0]["mod_revision"])')" \
  "$before" "the region's revision after the foreign client"

# Commands for one agent refuse --etcd rather than seem to change the fleet.
if fctl create sessions x --priority 1 2>"$TOPO_DIR/create.err"; then fail "create with --etcd was accepted"; fi
grep -q "only apply -f, get and fleet status" "$TOPO_DIR/create.err" || fail "create --etcd: $(cat "$TOPO_DIR/create.err")"
echo "fleet_apply_get: ok"
