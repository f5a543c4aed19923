#!/usr/bin/env bash
# Ceilings at an SLO (#18 point 1): `loadgen ceiling` against a release broker on this machine.
#   1. fan-out: 19,000 subscribers on one topic, one publisher; the publish rate is searched
#      (deliveries/s to 19,000 subscribers while delivery p99 < SLO_P99_MS, 0 lost);
#   2. connect storm: 19,000 connections joining one of 100 topics; the connect rate is searched
#      (connections/s while connect+join p99 < SLO_P99_MS, 0 failed);
#   3. connection count at half that rate (up to the broker's descriptor limit).
# Each step's report is kept in bench-results/ceiling/ (<label>-stepK.json); each search
# writes <label>.json (kind "ceiling", bench-results/schema.json) and <label>.md; summary.md
# lists the three statements. One broker serves every step of a search (a fresh one per
# search). About 12-15 minutes.
#
#   scripts/ceiling.sh
#   ONLY=fanout scripts/ceiling.sh            # fanout | connect-rate | connections
#   SLO_P99_MS=250 scripts/ceiling.sh
#   RERENDER=1 SKIP_BUILD=1 scripts/ceiling.sh  # rebuild the documents from the kept step reports
#   SKIP_BUILD=1 BROKER_BIN=/path/to/broker BUILD_NOTE="broker from commit X" scripts/ceiling.sh
# (not BROKER_*: the broker reads every BROKER_* variable as configuration)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

OUT="${OUT:-bench-results/ceiling}"
ONLY="${ONLY:-}"
SLO_P99_MS="${SLO_P99_MS:-500}"
N="${N:-19000}"
SOURCE_IPS="${SOURCE_IPS:-127.0.0.2+4}"
PROCS="${PROCS:-2}"

# SKIP_BUILD=1 uses the binaries as they are, BROKER_BIN / LOADGEN_BIN other builds
. scripts/release-bins.sh
release_bins || exit 2
BUILD_NOTE="${BUILD_NOTE:-broker built from the work tree at $(git rev-parse --short HEAD 2>/dev/null)}"
mkdir -p "$OUT"
TMP="$(mktemp -d)"
TIMEOUT_PID=""
BROKER_PID=""
stop_broker() {
  if [[ -n "$TIMEOUT_PID" ]]; then kill "$TIMEOUT_PID" 2>/dev/null; wait "$TIMEOUT_PID" 2>/dev/null; TIMEOUT_PID=""; fi
}
trap 'stop_broker; rm -rf "$TMP"' EXIT

start_broker() { # limit_s
  timeout -k 10 "$1" "$BROKER" --listen 127.0.0.1:0 --no-demo >"$TMP/broker.out" 2>"$TMP/broker.err" &
  TIMEOUT_PID=$!
  for _ in $(seq 1 300); do
    grep -q '^listening on ' "$TMP/broker.out" 2>/dev/null && break
    kill -0 "$TIMEOUT_PID" 2>/dev/null || break
    sleep 0.1
  done
  ADDR="$(head -1 "$TMP/broker.out" | sed -n 's/^listening on //p')"
  BROKER_PID="$(awk '{print $1}' "/proc/$TIMEOUT_PID/task/$TIMEOUT_PID/children" 2>/dev/null)"
  [[ -n "$ADDR" && -n "$BROKER_PID" ]] || { echo "broker did not start"; cat "$TMP/broker.err"; return 1; }
  URL="ws://$ADDR/socket/websocket"
}

status=0
labels=()
LOAD_START="$(cut -d" " -f1-3 /proc/loadavg)"
[[ -z "${RERENDER:-}" ]] || LOAD_START="not known (documents rebuilt from the step reports; each records its own in environment.loadavg_1_5_15m)"
search() { # label budget_s ceiling-flags -- scenario-flags
  local label="$1" budget="$2"; shift 2
  if [[ -n "$ONLY" && "$label" != "ceiling-$ONLY" ]]; then return 0; fi
  if [[ -n "${RERENDER:-}" ]]; then
    URL=rerender BROKER_PID=0
  else
    rm -f "$OUT/$label".json "$OUT/$label".md "$OUT/$label"-step*.json
    start_broker "$((budget + 120))" || { status=1; return 1; }
    echo "== $label (budget ${budget}s; broker pid $BROKER_PID at $ADDR)"
  fi
  local args=() rest=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do args+=("$1"); shift; done
  shift
  rest=("$@")
  timeout -k 10 "$((budget + 400))" "$LG" ceiling "${args[@]}" ${RERENDER:+--rerender} --budget "$budget" --slo-p99-ms "$SLO_P99_MS" \
    --out-dir "$OUT" --label "$label" --note "Server: $BUILD_NOTE, \`--listen 127.0.0.1:0 --no-demo\`, default configuration; loadgen and broker share this machine's CPUs." \
    -- "${rest[@]}" --url "$URL" --server-pid "$BROKER_PID" --procs "$PROCS" --source-ips "$SOURCE_IPS" --quiet \
    >"$TMP/$label.out" 2> >(grep --line-buffered -v '^\[' >&2)
  local rc=$?
  [[ $rc -le 1 ]] || { echo "   ceiling search failed (exit $rc)"; status=1; }
  [[ -f "$OUT/$label.json" ]] && labels+=("$label") && echo "   $(jq -r .statement "$OUT/$label.json")"
  stop_broker
  sleep 3
}

# 1. fan-out: 19,000 subscribers, publish rate from 4/s
search ceiling-fanout 420 --scenario fanout --start 4 --factor 2 --min 1 --max 256 --resolution 0.15 --max-steps 8 --step-timeout 150 -- \
  -n "$N" --topics 1 --publishers 1 --duration 10 --connect-rate 4000 --drain 5

# 2. connect storm: 19,000 connections, connect rate from 1,000/s
search ceiling-connect-rate 260 --scenario connect --vary connect-rate --start 1000 --factor 2 --min 250 --max 32000 --resolution 0.15 --max-steps 8 --step-timeout 120 -- \
  -n "$N" --topics 100 --joins-per-conn 1 --duration 2

# 3. connection count at half the connect-rate ceiling (1,000/s if there is none): well inside
#    it, so that the count, not the rate, is what the search finds
rate=1000
if [[ -f "$OUT/ceiling-connect-rate.json" ]]; then
  rate="$(jq -r '(.ceiling.value // 2000) * 0.5 | floor' "$OUT/ceiling-connect-rate.json")"
fi
search ceiling-connections 200 --scenario connect --vary connections --start 5000 --factor 2 --min 1000 --max 40000 --resolution 0.01 --max-steps 9 --step-timeout 120 -- \
  --connect-rate "$rate" --topics 100 --joins-per-conn 1 --duration 2

if [[ -z "$ONLY" ]]; then
  {
    echo "# Ceilings at an SLO"
    echo
    echo "Produced by \`scripts/ceiling.sh\` on $(date -u -d "@$(jq -r .started_at_unix_s "$OUT/${labels[0]}.json")" +%Y-%m-%d) ($(nproc) CPUs, kernel $(uname -r), loadgen at $(git rev-parse --short HEAD 2>/dev/null); load average at the start: $LOAD_START);"
    echo "$BUILD_NOTE. SLO: p99 < $SLO_P99_MS ms, 0 lost, 0 failed. Each search: \`<label>.md\` (steps, knee, what ran out first),"
    echo "\`<label>.json\` (the ceiling document), \`<label>-stepK.json\` (each step's loadgen report)."
    echo
    for l in "${labels[@]}"; do
      echo "* **$l**: $(jq -r .statement "$OUT/$l.json"). Knee: $(jq -r 'if .knee then "between \(.knee.before_value) and \(.knee.at_value) (\(.knee.reason))" else "none in the range" end' "$OUT/$l.json"). Ran out first: $(jq -r '.limiting_resource.detail // "–"' "$OUT/$l.json") ([details]($l.md))"
    done
  } >"$OUT/summary.md"
  cat "$OUT/summary.md"
fi
exit $status
