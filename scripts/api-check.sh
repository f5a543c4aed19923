#!/usr/bin/env bash
# Checks the HTTP API against docs/openapi.json with schemathesis (property-based: requests
# generated from the document, valid and invalid; every response must have a documented status,
# content type, headers and body schema, no 5xx, invalid data must be refused and valid data
# accepted, and a missing or wrong API key must get 401/403).
#
# Builds nothing: runs ${CARGO_TARGET_DIR:-target}/debug/broker (`cargo build -p broker` first).
# Starts it on 127.0.0.1:0 with --no-demo and a random 24-byte API key, runs schemathesis with
# the key as `Authorization: Bearer`, then with the `X-Api-Key` alternative, and stops it.
# Bounded: at most API_CHECK_EXAMPLES (50) cases per operation and phase, and a `timeout` on
# each run (a few seconds normally; well under a minute on 2 cores).
#
# schemathesis (4.x, from PyPI) is installed if missing: `python3 -m pip install`, or, where pip
# refuses a system-wide install (Debian's PEP 668 "externally-managed-environment"), into a venv
# at $TARGET_DIR/api-check-venv. `scripts/api-check.sh --install` only installs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
SPEC="schemathesis>=4.32,<5"
VENV="$TARGET_DIR/api-check-venv"

# A Python that imports schemathesis 4.x.
has_st() { "$1" -c 'import sys, schemathesis; sys.exit(schemathesis.__version__.split(".")[0] != "4")' 2>/dev/null; }
find_python() {
  for py in python3 "$VENV/bin/python"; do
    if has_st "$py"; then PY="$py"; return 0; fi
  done
  return 1
}
install_st() {
  echo "installing $SPEC"
  if python3 -m pip install --quiet --disable-pip-version-check "$SPEC" && has_st python3; then
    return 0
  fi
  echo "pip refused a system-wide install; using a venv at $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$SPEC"
}
find_python || { install_st && find_python; } || { echo "schemathesis could not be installed"; exit 1; }
if [ "${1:-}" = "--install" ]; then
  exit 0
fi

BIN="$TARGET_DIR/debug/broker"
[ -x "$BIN" ] || { echo "$BIN is missing: run cargo build -p broker first"; exit 1; }
WORK="$(mktemp -d)"
BROKER_PID=
cleanup() {
  if [ -n "$BROKER_PID" ]; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

KEY="$("$PY" -c 'import secrets; print(secrets.token_hex(12))')" # 24 bytes
"$BIN" --listen 127.0.0.1:0 --no-demo --api-key "$KEY" >"$WORK/stdout" 2>"$WORK/stderr" &
BROKER_PID=$!
ADDR=
for _ in $(seq 100); do
  line="$(head -n1 "$WORK/stdout")"
  case "$line" in "listening on "*) ADDR="${line#listening on }"; break ;; esac
  kill -0 "$BROKER_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$ADDR" ]; then
  echo "the broker did not start:"; cat "$WORK/stderr"; exit 1
fi
echo "broker at $ADDR"

CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance
CHECKS=$CHECKS,response_schema_conformance,negative_data_rejection,positive_data_acceptance
CHECKS=$CHECKS,missing_required_header,ignored_auth,allow_header_conformance,unsupported_method
# Runs in $WORK: schemathesis and Hypothesis keep caches in the working directory.
st() {
  local limit="$1"; shift
  (cd "$WORK" && timeout --kill-after=5 "$limit" "$PY" -c \
    'import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis(prog_name="schemathesis"))' \
    run "$ROOT/docs/openapi.json" --url "http://$ADDR/api" --checks "$CHECKS" \
    --generation-with-security-parameters false --generation-database none \
    --request-timeout 10 --no-color "$@")
}
"$PY" -c 'import schemathesis; print("schemathesis", schemathesis.__version__)'
status=0
echo "-- Authorization: Bearer"
st 60 -H "Authorization: Bearer $KEY" --max-examples "${API_CHECK_EXAMPLES:-50}" || status=1
echo "-- X-Api-Key"
st 30 -H "X-Api-Key: $KEY" --max-examples 10 || status=1
if ! kill -0 "$BROKER_PID" 2>/dev/null; then
  echo "the broker exited during the run:"; cat "$WORK/stderr"; status=1
fi
exit $status
