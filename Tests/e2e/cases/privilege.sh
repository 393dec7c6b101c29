# The control socket is 0600 and root-owned; agentctl run
# as an unprivileged user gets a clear permission error (and changes nothing);
# mirror-agent refuses to start (and to clean up) without root or without its
# capabilities, with a message naming what is missing, and disturbs nothing of the
# running agent's.
source "$(dirname "$0")/../lib.sh"
topo_up
agent_start
ctl apply -f examples/demo.json >/dev/null
gen0=$(ctl status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')
expect_eq "$(stat -c '%a %U %G %F' "$AGENT_SOCK")" "600 root root socket" "control socket mode and owner"
# The run directory is 0700; open it up so that only the socket's own mode protects it.
chmod 755 "$TOPO_DIR"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
expect_eq "$(as_nobody id -u)" "$(id -u nobody)" "setpriv works"

# agentctl as nobody: a non-zero exit and one clear line naming the permission problem.
for args in "status" "apply -f examples/demo.json" "session disable audit" "get sessions"; do
  rc=0; out=$(as_nobody "$BIN_DIR/agentctl" --socket "$AGENT_SOCK" $args 2>&1) || rc=$?
  echo "agentctl $args as nobody: rc $rc: $out"
  [ "$rc" -ne 0 ] || fail "agentctl $args as nobody succeeded"
  echo "$out" | grep -qi "permission denied" || fail "agentctl $args as nobody: no permission error in: $out"
  echo "$out" | grep -q "$AGENT_SOCK" || fail "agentctl $args as nobody: the error does not name the socket: $out"
  ! echo "$out" | grep -qi "fatal error\|backtrace\|Stack dump" || fail "agentctl crashed: $out"
done
gen1=$(ctl status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')
expect_eq "$gen1" "$gen0" "generation after refused requests"
if ctl get sessions -o json | grep -q '"enabled" *: *false'; then fail "a refused request changed a session"; fi

# mirror-agent as nobody, as root without CAP_NET_ADMIN, and as root without CAP_BPF
# and CAP_SYS_ADMIN: each refuses at once, naming what is missing. Pointed at the
# running agent's socket, state and pins: nothing of it may be touched.
try_agent() {   # try_agent LABEL EXPECTED-REGEX PREFIX... -- ARGS...
  local label=$1 want=$2; shift 2
  local pre=() rc=0 out
  while [ "$1" != "--" ]; do pre+=("$1"); shift; done; shift
  out=$(timeout 20 nsenter --net="/run/netns/$NS_HOST" "${pre[@]}" "$BIN_DIR/mirror-agent" "$@" --socket "$AGENT_SOCK" \
          --state-dir "$AGENT_STATE" --bpffs "$TOPO_DIR/bpffs" --metrics-address 127.0.0.1:9470 2>&1) || rc=$?
  echo "mirror-agent $* $label: rc $rc: $out"
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "mirror-agent $* $label did not refuse (rc $rc)"
  echo "$out" | grep -Eq "$want" || fail "mirror-agent $* $label: expected /$want/ in: $out"
}
try_agent "as nobody" "not running as root.*CAP_NET_ADMIN.*CAP_BPF" setpriv --reuid=nobody --regid=nogroup --clear-groups --
try_agent "as nobody" "cannot clean up: not running as root" setpriv --reuid=nobody --regid=nogroup --clear-groups -- cleanup
try_agent "as root without CAP_NET_ADMIN" "missing CAP_NET_ADMIN" setpriv --inh-caps=-all --bounding-set=-net_admin --
try_agent "as root without CAP_BPF and CAP_SYS_ADMIN" "missing CAP_BPF and CAP_SYS_ADMIN" \
  setpriv --inh-caps=-all --bounding-set=-bpf,-sys_admin --
# The refusal names only what is missing.
rc=0; out=$(nsenter --net="/run/netns/$NS_HOST" setpriv --inh-caps=-all --bounding-set=-net_admin "$BIN_DIR/mirror-agent" \
  --socket "$AGENT_SOCK" --state-dir "$AGENT_STATE" --bpffs "$TOPO_DIR/bpffs" --metrics-address 127.0.0.1:9470 2>&1) || rc=$?
! echo "$out" | grep -q "not running as root\|CAP_BPF" || fail "root without CAP_NET_ADMIN: the message names more than is missing: $out"

# The running agent was not disturbed.
expect_eq "$(stat -c '%a %U' "$AGENT_SOCK")" "600 root" "socket after the refused starts"
ctl status >/dev/null || fail "the running agent stopped answering"
expect_eq "$(ctl status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')" "$gen0" "generation at the end"
f_in=$(our_hooks tap-vm1 ingress)
f_eg=$(our_hooks tap-vm1 egress)
expect_eq "$f_in/$f_eg" "1/1" "filters at the end"
chmod 700 "$TOPO_DIR"
echo "ok"
