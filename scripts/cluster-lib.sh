# Shared by the cluster scripts (sourced, not run): free ports, a private redis-server, and
# waiting for broker nodes to answer.

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_redis LOG: a private redis-server (nothing on disk) on a free port; sets RPORT and
# REDIS_PID and returns once it answers PING.
start_redis() {
  RPORT=$(free_port)
  redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no >"$1" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "redis-server on $RPORT did not answer" >&2
  return 1
}

# wait_nodes PORT...: until every node's /healthz answers (at most 10 s each).
wait_nodes() {
  for p in "$@"; do for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/healthz" >/dev/null && break; sleep 0.1; done; done
}
