#!/usr/bin/env bash
# The whole test suite: Rust unit + wire tests, the phoenix.js conformance suite (Node), the HTTP
# API against docs/openapi.json (schemathesis), and a short loadgen smoke run. Needs cargo,
# node/npm and python3; installs the npm packages and schemathesis if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== module layering (no import cycles)"
python3 scripts/module-cycles.py broker/src loadgen/src tracker/src benches/src

echo "== cargo build (workspace, tests, examples)"
cargo build --workspace --all-targets

echo "== cargo test"
cargo test --workspace

echo "== phoenix.js conformance (node --test)"
if [ ! -d tests/js/node_modules ]; then
  (cd tests/js && npm ci --no-audit --no-fund)
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export BROKER_BIN="$TARGET_DIR/debug/broker"
export CONFORMANCE_BIN="$TARGET_DIR/debug/examples/conformance"
(cd tests/js && npm test)

echo "== seed apps in headless Chromium (tests/browser)"
cargo build -p apps
if [ ! -d tests/browser/node_modules ]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi
(cd tests/browser && APPS_BIN_DIR="$TARGET_DIR/debug" npm test)

echo "== HTTP API against docs/openapi.json (schemathesis)"
scripts/api-check.sh

if [ -x scripts/loadgen-smoke.sh ]; then
  echo "== loadgen smoke"
  scripts/loadgen-smoke.sh
fi
