#!/usr/bin/env bash
# Where the bytes of an idle joined connection go: the broker built with `--features dhat-heap`
# (dhat's allocator instead of mimalloc; built in $CARGO_TARGET_DIR/dhat-heap), N connections
# that each join one channel and heartbeat, held idle like scripts/memory.sh; then SIGUSR1 makes
# the broker write dhat-heap.json with what is live at that moment per call stack, and
# scripts/memory-breakdown.py sums it per component (bytes and blocks per connection).
#
#   scripts/memory-profile.sh                  # N=5000, presence off
#   PRESENCE=1 scripts/memory-profile.sh       # room:mem* topics (presence tracked)
#
# Output: $OUT/dhat-heap.json (large; not committed) and the table on stdout.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
N="${N:-5000}"
PRESENCE="${PRESENCE:-0}"
HOLD="${HOLD:-12}"
OUT="${OUT:-/tmp/broker-dhat}"
if [[ "$PRESENCE" == 1 ]]; then PREFIX="room:mem"; TOPICS="${TOPICS:-1000}"; else PREFIX="mem:"; TOPICS="${TOPICS:-100}"; fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PROFILE_TARGET="${PROFILE_TARGET_DIR:-$TARGET/dhat-heap}"
if [[ -z "${SKIP_BUILD:-}" ]]; then
  CARGO_TARGET_DIR="$PROFILE_TARGET" cargo build --release -p broker --features dhat-heap || exit 2
  CARGO_TARGET_DIR="$TARGET" cargo build --release -p loadgen || exit 2
fi
BROKER="${BROKER_BIN:-$PROFILE_TARGET/release/broker}"
LG="${LOADGEN_BIN:-$TARGET/release/loadgen}"

rm -f "$OUT/dhat-heap.json"
(cd "$OUT" && exec timeout 900 "$BROKER" --listen 127.0.0.1:0 --no-longpoll >"$OUT/broker.out" 2>"$OUT/broker.err") &
TIMEOUT_PID=$!
sleep 0.3
BROKER_PID="$(pgrep -P "$TIMEOUT_PID")"
LG_PID=""
trap '[[ -n "$LG_PID" ]] && kill "$LG_PID" 2>/dev/null; kill "$BROKER_PID" 2>/dev/null; wait' EXIT
for _ in $(seq 1 300); do grep -q '^listening on ' "$OUT/broker.out" 2>/dev/null && break; sleep 0.1; done
ADDR="$(head -1 "$OUT/broker.out" | sed -n 's/^listening on //p')"
[[ -n "$ADDR" ]] || { echo "broker did not start"; cat "$OUT/broker.err"; exit 1; }
metric() { curl -s --max-time 5 "http://$ADDR/metrics" | awk -v k="phx_broker_$1" '$1 == k { print $2 }'; }

# dhat records a call stack per allocation: a slower ramp.
timeout 600 "$LG" connect -n "$N" --joins-per-conn 1 --topics "$TOPICS" --topic-prefix "$PREFIX" \
  --procs 1 --connect-rate "${CONNECT_RATE:-1000}" --heartbeat 5 --duration 300 --ramp-timeout 300 --drain 1 \
  --url "ws://$ADDR/socket/websocket" --quiet >"$OUT/loadgen.out" 2>&1 &
LG_PID=$!
for _ in $(seq 1 3000); do
  j="$(metric channels)"; [[ "${j:-0}" -ge "$N" ]] && break
  kill -0 "$LG_PID" 2>/dev/null || break
  sleep 0.2
done
sleep "$HOLD"
conns="$(metric connections)"
echo "$conns connections, $(metric channels) channels joined; broker VmRSS $(awk '/^VmRSS:/ {print $2}' /proc/$BROKER_PID/status) KiB (dhat allocator)"
kill -USR1 "$BROKER_PID"
for _ in $(seq 1 600); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.5; done
kill "$LG_PID" 2>/dev/null; wait "$LG_PID" 2>/dev/null; LG_PID=""
[[ -s "$OUT/dhat-heap.json" ]] || { echo "no dhat-heap.json"; tail -5 "$OUT/broker.err"; exit 1; }
python3 scripts/memory-breakdown.py "$OUT/dhat-heap.json" "$conns"
