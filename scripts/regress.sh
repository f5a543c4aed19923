#!/usr/bin/env bash
# Short benchmark suite compared against the committed baseline (bench-results/baseline/*.json).
#   scripts/regress.sh                     # exit 1 if a metric regressed beyond MAX_REGRESSION
#   scripts/regress.sh --update-baseline   # run and store the results as the new baseline
#   MAX_REGRESSION=25% MIN_ABS_MS=1 scripts/regress.sh
# Latencies on a shared 2-core machine are noisy: the default tolerance is 25% and latency
# changes below MIN_ABS_MS milliseconds are ignored. Losses/failures regress on any increase.
set -uo pipefail
cd "$(dirname "$0")/.."
MAX_REGRESSION="${MAX_REGRESSION:-25%}"
MIN_ABS_MS="${MIN_ABS_MS:-1}"
BASE=bench-results/baseline
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

RUNS=1 SCALE="${SCALE:-0.25}" PRESENCE_ROOM="${PRESENCE_ROOM:-4000}" OUT="$OUT" scripts/bench.sh >"$OUT/bench.log" 2>&1
bench_rc=$?
[[ $bench_rc -eq 2 ]] && { cat "$OUT/bench.log"; echo "regress: suite could not run"; exit 2; }

if [[ "${1:-}" == --update-baseline ]]; then
  mkdir -p "$BASE"
  for f in "$OUT"/*-run1.json; do cp "$f" "$BASE/$(basename "$f" -run1.json).json"; done
  echo "baseline updated: $(ls "$BASE")"
  exit 0
fi

status=0
for f in "$OUT"/*-run1.json; do
  label="$(basename "$f" -run1.json)"
  b="$BASE/$label.json"
  if [[ ! -f "$b" ]]; then echo "== $label: no baseline ($b); run scripts/regress.sh --update-baseline"; status=1; continue; fi
  echo "== $label"
  target/release/loadgen compare "$b" "$f" --max-regression "$MAX_REGRESSION" --min-abs-ms "$MIN_ABS_MS" --ignore _max_ms || status=1
done
[[ $bench_rc -ne 0 ]] && { echo "some runs reported problems (loss, failures, non-convergence)"; status=1; }
exit $status
