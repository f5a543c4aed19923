#!/usr/bin/env bash
# The large run (issue #16): CONNS joined connections over NODES broker processes (each under
# its 20,000-descriptor ceiling) on one Redis, opened by PROCS loadgen worker processes over
# many source addresses, then BROADCASTS broadcasts to all of them (one topic; published on one
# node, fanned out by every node). Reports time until the last subscriber has each broadcast,
# lost deliveries (must be 0), memory per connection (brokers' RSS, and the kernel's socket
# memory from /proc/net/sockstat and Slab), and CPU.
#
#   scripts/large-cluster.sh                       # 200,000 connections, 11 nodes, 11 workers
#   SKIP_BUILD=1 CONNS=40000 NODES=3 PROCS=3 scripts/large-cluster.sh   # a smaller rehearsal
#
# Writes bench-results/large-run/cluster-<CONNS>.json (the loadgen report) and .md (with the
# brokers' and the kernel's figures). Every process is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/release-bins.sh
release_bins
CONNS=${CONNS:-200000}
NODES=${NODES:-11}
PROCS=${PROCS:-11}
RATE=${RATE:-1}               # broadcasts per second
DURATION=${DURATION:-10}      # seconds of publishing
CONNECT_RATE=${CONNECT_RATE:-2500}
SOURCE_IPS=${SOURCE_IPS:-127.0.0.2+16}
OUT=bench-results/large-run
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
stop_all() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; for p in "${PIDS[@]:-}"; do wait "$p" 2>/dev/null || true; done; }
trap 'stop_all; rm -rf "$WORK"' EXIT
. scripts/cluster-lib.sh
rss_kb() { local t=0; for p in "$@"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$t"; }
cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
sock_pages() { awk '/^TCP:/ {for (i=1;i<=NF;i++) if ($i=="mem") print $(i+1)}' /proc/net/sockstat; }
slab_kb() { awk '/^Slab:/ {print $2}' /proc/meminfo; }

start_redis "$WORK/redis.log"; PIDS+=("$REDIS_PID")

per_node=$(( (CONNS + NODES) / NODES + 200 ))
if [ "$per_node" -gt 19900 ]; then echo "CONNS/NODES must stay under 19,900 per node" >&2; exit 2; fi
ports=(); urls=(); bpids=()
for i in $(seq 1 "$NODES"); do
  p=$(free_port)
  "$BROKER" --listen "127.0.0.1:$p" --redis-url "redis://127.0.0.1:$RPORT" --node-name "big$i" --no-demo \
    --presence-topics "" --max-connections "$per_node" >"$WORK/node-$i.log" 2>&1 &
  bpids+=("$!"); PIDS+=("$!"); ports+=("$p"); urls+=("ws://127.0.0.1:$p/socket/websocket")
done
wait_nodes "${ports[@]}"
sleep 1
rss0=$(rss_kb "${bpids[@]}"); sock0=$(sock_pages); slab0=$(slab_kb)
start=$(date +%s)
# Sample the brokers' RSS and the kernel's socket memory once the ramp is done (the loadgen
# prints nothing in --quiet mode, so poll the connections gauge).
(
  while :; do
    total=0; for p in "${ports[@]}"; do total=$((total + $(curl -s "http://127.0.0.1:$p/metrics" | awk '$1=="phx_broker_channels" {print $2}'))); done
    if [ "$total" -ge "$CONNS" ]; then
      echo "$(rss_kb "${bpids[@]}") $(sock_pages) $(slab_kb) $(cpu_ticks "${bpids[@]}") $(date +%s.%N)" >"$WORK/ready"; break
    fi
    sleep 1
  done
) &
SAMPLER=$!
timeout 1200 "$LG" fanout --url "$(IFS=,; echo "${urls[*]}")" -n "$CONNS" --topics 1 --publishers 1 \
  --rate "$RATE" --duration "$DURATION" --drain 30 --procs "$PROCS" --source-ips "$SOURCE_IPS" \
  --connect-rate "$CONNECT_RATE" --ramp-timeout 600 --deadline 1100 --heartbeat 30 --quiet \
  --label "cluster-$CONNS-${NODES}nodes" --out "$OUT/cluster-$CONNS.json" --svg "$OUT/cluster-$CONNS.svg" || echo "loadgen exited $?"
cpu_end=$(cpu_ticks "${bpids[@]}")
wait "$SAMPLER" 2>/dev/null || true
read -r rss1 sock1 slab1 cpu_ready t_ready <"$WORK/ready" || { echo "never reached $CONNS joined channels" >&2; exit 1; }
hz=$(getconf CLK_TCK)
received=0; published=0; for p in "${ports[@]}"; do received=$((received + $(curl -s "http://127.0.0.1:$p/metrics" | awk '$1=="phx_broker_cluster_received_total" {print $2}'))); done
# Per node, what the broker itself counted (frames queued to subscribers, frames written, closes).
for p in "${ports[@]}"; do
  curl -s "http://127.0.0.1:$p/metrics" | awk -v port="$p" '$1 ~ /^phx_broker_(deliveries_total|messages_out_total|slow_consumers_total|connections|channels|broadcasts_total|budget_closes_total)$/ {printf "%s %s=%s ", port, $1, $2} END {print ""}'
done >"$OUT/cluster-$CONNS-nodes.txt"
commit=$(git rev-parse --short HEAD); dirty=$(git status --porcelain -- broker loadgen tracker | grep -q . && echo " (dirty)" || true)
python3 - "$OUT/cluster-$CONNS.json" "$rss0" "$rss1" "$sock0" "$sock1" "$slab0" "$slab1" "$cpu_ready" "$cpu_end" "$hz" "$NODES" "$PROCS" "$CONNS" "$commit$dirty" "$received" >"$OUT/cluster-$CONNS.md" <<'EOF'
import json, sys
(path, rss0, rss1, sock0, sock1, slab0, slab1, cpu_ready, cpu_end, hz, nodes, procs, conns, commit, received) = sys.argv[1:]
r = json.load(open(path)); m = {k: v["value"] for k, v in r["metrics"].items()}
n = int(conns); kb = lambda a, b: (int(b) - int(a)) * 1024
page = 4096
print(f"# {n:,} joined connections on {nodes} broker nodes over Redis\n")
print(f"Commit `{commit}`. Command: `CONNS={conns} NODES={nodes} PROCS={procs} scripts/large-cluster.sh` (this machine: 2 cores, 24 GB;")
print(f"{nodes} brokers, {procs} loadgen workers and Redis share the cores). Report: `{path.split('/')[-1]}`.\n")
print("| figure | value |\n|---|---|")
rows = [
    ("connections established", f"{m.get('connections_established', 0):,.0f} of {n + 1:,} (1 publisher)"),
    ("connection failures", f"{m.get('connection_failures', 0):.0f}"),
    ("time to all connected and joined", f"{m.get('time_to_all_connected_s', 0):.1f} s"),
    ("broadcasts", f"{m.get('sent', 0):.0f}"),
    ("deliveries / expected", f"{m.get('deliveries', 0):,.0f} / {m.get('expected_deliveries', 0):,.0f}"),
    ("lost", f"{m.get('lost', 0):.0f}"),
    ("time until the last subscriber has a broadcast, p50 / max", f"{m.get('broadcast_complete_p50_ms', 0):.0f} / {m.get('broadcast_complete_max_ms', 0):.0f} ms"),
    ("delivery latency p50 / p99", f"{m.get('delivery_p50_ms', 0):.0f} / {m.get('delivery_p99_ms', 0):.0f} ms"),
    ("broadcasts received from Redis, all nodes", f"{int(received):,} ({int(received) / max(m.get('sent', 1), 1):.1f} per broadcast)"),
    ("brokers' RSS per connection", f"{kb(rss0, rss1) / n:,.0f} B (all {nodes} brokers: {int(rss1) / 1024:,.0f} MB)"),
    ("kernel Slab growth per connection (its two sockets, client and server, are both on this machine)", f"{kb(slab0, slab1) / n:,.0f} B"),
    ("kernel TCP buffer pages in use when all had joined (sockstat `mem`; idle sockets hold none)", f"{int(sock1):,} pages ({int(sock1) * page / 2**20:,.0f} MB)"),
    ("brokers' CPU from all-joined to the end", f"{(int(cpu_end) - int(cpu_ready)) / int(hz):.1f} s"),
    ("loadgen CPU (all workers, whole run)", f"{m.get('loadgen_cpu_s', 0):.1f} s"),
    ("loadgen RSS per connection", f"{m.get('loadgen_rss_per_connection_bytes', 0):,.0f} B"),
    ("run ok (no problems flagged)", f"{r.get('ok')} {r.get('problems')}"),
]
for k, v in rows:
    print(f"| {k} | {v} |")
EOF
cat "$OUT/cluster-$CONNS.md"
