#!/usr/bin/env bash
# Redis messages per broadcast with 1, 3 and 10 broker nodes (issue #16).
#
# For each N: a private redis-server, N release broker nodes on it, and one loadgen fanout run
# whose subscribers are spread round-robin over the N nodes (one topic) while one publisher
# pushes B broadcasts. Then it reads:
#   * Redis: messages published on the topic's channel (a redis-cli subscriber counts them):
#     PUBLISHes per broadcast;
#   * the nodes' cluster_received_total: broadcasts received from other nodes, per broadcast.
# Writes bench-results/cluster/redis-messages.md (and .json).
#
#   scripts/cluster-redis-cost.sh            # builds release binaries first
#   SKIP_BUILD=1 BROKER_BIN=... LOADGEN_BIN=... scripts/cluster-redis-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/release-bins.sh
release_bins
OUT=bench-results/cluster
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; for p in "${PIDS[@]:-}"; do wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

. scripts/cluster-lib.sh
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1==n {print $2}'; }

SUBS_PER_NODE=${SUBS_PER_NODE:-200}
RATE=${RATE:-50}
DURATION=${DURATION:-4}
rows=()
json="["
for N in 1 3 10; do
  start_redis "$WORK/redis-$N.log"; PIDS+=("$REDIS_PID")
  ports=(); urls=()
  for i in $(seq 1 "$N"); do
    p=$(free_port)
    "$BROKER" --listen "127.0.0.1:$p" --redis-url "redis://127.0.0.1:$RPORT" --node-name "n$i" --no-demo --presence-topics "" >"$WORK/node-$N-$i.log" 2>&1 &
    PIDS+=("$!"); ports+=("$p"); urls+=("ws://127.0.0.1:$p/socket/websocket")
  done
  wait_nodes "${ports[@]}"
  # A listener on the topic's channel counts what was published on it (presence heartbeats use
  # other channels).
  redis-cli -p "$RPORT" subscribe "phx:b:bench:0" >"$WORK/listen-$N.txt" 2>/dev/null &
  LISTEN=$!; PIDS+=("$LISTEN"); sleep 0.3
  subs=$((SUBS_PER_NODE * N))
  timeout 300 "$LG" fanout --url "$(IFS=,; echo "${urls[*]}")" -n "$subs" --topics 1 --publishers 1 \
    --rate "$RATE" --duration "$DURATION" --connect-rate 2000 --quiet --out "$WORK/fanout-$N.json" >/dev/null
  sleep 0.5; kill "$LISTEN" 2>/dev/null || true
  # redis-cli prints each message as three lines: "message", the channel, the payload.
  publishes=$(grep -cx "message" "$WORK/listen-$N.txt" || true)
  recv=0; for p in "${ports[@]}"; do recv=$((recv + $(metric "$p" phx_broker_cluster_received_total))); done
  hb=0
  sent=$(jq '.counters.sent' "$WORK/fanout-$N.json")
  lost=$(jq '.metrics.lost.value' "$WORK/fanout-$N.json")
  deliveries=$(jq '.counters.deliveries' "$WORK/fanout-$N.json")
  per_bcast=$(python3 -c "print(round(($publishes - $hb) / max($sent, 1), 3))")
  recv_per=$(python3 -c "print(round($recv / max($sent, 1), 3))")
  rows+=("| $N | $subs | $sent | $((publishes - hb)) | $per_bcast | $recv_per | $deliveries | $lost |")
  json+="{\"nodes\":$N,\"subscribers\":$subs,\"broadcasts\":$sent,\"publish_commands\":$((publishes - hb)),\"publish_per_broadcast\":$per_bcast,\"received_from_other_nodes_per_broadcast\":$recv_per,\"deliveries\":$deliveries,\"lost\":$lost},"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; PIDS=()
done
json="${json%,}]"
commit=$(git rev-parse --short HEAD); dirty=$(git status --porcelain -- broker loadgen tracker | grep -q . && echo " (dirty)" || true)
{
  echo "# Redis messages per broadcast, 1 / 3 / 10 nodes"
  echo
  echo "Commit \`$commit\`$dirty, $(date -u +%Y-%m-%d). Command: \`scripts/cluster-redis-cost.sh\`."
  echo "$SUBS_PER_NODE subscribers per node on one topic (loadgen spreads them round-robin), one publisher, $RATE broadcasts/s for ${DURATION} s."
  echo
  echo "| nodes | subscribers | broadcasts | PUBLISHes on the topic's channel | PUBLISH per broadcast | received from other nodes per broadcast | deliveries | lost |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Each broadcast is one PUBLISH, whatever the node count; Redis sends it to the nodes that have"
  echo "subscribers of the topic (here all N, the publisher's own node included, which drops its echo),"
  echo "so each other node receives it once: N-1 per broadcast. A node without subscribers of a topic"
  echo "is not subscribed to its channel and receives nothing (tests/js/cluster.test.mjs checks the"
  echo "subscription count)."
} >"$OUT/redis-messages.md"
echo "$json" | jq . >"$OUT/redis-messages.json"
cat "$OUT/redis-messages.md"
