#!/usr/bin/env bash
# The ribat demo (`make demo`): with no board attached, a virtual Pico is started, flashed,
# configured and watched, then power-cycled to show that firmware and configuration
# survive, then stopped. Every command is shown before it runs: type them yourself after.
set -euo pipefail

RIBAT=${RIBAT:-ribat}
NAME=${RIBAT_DEMO_NAME:-demo}
PORT="sim:$NAME"

bold=$(tput bold 2>/dev/null || true)
plain=$(tput sgr0 2>/dev/null || true)
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
run() { printf '$ ribat %s\n' "$*"; "$RIBAT" "$@"; }
trap '"$RIBAT" sim stop "$NAME" >/dev/null 2>&1 || true' EXIT

"$RIBAT" sim stop "$NAME" --erase >/dev/null 2>&1 || true  # a fresh board every time

step "1/7  Start a virtual Raspberry Pi Pico: real MicroPython, littlefs flash, 192 KB heap"
run sim start --board pico --name "$NAME"

step "2/7  Deploy the firmware: compiled to .mpy, written to a spare slot, switched atomically"
run flash --port "$PORT"

step "3/7  Configure the node: checked on the host and the node, saved atomically, read back"
run config set node.name rabat-1 node.partner MA telemetry.interval_ms 250 --port "$PORT"

step "4/7  Live telemetry for five seconds"
run telemetry watch --duration 5 --port "$PORT"

step "5/7  Power-cycle the board: the interpreter dies wherever it is and boots again"
run sim reset "$NAME"

step "6/7  Firmware and configuration survived"
run status --port "$PORT"
run config get node.name --port "$PORT"
run flash --port "$PORT"

step "7/7  Stop the board (its flash is kept: \`ribat sim start --name $NAME\` brings it back)"
run sim stop "$NAME"
trap - EXIT
