#!/usr/bin/env bash
# The standard benchmark suite on this machine (about 17 minutes with the default 5 runs).
# Builds release binaries, starts a fresh broker (port 0) for every run, passes its pid to
# loadgen, writes one JSON (+ SVG) per scenario run into bench-results/, then
# bench-results/summary.json, bench-results/summary.md and the "Latest figures" section of
# bench-results/README.md (medians, min/max and spread over the runs).
#
# bench-results/README.md is not rewritten: only the text between the markers
# <!-- bench.sh:begin --> and <!-- bench.sh:end --> is replaced, so the sections other scripts
# and people wrote (ceilings at an SLO, the Tsung cross-check, ...) stay as they are. A README
# without the markers gets the section appended; a missing README is created.
#
#   scripts/bench.sh                       # full suite, 5 runs each (the medians need >= 5)
#   RUNS=1 scripts/bench.sh                # quicker (a look, not figures to commit)
#   ONLY=fanout-19k-1topic scripts/bench.sh
#   OUT=/tmp/x SCALE=0.1 scripts/bench.sh   # elsewhere, 10% of the connections (regress.sh)
#
# The summary covers exactly the runs of this invocation: result files left in OUT by earlier
# invocations (other labels, higher run numbers) are not mixed into the medians. (With ONLY=,
# the summary and README hold that one label.)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

RUNS="${RUNS:-5}"
OUT="${OUT:-bench-results}"
SCALE="${SCALE:-1}"
ONLY="${ONLY:-}"
# The presence room: 10,000 members, 100 leave+rejoin per second (200 joins+leaves/s). Its ramp
# moves O(n^2) presence bytes (every member learns of every other once, by presence_state or by
# presence_diff); PRESENCE_ROOM=2000 for the smaller room of earlier results.
PRESENCE_ROOM="${PRESENCE_ROOM:-10000}"
PRESENCE_CHURN="${PRESENCE_CHURN:-100}"
mkdir -p "$OUT"

# SKIP_BUILD=1: the binaries as they are; BROKER_BIN: another broker binary to measure (an A/B
# against an older commit's build); LOADGEN_BIN: another loadgen (the tests use their debug build)
. scripts/release-bins.sh
release_bins || exit 2
TMP="$(mktemp -d)"
BROKER_PID=""
stop_broker() {
  if [[ -n "$BROKER_PID" ]]; then kill "$BROKER_PID" 2>/dev/null; wait "$BROKER_PID" 2>/dev/null; BROKER_PID=""; fi
}
trap 'stop_broker; rm -rf "$TMP"' EXIT

start_broker() {
  # up to 3 tries, 30 s each (a loaded machine, or a binary being rebuilt, can be slow)
  for _try in 1 2 3; do
    "$BROKER" --listen 127.0.0.1:0 >"$TMP/broker.out" 2>"$TMP/broker.err" &
    BROKER_PID=$!
    for _ in $(seq 1 300); do
      grep -q '^listening on ' "$TMP/broker.out" 2>/dev/null && break
      kill -0 "$BROKER_PID" 2>/dev/null || break
      sleep 0.1
    done
    ADDR="$(head -1 "$TMP/broker.out" | sed -n 's/^listening on //p')"
    if [[ -n "$ADDR" ]]; then URL="ws://$ADDR/socket/websocket"; return 0; fi
    echo "broker did not start (try $_try):"; tail -5 "$TMP/broker.err"
    stop_broker
    sleep 2
  done
  return 1
}

n() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = int(n * s); if (v < 1) v = 1; print v }'; }

# label | loadgen arguments
SUITE=(
  "fanout-19k-1topic|fanout -n $(n 19000) --topics 1 --publishers 1 --rate 10 --duration 10 --connect-rate 4000 --drain 15"
  "fanout-19k-single-broadcasts|fanout -n $(n 19000) --topics 1 --publishers 1 --rate 1 --duration 10 --connect-rate 4000 --drain 10"
  "fanout-19k-60-per-s|fanout -n $(n 19000) --topics 1 --publishers 1 --rate 60 --duration 10 --connect-rate 4000 --drain 20"
  "chat-1k-rooms-of-10|chat --rooms $(n 1000) -k 10 --post-interval-ms 2000 --duration 10 --connect-rate 4000"
  "presence-churn-$(n "$PRESENCE_ROOM")-room|presence --rooms 1 -k $(n "$PRESENCE_ROOM") --observers 10 --churn-rate $PRESENCE_CHURN --rejoin-delay-ms 200 --duration 10 --connect-rate 1000 --ramp-timeout 240 --drain 10"
  "connect-storm-19k|connect -n $(n 19000) --joins-per-conn 1 --topics 100 --connect-rate 10000 --duration 2"
)

status=0
files=()
for entry in "${SUITE[@]}"; do
  label="${entry%%|*}"
  args="${entry#*|}"
  if [[ -n "$ONLY" && "$label" != "$ONLY" ]]; then continue; fi
  for run in $(seq 1 "$RUNS"); do
    f="$OUT/$label-run$run.json"
    # a failed run must not leave an earlier invocation's file in its place
    rm -f "$f" "$OUT/$label-run$run.svg"
    start_broker || { echo "cannot start broker; run skipped"; status=1; continue; }
    echo "== $label run $run/$RUNS: loadgen $args"
    # shellcheck disable=SC2086
    "$LG" $args --url "$URL" --server-pid "$BROKER_PID" --label "$label" --deadline 300 \
      --out "$f" --svg "$OUT/$label-run$run.svg" 2> >(grep -v '^\[' >&2) | grep -E 'PROBLEM|==|deliveries_per_s|p99_ms|time_to_all' 
    rc=${PIPESTATUS[0]}
    [[ $rc -ne 0 ]] && { echo "   run reported problems (exit $rc)"; status=1; }
    [[ -f "$f" ]] && files+=("$f")
    stop_broker
  done
done

if [[ ${#files[@]} -gt 0 ]]; then
  # exactly the files this invocation wrote (not every *-run*.json in OUT: stale ones would
  # mix other code versions and settings into the medians)
  "$LG" summarize "${files[@]}" --out "$OUT/summary.json" --markdown "$OUT/summary.md" >/dev/null
  if [[ "$OUT" == bench-results ]]; then
    BEGIN_MARK='<!-- bench.sh:begin (generated by scripts/bench.sh: edits between these markers are overwritten) -->'
    END_MARK='<!-- bench.sh:end -->'
    {
      echo "$BEGIN_MARK"
      echo "## Latest figures"
      echo
      echo "Machine: $(jq -r '.environment.cpu_model' "$OUT/summary.json" 2>/dev/null || grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) CPUs, kernel $(uname -r), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%d); $RUNS runs per scenario (each report records its own commit and dirty flag)."
      echo
      cat "$OUT/summary.md"
      if [[ -f "$OUT/ANALYSIS.md" ]]; then
        echo
        echo "See [ANALYSIS.md](ANALYSIS.md) for these figures against the reference numbers."
      fi
      echo "$END_MARK"
    } > "$TMP/generated.md"
    if [[ ! -f "$OUT/README.md" ]]; then
      {
        cat <<'HDR'
# Benchmark results

Produced by `scripts/bench.sh` (the standard suite): a fresh release `broker --listen 127.0.0.1:0`
per run, driven by `loadgen` on the same machine (so the load generator and the broker share
the CPUs). Every figure is the **median over the runs**, with min, max and spread
(`(max-min)/median`). Latencies are measured from the *intended* send time (open loop, no
coordinated omission). One JSON report per run (`schema_version` 1, see `schema.json`) and an
SVG of latency percentiles per second sit next to this file; `summary.json` holds all metrics.

HDR
        cat "$TMP/generated.md"
      } > "$OUT/README.md"
    elif grep -qF '<!-- bench.sh:begin' "$OUT/README.md" && grep -qF "$END_MARK" "$OUT/README.md"; then
      # everything outside the markers verbatim, the generated section between them
      awk -v gen="$TMP/generated.md" '
        /^<!-- bench.sh:begin/ { while ((getline l < gen) > 0) print l; skip = 1; next }
        skip && /^<!-- bench.sh:end -->/ { skip = 0; next }
        !skip { print }
      ' "$OUT/README.md" > "$TMP/README.md" && cat "$TMP/README.md" > "$OUT/README.md"
    else
      { echo; cat "$TMP/generated.md"; } >> "$OUT/README.md"
    fi
  fi
  cat "$OUT/summary.md"
fi
exit $status
