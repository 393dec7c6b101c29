# Every README command block fenced as ```sh runnable runs as written, in order,
# from the repository root (Tests/docs/readme_blocks.py extracts them). They run
# in the host namespace of the topology, against an agent of this run (its own
# bpffs, state directory and socket, found through MIRROR_AGENT_SOCKET as a user's
# agentctl would), with the built programs first on PATH and `swift run NAME`
# running the built NAME (building is not what the examples show). A block fails
# on its first failing command.
source "$(dirname "$0")/../lib.sh"
topo_up
agent_start
blocks=$(python3 Tests/docs/readme_blocks.py README.md "$TOPO_DIR/readme-blocks")
[ "$(echo "$blocks" | grep -c .)" -ge 2 ] || fail "fewer than 2 runnable blocks in README.md: $blocks"
prelude='swift() { if [ "${1:-}" = run ]; then shift; local p=$1; shift; "$MIRROR_BIN_DIR/$p" "$@"; else command swift "$@"; fi; }'
for b in $blocks; do
  line=${b##*-line}; line=${line%.sh}
  echo "== README.md line $line"
  sed 's/^/   | /' "$b"
  nsenter --net="/run/netns/$NS_HOST" env PATH="$BIN_DIR:$PATH" MIRROR_BIN_DIR="$BIN_DIR" MIRROR_AGENT_SOCKET="$AGENT_SOCK" \
    bash -euo pipefail -c "$prelude"$'\n'"source '$b'" || fail "the README block at line $line failed (its output is above)"
done
# The blocks left the agent working, and nothing of theirs outlives the run.
ctl status >/dev/null || fail "the agent stopped answering after the README blocks"
agent_stop
agent_cleanup || fail "cleanup failed: $(tail -3 "$AGENT_LOG")"
