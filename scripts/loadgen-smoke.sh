#!/usr/bin/env bash
# End-to-end smoke of loadgen against our broker on port 0: small N, a few seconds per
# scenario. No timing assertions; fails if any delivery is lost/duplicated, a connection
# fails, presence does not converge, a push goes unanswered, or a scenario errors (loadgen
# exits non-zero then); if `loadgen compare` misses a regression injected into a real report;
# if a two-step `loadgen ceiling` search does not write its document, Markdown and step reports;
# or if anything takes longer than its time limit (every broker and loadgen process runs under
# `timeout`: a hang fails the smoke instead of hanging it).
#
#   scripts/loadgen-smoke.sh            # debug builds (fast to build)
#   PROFILE=release scripts/loadgen-smoke.sh
#   SMOKE_TIMEOUT=60 scripts/loadgen-smoke.sh   # seconds per loadgen run (default 180)
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${PROFILE:-debug}"
RUN_LIMIT="${SMOKE_TIMEOUT:-180}"
# the broker lives for the whole smoke: bounded by the sum of the runs' limits
BROKER_LIMIT=$((RUN_LIMIT * 10 + 60))
# SKIP_BUILD=1: use the binaries already in the target directory
if [[ -n "${SKIP_BUILD:-}" ]]; then
  :
elif [[ "$PROFILE" == release ]]; then
  cargo build --release -p broker && cargo build --release -p loadgen
else
  cargo build -p broker && cargo build -p loadgen
fi
BIN="${CARGO_TARGET_DIR:-target}/$PROFILE"
TMP="$(mktemp -d)"
TIMEOUT_PID=""
BROKER_PID=""
cleanup() {
  # `timeout` passes the TERM on to the broker
  if [[ -n "$TIMEOUT_PID" ]]; then kill "$TIMEOUT_PID" 2>/dev/null || true; wait "$TIMEOUT_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# a bounded wait for the positive signal ("listening on ADDR"), then the broker's own pid
# (the child of `timeout`) for --server-pid
start_broker() {
  timeout -k 10 "$BROKER_LIMIT" "$BIN/broker" --listen 127.0.0.1:0 >"$TMP/broker.out" 2>"$TMP/broker.err" &
  TIMEOUT_PID=$!
  for _ in $(seq 1 300); do
    if grep -q '^listening on ' "$TMP/broker.out" 2>/dev/null; then break; fi
    if ! kill -0 "$TIMEOUT_PID" 2>/dev/null; then echo "broker exited:"; cat "$TMP/broker.err"; exit 1; fi
    sleep 0.1
  done
  ADDR="$(head -1 "$TMP/broker.out" | sed -n 's/^listening on //p')"
  [[ -n "$ADDR" ]] || { echo "broker did not print 'listening on' within 30 s"; cat "$TMP/broker.err"; exit 1; }
  URL="ws://$ADDR/socket/websocket"
  BROKER_PID="$(cat "/proc/$TIMEOUT_PID/task/$TIMEOUT_PID/children" 2>/dev/null | awk '{print $1}')"
  [[ -n "$BROKER_PID" ]] || { echo "cannot find the broker's pid (child of $TIMEOUT_PID)"; exit 1; }
}

start_broker
LG=(timeout -k 10 "$RUN_LIMIT" "$BIN/loadgen")
COMMON=(--url "$URL" --server-pid "$BROKER_PID" --deadline "$RUN_LIMIT" --quiet)
fail=0
passed=0
check() { # name, then a command that must succeed
  local name="$1"; shift
  local rc=0
  "$@" || rc=$?
  if [[ $rc -eq 0 ]]; then
    passed=$((passed + 1))
  else
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then echo "FAILED: $name (timed out)"; else echo "FAILED: $name (exit $rc)"; fi
    fail=$((fail + 1))
  fi
}
run() {
  local name="$1"; shift
  echo "== smoke: $name"
  check "$name" "${LG[@]}" "$@" "${COMMON[@]}" --out "$TMP/$name.json"
}
run fanout   fanout -n 200 --topics 4 --publishers 2 --rate 100 --duration 3
run fanout2p fanout -n 200 --topics 2 --publishers 2 --rate 50 --duration 2 --procs 2
run chat     chat --rooms 20 -k 5 --post-interval-ms 500 --duration 3
run presence presence --rooms 2 -k 30 --observers 5 --churn-rate 10 --duration 3
run connect  connect -n 300 --joins-per-conn 2 --topics 10 --connect-rate 1000 --duration 1

# a two-step ceiling search (fanout, 200 subscribers, 20 then 40 broadcasts/s): it must write its
# document and Markdown, each step's report, and find a ceiling (exit 0)
ceiling_search() {
  "${LG[@]}" ceiling --scenario fanout --start 20 --max 40 --max-steps 2 --pause 0 --step-timeout "$RUN_LIMIT" \
    --out-dir "$TMP/ceiling" --label smoke -- -n 200 --duration 1 --drain 2 --url "$URL" --server-pid "$BROKER_PID" --quiet >/dev/null || return 1
  jq -e '.kind == "ceiling" and (.steps | length) == 2 and .ceiling.value >= 20 and (.statement | test("deliveries/s to 200 subscribers"))' \
    "$TMP/ceiling/smoke.json" >/dev/null || { jq . "$TMP/ceiling/smoke.json"; echo "bad ceiling document"; return 1; }
  [[ -f "$TMP/ceiling/smoke.md" && -f "$TMP/ceiling/smoke-step1.json" && -f "$TMP/ceiling/smoke-step2.json" ]] || { echo "missing ceiling files"; return 1; }
  # every report carries the loadgen's CPU in the measured phase
  jq -e '.metrics.loadgen_measure_cpu_s.value != null and (.per_process[0].measure_cpu_us | type) == "number"' "$TMP/ceiling/smoke-step1.json" >/dev/null \
    || { echo "no loadgen_measure_cpu_s"; return 1; }
}
echo "== smoke: ceiling"
check ceiling ceiling_search

# compare must flag a regression: the fanout report against a copy with a worse delivery p99
# and losses injected (exit 1), and not the other way round (exit 0)
compare_flags_regression() {
  local base="$TMP/fanout.json" worse="$TMP/fanout-worse.json"
  [[ -f "$base" ]] || { echo "no fanout report"; return 1; }
  jq '.metrics.delivery_p99_ms.value = (.metrics.delivery_p99_ms.value * 10 + 5) | .metrics.lost.value = 3' "$base" >"$worse"
  local out rc=0
  out="$("${LG[@]}" compare "$base" "$worse" --max-regression 10%)" || rc=$?
  [[ $rc -eq 1 ]] || { echo "$out"; echo "compare missed the injected regression (exit $rc)"; return 1; }
  grep -Eq '^delivery_p99_ms .*REGRESSION$' <<<"$out" && grep -Eq '^lost .*REGRESSION$' <<<"$out" \
    || { echo "$out"; echo "compare did not name the regressed metrics"; return 1; }
  "${LG[@]}" compare "$worse" "$base" --max-regression 10% >/dev/null || { echo "an improvement was flagged"; return 1; }
}
echo "== smoke: compare"
check compare compare_flags_regression

# every report (and the ceiling document) matches bench-results/schema.json (when python3 has jsonschema)
if python3 -c 'import jsonschema' 2>/dev/null; then
  echo "== smoke: schema"
  check schema timeout 60 python3 - "$TMP" <<'PY'
import glob, json, sys, jsonschema
schema = json.load(open("bench-results/schema.json"))
files = [f for f in sorted(glob.glob(sys.argv[1] + "/*.json")) if not f.endswith("-worse.json")]
assert len(files) == 5, files
for f in files:
    jsonschema.validate(json.load(open(f)), schema)
# the ceiling document and its steps' reports too
for f in sorted(glob.glob(sys.argv[1] + "/ceiling/*.json")):
    jsonschema.validate(json.load(open(f)), schema)
PY
fi

if [[ $fail -ne 0 ]]; then echo "loadgen smoke: $passed passed, $fail FAILED"; exit 1; fi
echo "loadgen smoke: $passed passed, 0 failed"
