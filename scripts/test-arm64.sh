#!/usr/bin/env bash
# `make test-arm64`: the kernel tests (tests/CMakeLists.txt, KVQ_KERNEL_TESTS)
# cross-built for aarch64 with Debian's g++-aarch64-linux-gnu against the
# arm64 packages (scripts/setup-arm64.sh installs what is missing), then run
# under qemu-user twice:
#   1. QEMU_CPU=max: 512-bit SVE vectors; targets SVE2, SVE, NEON and the
#      scalar fallback;
#   2. QEMU_CPU=max,sve-default-vector-length=16: 128-bit SVE vectors, where
#      Highway adds SVE2_128 (the shape of Neoverse N2-class cores).
# Each run first prints the targets and checks that the emulated CPU offers
# the expected SIMD ones (SimdTarget.OffersTheExpectedTargets), so that every
# kernel test, looping over test::ForEachSimdTarget, covers each of them.
# The ctest preset sets KVQ_TEST_EMULATED=1 (see test::Emulated()) and
# OMP_WAIT_POLICY=PASSIVE: OpenMP threads spinning at barriers under
# emulation on a shared machine made one parallel region cost about 6 ms.
# KVQ_ARM64_TARGETS=ci (CI's job) compiles only the NEON and SVE targets and
# runs once, with 512-bit SVE.
# Prints how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}

step() {
  local name=$1 start=$SECONDS
  shift
  echo "== $name"
  "$@"
  echo "== $name: $((SECONDS - start)) s"
}

quiet() { "$@" >/dev/null; }

run_under() {
  local cpu=$1 targets=$2
  export QEMU_CPU=$cpu KVQ_EXPECT_SIMD_TARGETS=$targets
  qemu-aarch64 build/arm64/tests/kvq_tests --gtest_filter=SimdTarget.OffersTheExpectedTargets --gtest_brief=1
  ctest --preset arm64 -j "$JOBS"
}

step "arm64 setup" scripts/setup-arm64.sh
if [ "${KVQ_ARM64_TARGETS:-all}" = ci ]; then
  step "arm64 configure (NEON, SVE)" quiet cmake --preset arm64 \
    "-DKVQ_DISABLED_SIMD_TARGETS=HWY_SVE2|HWY_SVE2_128|HWY_SVE_256|HWY_EMU128|HWY_SCALAR"
  step "arm64 build" cmake --build --preset arm64 -j "$JOBS"
  step "arm64 tests, qemu -cpu max (512-bit SVE)" run_under max "SVE,NEON"
else
  step "arm64 configure" quiet cmake --preset arm64 -DKVQ_DISABLED_SIMD_TARGETS=
  step "arm64 build" cmake --build --preset arm64 -j "$JOBS"
  step "arm64 tests, qemu -cpu max (512-bit SVE)" run_under max "SVE2,SVE,NEON"
  step "arm64 tests, qemu -cpu max, 128-bit SVE" \
    run_under max,sve-default-vector-length=16 "SVE2_128,SVE2,SVE,NEON"
fi
