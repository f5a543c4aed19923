#!/usr/bin/env bash
# End-to-end smoke of loadgen against our broker on port 0: small N, a few seconds per
# scenario. No timing assertions; fails if any delivery is lost/duplicated, a connection
# fails, presence does not converge, or a scenario errors (loadgen exits non-zero then).
#
#   scripts/loadgen-smoke.sh            # debug builds (fast to build)
#   PROFILE=release scripts/loadgen-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${PROFILE:-debug}"
if [[ "$PROFILE" == release ]]; then
  cargo build --release -p broker && cargo build --release -p loadgen
else
  cargo build -p broker && cargo build -p loadgen
fi
BIN="${CARGO_TARGET_DIR:-target}/$PROFILE"
TMP="$(mktemp -d)"
BROKER_PID=""
cleanup() {
  if [[ -n "$BROKER_PID" ]]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

start_broker() {
  "$BIN/broker" --listen 127.0.0.1:0 >"$TMP/broker.out" 2>"$TMP/broker.err" &
  BROKER_PID=$!
  for _ in $(seq 1 100); do
    if grep -q '^listening on ' "$TMP/broker.out" 2>/dev/null; then break; fi
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then echo "broker exited:"; cat "$TMP/broker.err"; exit 1; fi
    sleep 0.1
  done
  ADDR="$(head -1 "$TMP/broker.out" | sed -n 's/^listening on //p')"
  [[ -n "$ADDR" ]] || { echo "broker did not print 'listening on'"; cat "$TMP/broker.err"; exit 1; }
  URL="ws://$ADDR/socket/websocket"
}

start_broker
LG=("$BIN/loadgen")
COMMON=(--url "$URL" --server-pid "$BROKER_PID" --deadline 120 --quiet)
fail=0
run() {
  local name="$1"; shift
  echo "== smoke: $name"
  if ! "${LG[@]}" "$@" "${COMMON[@]}" --out "$TMP/$name.json"; then
    echo "FAILED: $name"; fail=1
  fi
}
run fanout   fanout -n 200 --topics 4 --publishers 2 --rate 100 --duration 3
run fanout2p fanout -n 200 --topics 2 --publishers 2 --rate 50 --duration 2 --procs 2
run chat     chat --rooms 20 -k 5 --post-interval-ms 500 --duration 3
run presence presence --rooms 2 -k 30 --observers 5 --churn-rate 10 --duration 3
run connect  connect -n 300 --joins-per-conn 2 --topics 10 --connect-rate 1000 --duration 1
"${LG[@]}" compare "$TMP/fanout.json" "$TMP/fanout.json" --max-regression 10% >/dev/null || { echo "FAILED: compare"; fail=1; }

if [[ $fail -ne 0 ]]; then echo "loadgen smoke: FAILED"; exit 1; fi
echo "loadgen smoke: 6 passed, 0 failed"
