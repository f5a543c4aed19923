#!/usr/bin/env bash
# A/B of two broker builds on the standard scenarios, interleaved (A, B, A, B, …) so that the
# noise of a shared machine falls on both sides alike. Medians per side go to OUT/{a,b}/summary.md
# and each B run is compared with the A run next to it (`loadgen compare`).
#
#   A_BIN=/tmp/old-target/release/broker scripts/ab.sh                  # B = target/release/broker
#   RUNS=5 ONLY="fanout-19k-60-per-s chat-1k-rooms-of-10" A_BIN=… scripts/ab.sh
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
OUT="${OUT:-/tmp/ab}"
A_BIN="${A_BIN:?A_BIN: the baseline broker binary}"
B_BIN="${B_BIN:-${CARGO_TARGET_DIR:-target}/release/broker}"
ONLY="${ONLY:-fanout-19k-1topic fanout-19k-single-broadcasts fanout-19k-60-per-s chat-1k-rooms-of-10 presence-churn-10000-room connect-storm-19k}"
LG="${LOADGEN_BIN:-${CARGO_TARGET_DIR:-target}/release/loadgen}"
mkdir -p "$OUT/a" "$OUT/b"
for run in $(seq 1 "$RUNS"); do
  for label in $ONLY; do
    for side in a b; do
      bin="$A_BIN"; [[ $side == b ]] && bin="$B_BIN"
      tmp="$(mktemp -d)"
      SKIP_BUILD=1 BROKER_BIN="$bin" RUNS=1 ONLY="$label" OUT="$tmp" scripts/bench.sh >/dev/null 2>&1
      [[ -f "$tmp/$label-run1.json" ]] && cp "$tmp/$label-run1.json" "$OUT/$side/$label-run$run.json"
      rm -rf "$tmp"
    done
    echo "== $label run $run: B vs A"
    "$LG" compare "$OUT/a/$label-run$run.json" "$OUT/b/$label-run$run.json" --max-regression 1000% --ignore _max_ms 2>&1 | tail -n +1 | head -30
  done
done
for side in a b; do
  "$LG" summarize "$OUT/$side"/*-run*.json --out "$OUT/$side/summary.json" --markdown "$OUT/$side/summary.md" >/dev/null
done
echo "medians: $OUT/a/summary.md (A = $A_BIN) and $OUT/b/summary.md (B = $B_BIN)"
