#!/usr/bin/env bash
# Tsung cross-check of loadgen (#18 point 6): the same connect storm and fan-out, run with
# Tsung (Debian's `tsung`, one Erlang VM) and with loadgen, one after the other, against the
# same broker binary (a fresh broker per run, default configuration). One /proc sampler of the
# broker (sample_proc.py) gives the server-side figures for both tools; analyze.py compares them
# and writes bench-results/tsung/crosscheck.md (+ .json), the raw output under
# bench-results/tsung/raw/.
#
#   scripts/tsung/crosscheck.sh                   # builds, ~3 minutes of runs
#   N_CONNECT=10000 N_FANOUT=5000 scripts/tsung/crosscheck.sh
#   SKIP_BUILD=1 BROKER_BIN=/path/broker LOADGEN_BIN=/path/loadgen scripts/tsung/crosscheck.sh
#
# Needs: tsung (apt-get install -y tsung), python3. Every process runs under `timeout`.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"
HERE="$ROOT/scripts/tsung"

N_CONNECT="${N_CONNECT:-10000}"          # connect storm: connections
CONNECT_RATE="${CONNECT_RATE:-1000}"     # connections/s
CONNECT_HOLD="${CONNECT_HOLD:-10}"       # s
N_FANOUT="${N_FANOUT:-5000}"             # fan-out: subscribers
FANOUT_CONNECT_RATE="${FANOUT_CONNECT_RATE:-1000}"
FANOUT_RATE="${FANOUT_RATE:-10}"         # broadcasts/s
FANOUT_DURATION="${FANOUT_DURATION:-10}" # s
PAD="${PAD:-80}"                         # Tsung's pad; loadgen's payload is sized to match
TOPIC="bench:0"                          # loadgen's topic 0 (no Presence, unlike room:*)
OUT="${OUT:-bench-results/tsung}"
RUN_LIMIT="${RUN_LIMIT:-180}"            # s, per tool run
TSUNG_IPS=(127.0.0.6 127.0.0.7 127.0.0.8 127.0.0.9)
LG_IPS="127.0.0.2+4"

command -v tsung >/dev/null || { echo "tsung is not installed (apt-get install -y tsung)"; exit 2; }
. scripts/release-bins.sh
release_bins || exit 2
BUILD_NOTE="${BUILD_NOTE:-built from the work tree at $(git rev-parse --short HEAD 2>/dev/null)}"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

RAW="$OUT/raw"
rm -rf "$RAW"
mkdir -p "$RAW"
TIMEOUT_PID="" SAMPLER_PID="" BROKER_PID="" PORT=""
stop_broker() {
  if [[ -n "$TIMEOUT_PID" ]]; then kill "$TIMEOUT_PID" 2>/dev/null; wait "$TIMEOUT_PID" 2>/dev/null; TIMEOUT_PID=""; fi
  if [[ -n "$SAMPLER_PID" ]]; then wait "$SAMPLER_PID" 2>/dev/null; SAMPLER_PID=""; fi
}
trap stop_broker EXIT

start_broker() { # dir
  local d="$1"
  timeout -k 5 "$((RUN_LIMIT + 30))" "$BROKER" --listen 127.0.0.1:0 --no-demo >"$d/broker.out" 2>"$d/broker.err" &
  TIMEOUT_PID=$!
  for _ in $(seq 1 300); do
    grep -q '^listening on ' "$d/broker.out" 2>/dev/null && break
    kill -0 "$TIMEOUT_PID" 2>/dev/null || break
    sleep 0.1
  done
  PORT="$(head -1 "$d/broker.out" | sed -n 's/^listening on 127.0.0.1://p')"
  BROKER_PID="$(awk '{print $1}' "/proc/$TIMEOUT_PID/task/$TIMEOUT_PID/children" 2>/dev/null)"
  [[ -n "$PORT" && -n "$BROKER_PID" ]] || { echo "broker did not start"; cat "$d/broker.err"; return 1; }
  # the sampler ends with the broker
  timeout "$((RUN_LIMIT + 30))" python3 "$HERE/sample_proc.py" "$BROKER_PID" "$d/samples.csv" 0.25 "$((RUN_LIMIT + 30))" &
  SAMPLER_PID=$!
  sleep 1 # a baseline before the load
}

ip_lines() { for ip in "${TSUNG_IPS[@]}"; do printf '      <ip value="%s"/>\\n' "$ip"; done; }
render() { # template out key=value...
  local tpl="$1" out="$2"; shift 2
  local expr=()
  for kv in "$@"; do expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${expr[@]}" -e "s|@IP_LINES@|$(ip_lines)|" "$tpl" >"$out"
}

run_tsung() { # dir xml
  local d="$1" xml="$2"
  # -n: no web dashboard; the log directory gets a dated subdirectory
  (cd "$d" && timeout -k 10 "$RUN_LIMIT" tsung -n -f "$xml" -l "$d/tsung-logs" start) >"$d/tsung.out" 2>&1
  local rc=$?
  cp "$(ls -d "$d"/tsung-logs/*/ | head -1)/tsung.log" "$d/tsung.log" 2>/dev/null || { echo "no tsung.log (exit $rc)"; tail "$d/tsung.out"; return 1; }
}

pad_str="$(printf 'x%.0s' $(seq 1 "$PAD"))"
# loadgen's stamp payload ({"t":…,"s":…,"p":…,"pad":"…"}) sized like Tsung's {"pad":"…"}
LG_PAYLOAD=$((PAD + 10))
status=0

# ---- connect storm ----
d="$ROOT/$RAW/connect-tsung"; mkdir -p "$d"
arrival=$(( (N_CONNECT + CONNECT_RATE - 1) / CONNECT_RATE * 3 / 2 + 1 ))
render "$HERE/connect.xml.in" "$d/connect.xml" N="$N_CONNECT" RATE="$CONNECT_RATE" TOPIC="$TOPIC" HOLD_S="$CONNECT_HOLD" \
  MAXUSERS="$((N_CONNECT + 100))" PORT=0 LOAD_S="$((arrival + CONNECT_HOLD + 60))" ARRIVAL_S="$arrival"
echo "== connect storm, Tsung: $N_CONNECT at $CONNECT_RATE/s"
start_broker "$d" || exit 1
sed -i "s|port=\"0\"|port=\"$PORT\"|" "$d/connect.xml"
run_tsung "$d" "$d/connect.xml" || status=1
stop_broker; sleep 5

d="$ROOT/$RAW/connect-loadgen"; mkdir -p "$d"
echo "== connect storm, loadgen"
start_broker "$d" || exit 1
CONNECT_LG="connect -n $N_CONNECT --connect-rate $CONNECT_RATE --topics 1 --joins-per-conn 1 --duration $CONNECT_HOLD --source-ips $LG_IPS"
# shellcheck disable=SC2086
timeout -k 10 "$RUN_LIMIT" "$LG" $CONNECT_LG --url "ws://127.0.0.1:$PORT/socket/websocket" --server-pid "$BROKER_PID" \
  --deadline "$RUN_LIMIT" --quiet --label crosscheck-connect --out "$d/report.json" >"$d/loadgen.out" 2>&1 || status=1
stop_broker; sleep 5

# ---- fan-out ----
d="$ROOT/$RAW/fanout-tsung"; mkdir -p "$d"
arrival=$(( (N_FANOUT + FANOUT_CONNECT_RATE - 1) / FANOUT_CONNECT_RATE * 3 / 2 + 1 ))
msgs=$(awk -v r="$FANOUT_RATE" -v d="$FANOUT_DURATION" 'BEGIN { print int(r * d) }')
interval=$(awk -v r="$FANOUT_RATE" 'BEGIN { printf "%.3f", 1 / r }')
pub_start=$((arrival + 2))
hold=$((pub_start + FANOUT_DURATION + 5))
render "$HERE/fanout.xml.in" "$d/fanout.xml" N="$N_FANOUT" RATE="$FANOUT_CONNECT_RATE" TOPIC="$TOPIC" HOLD_S="$hold" \
  MAXUSERS="$((N_FANOUT + 100))" PORT=0 LOAD_S="$((hold + arrival + 60))" ARRIVAL_S="$arrival" PUB_START_S="$pub_start" \
  MSGS="$msgs" PUB_INTERVAL_S="$interval" PAD="$PAD" PADSTR="$pad_str"
echo "== fan-out, Tsung: $N_FANOUT subscribers, $msgs broadcasts"
start_broker "$d" || exit 1
sed -i "s|port=\"0\"|port=\"$PORT\"|" "$d/fanout.xml"
run_tsung "$d" "$d/fanout.xml" || status=1
stop_broker; sleep 5

d="$ROOT/$RAW/fanout-loadgen"; mkdir -p "$d"
echo "== fan-out, loadgen"
start_broker "$d" || exit 1
FANOUT_LG="fanout -n $N_FANOUT --topics 1 --publishers 1 --rate $FANOUT_RATE --duration $FANOUT_DURATION --connect-rate $FANOUT_CONNECT_RATE --payload-bytes $LG_PAYLOAD --drain 5 --source-ips $LG_IPS"
# shellcheck disable=SC2086
timeout -k 10 "$RUN_LIMIT" "$LG" $FANOUT_LG --url "ws://127.0.0.1:$PORT/socket/websocket" --server-pid "$BROKER_PID" \
  --deadline "$RUN_LIMIT" --quiet --label crosscheck-fanout --out "$d/report.json" >"$d/loadgen.out" 2>&1 || status=1
stop_broker

# ---- compare ----
rm -rf "$RAW"/*/tsung-logs
cat >"$RAW/params.json" <<JSON
{"date": "$(date -u +%Y-%m-%d)", "broker_bin": "$(basename "$BROKER")", "broker_build": "$BUILD_NOTE",
 "tsung_version": "$(tsung -v 2>&1 | grep -o '[0-9][0-9.]*' | head -1)", "tsung_fd_limit": $(ulimit -n), "raw_dir": "$RAW",
 "connect": {"n": $N_CONNECT, "rate": $CONNECT_RATE, "hold_s": $CONNECT_HOLD, "topic": "$TOPIC", "loadgen_cmd": "loadgen $CONNECT_LG"},
 "fanout": {"n": $N_FANOUT, "connect_rate": $FANOUT_CONNECT_RATE, "rate": $FANOUT_RATE, "duration_s": $FANOUT_DURATION, "msgs": $msgs,
            "interval_s": $interval, "pad": $PAD, "topic": "$TOPIC", "publishers": 1, "loadgen_cmd": "loadgen $FANOUT_LG"}}
JSON
python3 "$HERE/analyze.py" "$RAW" "$OUT/crosscheck.md" "$OUT/crosscheck.json" || status=1
exit $status
