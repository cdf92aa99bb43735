#!/usr/bin/env bash
# The checks CI runs after `make test` (called from .ci/run):
#   1. clang-format and clang-tidy (the checked-in .clang-format/.clang-tidy);
#   2. the whole suite under ASan + UBSan (the asan preset);
#   3. every libFuzzer target for FUZZ_SECONDS (default 60) with sanitizers;
#   4. the kernel tests cross-built for aarch64 and run under qemu-user on
#      the NEON and SVE targets (`make test-arm64` builds every Arm target and
#      runs them with two SVE vector lengths; CI builds these two and runs
#      them once). Its cold cross build is the longest step, so it runs when
#      the run so far leaves it room within the hour (KVQ_CI_START, set by
#      .ci/run; ARM64_START_BEFORE_MIN, default 40) and says so when not.
# Prints how long each step took. Any finding, warning, sanitizer report or
# failing test fails the run.
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

step "format check" make --no-print-directory format-check
step "clang-tidy" make --no-print-directory tidy
step "asan build" bash -c "cmake --preset asan >/dev/null &&
  cmake --build --preset asan -j $JOBS --target kvq kvq_tests"
step "asan tests" ctest --preset asan -j "$JOBS"
step "fuzz (${FUZZ_SECONDS:-60} s per target)" scripts/fuzz.sh
elapsed_min=$((($(date +%s) - ${KVQ_CI_START:-$(date +%s)}) / 60))
if [ "$elapsed_min" -lt "${ARM64_START_BEFORE_MIN:-40}" ]; then
  step "arm64 kernel tests (NEON, SVE)" env KVQ_ARM64_TARGETS=ci scripts/test-arm64.sh
else
  echo "== arm64 kernel tests: not run, CI is at $elapsed_min min (run them with make test-arm64)"
fi
