#!/usr/bin/env bash
# The ribat demo (`make demo`): with no board attached, a virtual Pico is started, flashed,
# configured, given its keys and its cell, unlocked and watched, then power-cycled to show
# that firmware, configuration, keys and audit chain survive, then stopped. Every command is shown before it runs: type them yourself after.
set -euo pipefail

RIBAT=${RIBAT:-ribat}
NAME=${RIBAT_DEMO_NAME:-demo}
PORT="sim:$NAME"

bold=$(tput bold 2>/dev/null || true)
plain=$(tput sgr0 2>/dev/null || true)
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
run() { printf '$ ribat %s\n' "$*"; "$RIBAT" "$@"; }
CELL=$(mktemp -d)
trap '"$RIBAT" sim stop "$NAME" >/dev/null 2>&1 || true; rm -rf "$CELL"' EXIT

"$RIBAT" sim stop "$NAME" --erase >/dev/null 2>&1 || true  # a fresh board every time

step "1/9  Start a virtual Raspberry Pi Pico: real MicroPython, littlefs flash, 192 KB heap"
run sim start --board pico --name "$NAME"

step "2/9  Deploy the firmware: compiled to .mpy, written to a spare slot, switched atomically"
run flash --port "$PORT"

step "3/9  Configure the node: checked on the host and the node, saved atomically, read back"
run config set node.name rabat-1 node.partner MA telemetry.interval_ms 250 --port "$PORT"

step "4/9  A cell authority, the node's own keys under a PIN, a signed roster"
run cell init "$CELL/cell"
run provision --cell "$CELL/cell" --partner MA --name rabat-1 --pin 493817 --port "$PORT"
run identity export --out "$CELL/rabat-1.json" --port "$PORT"
run cell roster add --cell "$CELL/cell" "$CELL/rabat-1.json"
run cell load --cell "$CELL/cell" --port "$PORT"

step "5/9  An operator session: unlocked by the PIN, commands typed in it, then locked"
printf 'cell pairs\naudit show\nlock\n' | run unlock --pin 493817 --port "$PORT"

step "6/9  Live telemetry for five seconds"
run telemetry watch --duration 5 --port "$PORT"

step "7/9  Power-cycle the board: the interpreter dies wherever it is and boots again"
run sim reset "$NAME"

step "8/9  Firmware, configuration, keys and audit chain survived"
run status --port "$PORT"
run config get node.name --port "$PORT"
run audit verify --port "$PORT"
run flash --port "$PORT"

step "9/9  Stop the board (its flash is kept: \`ribat sim start --name $NAME\` brings it back)"
run sim stop "$NAME"
trap - EXIT
