# Shared by the benchmark scripts (sourced, not run): which release binaries they measure, and
# building them.
#
# release_bins: builds the release broker and loadgen, one package at a time (one command for
# both unifies their features and rebuilds the dependencies), unless SKIP_BUILD=1; a package whose
# binary is given (BROKER_BIN, LOADGEN_BIN: another build, e.g. an older commit's for an A/B) is
# not built. Sets BROKER and LG to the binaries, and fails (status 2) if either is missing.
release_bins() {
  local bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
  if [[ -z "${SKIP_BUILD:-}" ]]; then
    [[ -n "${BROKER_BIN:-}" ]] || cargo build --release -p broker || return 2
    [[ -n "${LOADGEN_BIN:-}" ]] || cargo build --release -p loadgen || return 2
  fi
  BROKER="${BROKER_BIN:-$bin/broker}"
  LG="${LOADGEN_BIN:-$bin/loadgen}"
  [[ -x "$BROKER" && -x "$LG" ]] || { echo "missing binaries: $BROKER, $LG (build them, or set BROKER_BIN / LOADGEN_BIN)" >&2; return 2; }
}
