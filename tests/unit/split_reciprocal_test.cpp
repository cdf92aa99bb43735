// The fused int kernels' division-free dequantization
// (quant/split_reciprocal-inl.h) against the division itself, on every SIMD
// target the CPU has: exhaustively over every significand of the scale, at
// exponents across the range it claims, where the target has FMA; where it
// has not, that every scale takes the division.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "unit/split_reciprocal_test.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "quant/split_reciprocal-inl.h"

#ifndef KVQ_SPLIT_RECIPROCAL_TEST_ONCE_
#define KVQ_SPLIT_RECIPROCAL_TEST_ONCE_
namespace kvq {
struct BinadeResult {
  int flagged = 0;  // Significands NeedsDivision flags.
  int needed = 0;   // Flagged ones whose split quotient is off for some q.
  int wrong = 0;    // Unflagged ones whose split quotient is off: must be 0.
  float first_wrong = 0;
};
}  // namespace kvq
#endif

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {

// Every significand s = (1 + k / 2^23) * 2^exponent, k = first, first +
// step, ..., and the n integer-valued levels qs: where NeedsDivision is false
// the split quotient has the division's bits (the unsigned form may differ
// in the sign of a zero).
BinadeResult CheckBinade(int exponent, uint32_t step, const float* qs, size_t n) {
  const hn::ScalableTag<float> d;
  const hn::RebindToUnsigned<decltype(d)> du;
  const uint32_t lanes = static_cast<uint32_t>(hn::Lanes(d));
  const auto one = hn::FirstN(d, lanes);
  const auto lane_steps = hn::Mul(hn::Iota(du, 0), hn::Set(du, step));
  BinadeResult result;
  for (uint32_t k0 = 0; k0 < (1u << 23); k0 += lanes * step) {
    const auto bits =
        hn::Add(hn::Set(du, (127u + static_cast<uint32_t>(exponent)) << 23 | k0), lane_steps);
    const auto s = hn::BitCast(d, bits);
    auto hi = hn::Zero(d), lo = hn::Zero(d);
    MakeSplitReciprocal(d, s, hi, lo);
    const auto divide = NeedsDivision(d, s);
    auto off = hn::Ne(s, s);  // None.
    for (size_t i = 0; i < n; ++i) {
      const auto q = hn::Set(d, qs[i]);
      const auto exact = hn::BitCast(du, hn::Div(q, s));
      const auto signed_fast = hn::BitCast(du, SignedSplitReciprocalQuotient(d, one, q, hi, lo));
      const auto fast = hn::Abs(SplitReciprocalQuotient(one, q, hi, lo));
      off = hn::Or(off, hn::RebindMask(d, hn::Ne(signed_fast, exact)));
      off = hn::Or(off, hn::Ne(fast, hn::Abs(hn::Div(q, s))));
    }
    result.flagged += static_cast<int>(hn::CountTrue(d, divide));
    result.needed += static_cast<int>(hn::CountTrue(d, hn::And(off, divide)));
    const auto wrong = hn::AndNot(divide, off);
    if (!hn::AllFalse(d, wrong)) {
      if (result.wrong == 0) {
        result.first_wrong = hn::GetLane(hn::Compress(s, wrong));  // The first such scale.
      }
      result.wrong += static_cast<int>(hn::CountTrue(d, wrong));
    }
  }
  return result;
}

// The scalar form against the lanes for n scales.
int ScalarDiffersFromLanes(const float* scales, size_t n) {
  const hn::CappedTag<float, 1> d1;
  int differ = 0;
  for (size_t i = 0; i < n; ++i) {
    const SplitReciprocal scalar = MakeSplitReciprocal(scales[i]);
    const auto s = hn::Set(d1, scales[i]);
    auto hi = hn::Zero(d1), lo = hn::Zero(d1);
    MakeSplitReciprocal(d1, s, hi, lo);
    const bool divide = !hn::AllFalse(d1, NeedsDivision(d1, s));
    if (std::bit_cast<uint32_t>(scalar.hi) != std::bit_cast<uint32_t>(hn::GetLane(hi)) ||
        std::bit_cast<uint32_t>(scalar.lo) != std::bit_cast<uint32_t>(hn::GetLane(lo)) ||
        scalar.divide != divide) {
      ++differ;
    }
  }
  return differ;
}

// How many of the n scales NeedsDivision flags.
int CountNeedsDivision(const float* scales, size_t n) {
  const hn::CappedTag<float, 1> d1;
  int count = 0;
  for (size_t i = 0; i < n; ++i) {
    count += !hn::AllFalse(d1, NeedsDivision(d1, hn::Set(d1, scales[i])));
  }
  return count;
}

bool HasFma() { return kHasFma; }

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "kvq/common/random.h"
#include "kvq/common/simd_target.h"
#include "test_util.h"

namespace kvq {
namespace {

HWY_EXPORT(CheckBinade);
HWY_EXPORT(ScalarDiffersFromLanes);
HWY_EXPORT(CountNeedsDivision);
HWY_EXPORT(HasFma);

// The exhaustive check (every significand) runs on the best target; the
// others with FMA compute the same IEEE operations and check every 61st
// significand, so that an AVX-512 machine does not run it twice in full.
// Under emulation (test::Emulated) every target checks every 61st.
TEST(SplitReciprocal, QuotientEqualsTheDivisionForEverySignificand) {
  const std::string best = SimdTarget();
  test::ForEachSimdTarget([&](const std::string& target) {
    if (!HWY_DYNAMIC_DISPATCH(HasFma)()) return;  // ScalesWithoutFmaDivide's case.
    const uint32_t step = target == best && !test::Emulated() ? 1 : 61;
    // Every level of int2 .. int8 (asymmetric up to 255) with both signs and
    // both zeros, at exponent 0.
    std::vector<float> all;
    for (int q = -255; q <= 255; ++q) all.push_back(static_cast<float>(q));
    all.push_back(-0.0f);
    auto check = [&](int exponent, const std::vector<float>& qs) {
      const auto r = HWY_DYNAMIC_DISPATCH(CheckBinade)(exponent, step, qs.data(), qs.size());
      EXPECT_EQ(r.wrong, 0) << "split quotient differs from the division for s = " << r.first_wrong;
      if (step == 1) {
        EXPECT_EQ(r.flagged, 2) << exponent;  // The two listed exceptions.
        EXPECT_EQ(r.needed, 2) << exponent;   // And they are needed.
      }
    };
    check(0, all);
    // Elsewhere the odd levels (an even q only shifts the exponent), out to
    // the range's ends: the result scales exactly with s.
    std::vector<float> odd;
    for (int q = 1; q <= 255; q += 2) odd.push_back(static_cast<float>(q));
    for (const int exponent : {-100, -33, 24, 64}) check(exponent, odd);
  });
}

TEST(SplitReciprocal, ScalesWithoutFmaDivide) {
  SplitMix64 rng(5);
  std::vector<float> scales;
  for (int i = 0; i < 100000; ++i) {
    scales.push_back(static_cast<float>(
        std::ldexp(1.0 + rng.Uniform(), static_cast<int>(rng.Next() % 200) - 100)));
  }
  int without_fma = 0;
  test::ForEachSimdTarget([&](const std::string&) {
    if (HWY_DYNAMIC_DISPATCH(HasFma)()) return;
    ++without_fma;
    EXPECT_EQ(HWY_DYNAMIC_DISPATCH(CountNeedsDivision)(scales.data(), scales.size()),
              static_cast<int>(scales.size()));
  });
  // x86 always has SSE4 or the scalar fallback among its targets, unless the
  // build compiles the kernels for AVX2 only (the sanitizer presets).
  if (HWY_ARCH_X86 && (HWY_TARGETS & (HWY_SSE4 | HWY_BASELINE_SCALAR)) != 0) {
    EXPECT_GT(without_fma, 0);
  }
}

TEST(SplitReciprocal, ScalesOutsideTheRangeDivide) {
  const std::vector<float> outside = {
      0x1p-101f, 0x1.fffffep-101f, 0x1p65f, 1e-40f, 0.0f, std::numeric_limits<float>::infinity()};
  const std::vector<float> inside = {0x1p-100f, 0x1.fffffep64f, 1.0f, 127.0f / 3.5f};
  test::ForEachSimdTarget([&](const std::string&) {
    EXPECT_EQ(HWY_DYNAMIC_DISPATCH(CountNeedsDivision)(outside.data(), outside.size()),
              static_cast<int>(outside.size()));
    const bool fma = HWY_DYNAMIC_DISPATCH(HasFma)();
    EXPECT_EQ(HWY_DYNAMIC_DISPATCH(CountNeedsDivision)(inside.data(), inside.size()),
              fma ? 0 : static_cast<int>(inside.size()));
  });
}

TEST(SplitReciprocal, ScalarEqualsLanes) {
  SplitMix64 rng(7);
  std::vector<float> scales;
  for (int i = 0; i < 10000; ++i) {
    scales.push_back(static_cast<float>(
        std::ldexp(1.0 + rng.Uniform(), static_cast<int>(rng.Next() % 240) - 120)));
  }
  test::ForEachSimdTarget([&](const std::string&) {
    EXPECT_EQ(HWY_DYNAMIC_DISPATCH(ScalarDiffersFromLanes)(scales.data(), scales.size()), 0);
  });
}

}  // namespace
}  // namespace kvq
#endif
