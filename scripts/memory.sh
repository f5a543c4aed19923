#!/usr/bin/env bash
# RSS per joined idle connection (issue #17 goal 1): a fresh release broker per run, N
# connections (default 19,000) that each join one channel and heartbeat, held idle; the broker's
# VmRSS is read before the first connection and again once every channel is joined and has been
# idle for HOLD seconds (two heartbeats). Prints bytes per connection for each run and the median,
# and writes bench-results/memory/<label>.json.
#
#   scripts/memory.sh                        # presence off (topics mem:0..99), 3 runs
#   PRESENCE=1 scripts/memory.sh             # presence on: room:mem0..999 (19 members each)
#   RUNS=1 N=5000 scripts/memory.sh          # a quick look
#   BROKER_BIN=/tmp/old/broker LABEL=before scripts/memory.sh    # another build (no build here)
#   MIMALLOC_PURGE_DELAY=100 LABEL=x scripts/memory.sh            # the broker inherits the env
#
# Every process is bounded in time (`timeout`). The load generator runs as 2 processes over 4
# source addresses (one process holds at most ~19,900 sockets).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

N="${N:-19000}"
RUNS="${RUNS:-3}"
PRESENCE="${PRESENCE:-0}"
HOLD="${HOLD:-12}"               # idle seconds after the last join, before RSS is read
HEARTBEAT="${HEARTBEAT:-5}"      # loadgen heartbeat interval, s (every connection beats during HOLD)
CONNECT_RATE="${CONNECT_RATE:-4000}"
OUT="${OUT:-bench-results/memory}"
if [[ "$PRESENCE" == 1 ]]; then
  PREFIX="room:mem"; TOPICS="${TOPICS:-1000}"; DEFAULT_LABEL="idle-joined-presence-on"
else
  PREFIX="mem:"; TOPICS="${TOPICS:-100}"; DEFAULT_LABEL="idle-joined-presence-off"
fi
LABEL="${LABEL:-$DEFAULT_LABEL}"
mkdir -p "$OUT"

. scripts/release-bins.sh
release_bins || exit 2

TMP="$(mktemp -d)"
BROKER_PID=""; TIMEOUT_PID=""; LG_PID=""
cleanup() {
  [[ -n "$LG_PID" ]] && kill "$LG_PID" 2>/dev/null && wait "$LG_PID" 2>/dev/null
  [[ -n "$BROKER_PID" ]] && kill "$BROKER_PID" 2>/dev/null
  [[ -n "$TIMEOUT_PID" ]] && wait "$TIMEOUT_PID" 2>/dev/null
  BROKER_PID=""; TIMEOUT_PID=""; LG_PID=""
}
trap 'cleanup; rm -rf "$TMP"' EXIT

rss() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status" 2>/dev/null; }
metric() { curl -s --max-time 2 "http://$ADDR/metrics" | awk -v k="phx_broker_$1" '$1 == k { print $2 }'; }

runs_json=()
per_conn=()
for run in $(seq 1 "$RUNS"); do
  timeout 600 "$BROKER" --listen 127.0.0.1:0 --no-longpoll >"$TMP/broker.out" 2>"$TMP/broker.err" &
  TIMEOUT_PID=$!
  sleep 0.2
  BROKER_PID="$(pgrep -P "$TIMEOUT_PID")"   # the broker itself, not `timeout`
  for _ in $(seq 1 300); do
    grep -q '^listening on ' "$TMP/broker.out" 2>/dev/null && break
    sleep 0.1
  done
  ADDR="$(head -1 "$TMP/broker.out" | sed -n 's/^listening on //p')"
  [[ -n "$ADDR" ]] || { echo "broker did not start:"; tail -5 "$TMP/broker.err"; exit 1; }
  sleep 1
  rss0="$(rss "$BROKER_PID")"

  # The loadgen holds the connections long enough for the ramp, HOLD and the reading.
  timeout 300 "$LG" connect -n "$N" --joins-per-conn 1 --topics "$TOPICS" --topic-prefix "$PREFIX" \
    --procs 2 --source-ips 127.0.0.2+4 --connect-rate "$CONNECT_RATE" --heartbeat "$HEARTBEAT" \
    --duration $((HOLD + 15)) --drain 1 --url "ws://$ADDR/socket/websocket" --server-pid "$BROKER_PID" \
    --label "memory-$LABEL" --quiet --out "$TMP/loadgen.json" >"$TMP/loadgen.out" 2>&1 &
  LG_PID=$!

  # Wait until every channel is joined (at most 120 s), then HOLD idle seconds.
  joined=0
  for _ in $(seq 1 1200); do
    joined="$(metric channels)"; joined="${joined:-0}"
    [[ "$joined" -ge "$N" ]] && break
    kill -0 "$LG_PID" 2>/dev/null || break
    sleep 0.1
  done
  sleep "$HOLD"
  rss1="$(rss "$BROKER_PID")"
  conns="$(metric connections)"; chans="$(metric channels)"
  wait "$LG_PID"; lg_rc=$?; LG_PID=""
  cleanup

  if [[ "${conns:-0}" -lt "$N" || "${chans:-0}" -lt "$N" ]]; then
    echo "run $run: only ${conns:-0} connections / ${chans:-0} channels of $N (loadgen exit $lg_rc); run discarded"
    tail -5 "$TMP/loadgen.out"
    continue
  fi
  per=$(( (rss1 - rss0) / conns ))
  per_conn+=("$per")
  echo "run $run: idle RSS $((rss0 / 1024)) KiB, with $conns joined connections $((rss1 / 1024)) KiB: $per bytes per connection (loadgen exit $lg_rc)"
  runs_json+=("{\"rss_idle_bytes\":$rss0,\"rss_bytes\":$rss1,\"connections\":$conns,\"channels\":$chans,\"bytes_per_connection\":$per,\"loadgen_exit\":$lg_rc}")
done

[[ ${#per_conn[@]} -gt 0 ]] || { echo "no valid run"; exit 1; }
median="$(printf '%s\n' "${per_conn[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }')"
echo "== $LABEL: median $median bytes per joined idle connection over ${#per_conn[@]} runs (N=$N, presence $([[ $PRESENCE == 1 ]] && echo on || echo off))"

env_json="$(env | grep -E '^(MIMALLOC_|MALLOC_|BROKER_)' | jq -R -s 'split("\n") | map(select(length > 0))')"
jq -n --arg lbl "$LABEL" --argjson n "$N" --argjson presence "$([[ $PRESENCE == 1 ]] && echo true || echo false)" \
  --arg prefix "$PREFIX" --argjson topics "$TOPICS" --argjson hold "$HOLD" --argjson heartbeat "$HEARTBEAT" \
  --argjson median "$median" --argjson runs "[$(IFS=,; echo "${runs_json[*]}")]" \
  --arg broker "$BROKER" --arg commit "$(git rev-parse --short HEAD 2>/dev/null)" \
  --arg dirty "$(git status --porcelain -- broker 2>/dev/null | wc -l)" --argjson env "$env_json" \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg kernel "$(uname -r)" --argjson cpus "$(nproc)" \
  '{"label": $lbl, "connections": $n, "presence": $presence, "topic_prefix": $prefix, "topics": $topics,
    "hold_s": $hold, "heartbeat_s": $heartbeat, "median_bytes_per_connection": $median, "runs": $runs,
    "broker_bin": $broker, "commit": $commit, "broker_files_changed": ($dirty | tonumber), "env": $env,
    "date": $date, "kernel": $kernel, "cpus": $cpus}' >"$OUT/$LABEL.json"
echo "wrote $OUT/$LABEL.json"
