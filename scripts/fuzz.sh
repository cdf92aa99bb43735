#!/usr/bin/env bash
# Builds the libFuzzer targets (the `fuzz` preset: clang, ASan + UBSan) and
# runs each for a bounded time over its seeds (fuzz/corpus/<target>/).
#
#   scripts/fuzz.sh                 every target, FUZZ_SECONDS (60) each
#   scripts/fuzz.sh config plan     only these targets
#   FUZZ_SECONDS=600 FUZZ_JOBS=1 scripts/fuzz.sh safetensors
#
# FUZZ_JOBS targets run side by side (default: the number of cores). New
# inputs the fuzzer finds go to build/fuzz/work/<target>/ (not the repo),
# crash inputs to build/fuzz/findings/<target>/, logs to build/fuzz/logs/.
# Exits 1 when any target found something: reproduce with
#   build/fuzz/fuzz/fuzz_<target> build/fuzz/findings/<target>/crash-...
# then fix, and keep the input in tests/data/fuzz-regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
# A fixed seed makes a CI run repeatable; FUZZ_SEED=0 lets libFuzzer pick one.
FUZZ_SEED=${FUZZ_SEED:-1}
# Inputs may grow to 256 KiB: deep enough to pass every nesting-depth limit
# (64 levels of JSON) many times over, and every header-length bound.
FUZZ_MAX_LEN=${FUZZ_MAX_LEN:-262144}
FUZZ_JOBS=${FUZZ_JOBS:-$(nproc)}
BUILD=build/fuzz

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(ls fuzz/corpus)
fi

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc)"

mkdir -p "$BUILD/logs"
run_one() {
  local target=$1 work=$BUILD/work/$1 findings=$BUILD/findings/$1
  mkdir -p "$work" "$findings"
  # -timeout: an input running longer is a hang; -rss_limit_mb: a runaway
  # allocation; both are findings like a crash. Sanitizer reports abort.
  if UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$BUILD/fuzz/fuzz_$target" -max_total_time="$FUZZ_SECONDS" -seed="$FUZZ_SEED" -timeout=20 -rss_limit_mb=2048 \
      -max_len="$FUZZ_MAX_LEN" \
      -print_final_stats=1 -artifact_prefix="$findings/" "$work" "fuzz/corpus/$target" \
      >"$BUILD/logs/$target.log" 2>&1; then
    echo "fuzz $target: ok, $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$BUILD/logs/$target.log" | grep -o '[0-9]*$') runs in ${FUZZ_SECONDS} s"
  else
    echo "fuzz $target: FINDING, see $BUILD/logs/$target.log and $findings/"
    return 1
  fi
}
export -f run_one
export BUILD FUZZ_SECONDS FUZZ_SEED FUZZ_MAX_LEN

status=0
printf '%s\n' "${targets[@]}" | xargs -P "$FUZZ_JOBS" -I{} bash -c 'run_one {}' || status=1
exit $status
