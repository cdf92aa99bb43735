#!/usr/bin/env bash
# The robustness jobs of CI (called from .ci/run after `make test`):
#   1. the whole test suite under ASan + UBSan (the asan preset);
#   2. every libFuzzer target for FUZZ_SECONDS (default 60) with sanitizers.
# `make test-arm64` (the kernel tests cross-built for aarch64 under qemu-user)
# is not run here for now: with the quant kernels on Highway its cold cross
# build and the exhaustive sweeps under emulation have not been timed
# against CI's hour yet.
# Prints how long each step took. Any sanitizer report, failing test or
# fuzzer finding fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
scripts/setup.sh

step() {
  local name=$1 start=$SECONDS
  shift
  echo "== $name"
  "$@"
  echo "== $name: $((SECONDS - start)) s"
}

step "asan build" bash -c "cmake --preset asan >/dev/null && cmake --build --preset asan -j $JOBS --target kvq kvq_tests"
step "asan tests" ctest --preset asan -j "$JOBS"
step "fuzz (${FUZZ_SECONDS:-60} s per target)" scripts/fuzz.sh
