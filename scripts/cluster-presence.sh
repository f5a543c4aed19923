#!/usr/bin/env bash
# Cross-node presence convergence under churn (issue #16): one room of K members spread
# round-robin over N broker nodes on one Redis, members leaving and rejoining at CHURN
# leave+rejoin operations/s (2 x CHURN joins+leaves/s); observers on every node keep a phoenix.js
# Presence model and loadgen measures the time from each join/leave until every observer's list
# shows it. Runs N=1 (no Redis: the single-node baseline) and N=3, RUNS times each, interleaved.
# presence.diff_window_ms = 0 (one diff per change, as Phoenix), so the figure is replication,
# not coalescing.
#
#   scripts/cluster-presence.sh                 # builds release binaries first
#   SKIP_BUILD=1 BROKER_BIN=... LOADGEN_BIN=... ROOM=1000 CHURN=100 RUNS=3 scripts/cluster-presence.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/release-bins.sh
release_bins
ROOM=${ROOM:-1000}
CHURN=${CHURN:-100}
DURATION=${DURATION:-20}
RUNS=${RUNS:-3}
OUT=bench-results/cluster
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
stop_all() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; for p in "${PIDS[@]:-}"; do wait "$p" 2>/dev/null || true; done; PIDS=(); }
trap 'stop_all; rm -rf "$WORK"' EXIT
. scripts/cluster-lib.sh

start_redis "$WORK/redis.log"

run() { # nodes run
  local n=$1 r=$2 urls=() ports=()
  for i in $(seq 1 "$n"); do
    local p; p=$(free_port)
    local cluster=()
    [ "$n" -gt 1 ] && cluster=(--redis-url "redis://127.0.0.1:$RPORT" --node-name "p$i")
    "$BROKER" --listen "127.0.0.1:$p" "${cluster[@]}" --no-demo --presence-window-ms 0 >"$WORK/node-$n-$r-$i.log" 2>&1 &
    PIDS+=("$!"); ports+=("$p"); urls+=("ws://127.0.0.1:$p/socket/websocket")
  done
  wait_nodes "${ports[@]}"
  timeout 600 "$LG" presence --url "$(IFS=,; echo "${urls[*]}")" -k "$ROOM" --churn-rate "$CHURN" --duration "$DURATION" \
    --observers 30 --connect-rate 1000 --quiet --label "presence-${n}node" --out "$OUT/presence-${n}node-run$r.json" >/dev/null || true
  stop_all
}
for r in $(seq 1 "$RUNS"); do run 1 "$r"; run 3 "$r"; done
kill "$REDIS_PID" 2>/dev/null || true

commit=$(git rev-parse --short HEAD); dirty=$(git status --porcelain -- broker loadgen tracker | grep -q . && echo " (dirty)" || true)
{
  echo "# Cross-node presence convergence under churn"
  echo
  echo "Commit \`$commit\`$dirty, $(date -u +%Y-%m-%d). Command: \`ROOM=$ROOM CHURN=$CHURN DURATION=$DURATION RUNS=$RUNS scripts/cluster-presence.sh\`."
  echo "One room of $ROOM members spread round-robin over the nodes, $CHURN leave+rejoin operations/s ($((2 * CHURN)) joins+leaves/s),"
  echo "30 observers (on every node) keeping a phoenix.js Presence model; convergence = from a join or"
  echo "leave until every observer's list shows it. \`presence.diff_window_ms = 0\`. 2 shared cores run"
  echo "the nodes, Redis and the loadgen together."
  echo
  echo "| nodes | run | convergence p50 ms | p99 ms | max ms | unresolved | presence_diff frames/s | ok |"
  echo "|---|---|---|---|---|---|---|---|"
  for f in "$OUT"/presence-1node-run*.json "$OUT"/presence-3node-run*.json; do
    [ -f "$f" ] || continue
    jq -r --arg f "$(basename "$f" .json)" '"| \($f | capture("(?<n>[0-9]+)node").n) | \($f | capture("run(?<r>[0-9]+)").r) | \(.metrics.convergence_p50_ms.value) | \(.metrics.convergence_p99_ms.value) | \(.metrics.convergence_max_ms.value // "-") | \(.metrics.convergence_unresolved.value) | \(.metrics.presence_diff_frames_per_s.value // .metrics.diff_frames_per_s.value // "-") | \(.ok) |"' "$f"
  done
  echo
  echo "Medians of p99: 1 node $(jq -s 'map(.metrics.convergence_p99_ms.value) | sort | .[length/2|floor]' "$OUT"/presence-1node-run*.json) ms,"
  echo "3 nodes $(jq -s 'map(.metrics.convergence_p99_ms.value) | sort | .[length/2|floor]' "$OUT"/presence-3node-run*.json) ms."
} >"$OUT/presence-convergence.md"
cat "$OUT/presence-convergence.md"
