#!/usr/bin/env bash
# The ribat demo (`make demo`): with no board attached, a virtual Pico is started, flashed,
# configured, given its keys and its cell, unlocked and watched, then power-cycled to show
# that firmware, configuration, keys and audit chain survive; a second partner's node
# joins the cell, and bulletins move between the two under need-to-know. Every command is
# shown before it runs: type them yourself after.
set -euo pipefail

RIBAT=${RIBAT:-ribat}
NAME=${RIBAT_DEMO_NAME:-demo}
PORT="sim:$NAME"
PEER="$NAME-fr"
PEER_PORT="sim:$PEER"

bold=$(tput bold 2>/dev/null || true)
plain=$(tput sgr0 2>/dev/null || true)
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
# A command as it can be copied: words with spaces or quotes in single quotes.
shown() {
  local out="" a q="'"
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then out+=" $a"; else out+=" '${a//$q/$q\\$q$q}'"; fi
  done
  printf '$ ribat%s\n' "$out"
}
run() { shown "$@"; "$RIBAT" "$@"; }
run_quiet() { shown "$@" >&2; "$RIBAT" "$@"; }  # its output: for the script
CELL=$(mktemp -d)
trap '"$RIBAT" sim stop "$NAME" >/dev/null 2>&1 || true; "$RIBAT" sim stop "$PEER" --erase >/dev/null 2>&1 || true; rm -rf "$CELL"' EXIT

"$RIBAT" sim stop "$NAME" --erase >/dev/null 2>&1 || true  # a fresh board every time
"$RIBAT" sim stop "$PEER" --erase >/dev/null 2>&1 || true

step "1/12  Start a virtual Raspberry Pi Pico: real MicroPython, littlefs flash, 192 KB heap"
run sim start --board pico --name "$NAME"

step "2/12  Deploy the firmware: compiled to .mpy, written to a spare slot, switched atomically"
run flash --port "$PORT"

step "3/12  Configure the node: checked on the host and the node, saved atomically, read back"
run config set node.name rabat-1 node.partner MA telemetry.interval_ms 250 --port "$PORT"

step "4/12  A cell authority, the node's own keys under a PIN, a signed roster"
run cell init "$CELL/cell"
run provision --cell "$CELL/cell" --partner MA --name rabat-1 --pin rabat-493817 --port "$PORT"
run identity export --out "$CELL/rabat-1.json" --port "$PORT"
run cell roster add --cell "$CELL/cell" "$CELL/rabat-1.json"
run cell load --cell "$CELL/cell" --port "$PORT"

step "5/12  An operator session: unlocked by the PIN, commands typed in it, then locked"
printf 'cell pairs\naudit show\nlock\n' | run unlock --pin rabat-493817 --port "$PORT"

step "6/12  Live telemetry for five seconds"
run telemetry watch --duration 5 --port "$PORT"

step "7/12  Power-cycle the board: the interpreter dies wherever it is and boots again"
run sim reset "$NAME"

step "8/12  Firmware, configuration, keys and audit chain survived"
run status --port "$PORT"
run config get node.name --port "$PORT"
run audit verify --port "$PORT"
run flash --port "$PORT"

step "9/12  A second partner: a French node joins the cell (a new roster, loaded on both)"
run sim start --board pico --name "$PEER"
run flash --port "$PEER_PORT"
run provision --cell "$CELL/cell" --partner FR --name paris-1 --pin paris-271828 --port "$PEER_PORT"
run identity export --out "$CELL/paris-1.json" --port "$PEER_PORT"
run cell roster add --cell "$CELL/cell" "$CELL/paris-1.json"
run cell load --cell "$CELL/cell" --port "$PORT"
run cell load --cell "$CELL/cell" --port "$PEER_PORT"

step "10/12  Rabat posts one bulletin for Morocco only, one for Morocco and France"
MA_ONLY=$(run_quiet post --kind alert --severity flash --to MA --title "Source report" \
  --body "Only Moroccan eyes" --pin rabat-493817 --port "$PORT")
BOTH=$(run_quiet post --kind notice --to FR --title "Joint watch list, 31 Dec" \
  --body "Shared with the French service" --pin rabat-493817 --port "$PORT")

step "11/12  Sealed entries move through the host, which sees only ciphertext"
run journal export "$CELL/rabat.rbj" --port "$PORT"
run journal import "$CELL/rabat.rbj" --port "$PEER_PORT"
run list --pin paris-271828 --port "$PEER_PORT"

step "12/12  Paris reads what is released to France; the rest stays sealed to it"
run show "$BOTH" --pin paris-271828 --port "$PEER_PORT"
printf '$ ribat show %s --pin ... --port %s\n' "$MA_ONLY" "$PEER_PORT"
if "$RIBAT" show "$MA_ONLY" --pin paris-271828 --port "$PEER_PORT"; then
  echo "error: Paris read a bulletin not released to France" >&2
  exit 1
fi
run sim stop "$PEER" --erase
run sim stop "$NAME"
echo "(rabat's flash is kept: \`ribat sim start --name $NAME\` brings it back)"
trap - EXIT
rm -rf "$CELL"  # the demo cell's authority: its private key does not outlive the demo
echo "(the demo's cell authority, its private key among it, was in $CELL and is deleted:"
echo " a real cell's is made by \`ribat cell init\` and kept offline)"
