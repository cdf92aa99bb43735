// The quantizers' rounding steps in lanes (quant/rounding_lanes-inl.h,
// common/half-inl.h) against plain scalar code, on every SIMD target the CPU
// has: std::round, iq4_nl's nearest level as the reference quantizer finds
// it (a binary search, then a comparison of two float differences), and
// fp16 rounding and widening (kvq/common/half.h). Every float of the binades
// where the answers change, both signs, plus zeros, subnormals, infinities,
// NaN and random bit patterns.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "unit/rounding_lanes_test.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "common/half-inl.h"
#include "quant/rounding_lanes-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {

// y[i] = op(x[i]) for n floats, whole vectors and a lane-sized tail.
template <class Op>
void ApplyLanes(const float* x, float* y, size_t n, Op op) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(op(d, hn::LoadU(d, x + i)), d, y + i);
  if (i < n) {
    HWY_ALIGN float buffer[hn::MaxLanes(d)] = {};
    std::copy(x + i, x + n, buffer);
    hn::Store(op(d, hn::Load(d, buffer)), d, buffer);
    std::copy(buffer, buffer + (n - i), y + i);
  }
}

void RoundHalfAwayArray(const float* x, float* y, size_t n) {
  ApplyLanes(x, y, n, [](auto d, auto v) HWY_ATTR { return RoundHalfAway(d, v); });
}

void RoundEvenArray(const float* x, float* y, size_t n) {
  ApplyLanes(x, y, n, [](auto d, auto v) HWY_ATTR { return RoundEven(d, v); });
}

void Iq4NlLevelArray(const float* x, float* y, size_t n) {
  ApplyLanes(x, y, n, [](auto d, auto v) HWY_ATTR { return Iq4NlLevelLanes(d, v); });
}

void RoundToHalfArray(const float* x, float* y, size_t n) {
  ApplyLanes(x, y, n, [](auto d, auto v) HWY_ATTR { return RoundToHalfLanes(d, v); });
}

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "kvq/common/half.h"
#include "kvq/common/random.h"
#include "kvq/quant/kernels.h"
#include "test_util.h"

namespace kvq {
namespace {

HWY_EXPORT(RoundHalfAwayArray);
HWY_EXPORT(RoundEvenArray);
HWY_EXPORT(Iq4NlLevelArray);
HWY_EXPORT(RoundToHalfArray);

using ArrayFn = void (*)(const float*, float*, size_t);

// The reference quantizer's search (kernels.cpp), written out.
constexpr const int8_t* kLevels = kIq4NlLevels;

float ReferenceLevel(float a) {
  if (a <= kLevels[0]) return kLevels[0];
  if (a >= kLevels[15]) return kLevels[15];
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (a < kLevels[mid]) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return a - kLevels[hi - 1] < kLevels[hi] - a ? kLevels[hi - 1] : kLevels[hi];
}

bool SameBits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

// Whether y is the scalar result expected: the same bits, or any NaN where
// a NaN is expected (payloads differ between hardware and scalar code).
bool Matches(float expected, float y) {
  return std::isnan(expected) ? std::isnan(y) : SameBits(y, expected);
}

// Counts the inputs where the lanes (fn(), dispatched) and the scalar
// expectation differ on some SIMD target; the first five are reported. The
// inputs go in chunks, each run on every target in turn.
template <class Expect>
struct Comparison {
  ArrayFn (*fn)();  // The dispatched function of the pinned target.
  Expect expect;
  int64_t checked = 0, wrong = 0;
  std::vector<float> x, expected, y;

  void Check() {
    expected.resize(x.size());
    y.resize(x.size());
    for (size_t k = 0; k < x.size(); ++k) expected[k] = expect(x[k]);
    test::ForEachSimdTarget([&](const std::string&) {
      fn()(x.data(), y.data(), x.size());
      for (size_t k = 0; k < x.size(); ++k) {
        if (!Matches(expected[k], y[k]) && wrong++ < 5) {
          ADD_FAILURE() << std::hexfloat << x[k] << " -> " << y[k] << ", not " << expected[k];
        }
      }
    });
    checked += static_cast<int64_t>(x.size());
    x.clear();
  }
  void Add(uint32_t bits) {
    x.push_back(std::bit_cast<float>(bits));
    if (x.size() == 1 << 16) Check();
  }
  // Every float with biased exponent in [lo, hi), both signs; under
  // emulation (test::Emulated) every 61st and each binade's last float.
  static uint32_t BinadeStep() { return test::Emulated() ? 61 : 1; }
  void Binades(uint32_t lo, uint32_t hi) {
    const uint32_t step = BinadeStep();
    for (const uint32_t sign : {0u, 0x80000000u}) {
      for (uint32_t b = lo << 23; b < hi << 23; b += step) Add(sign | b);
      for (uint32_t e = lo + 1; e <= hi; ++e) Add(sign | ((e << 23) - 1));
    }
    Check();
  }
  // Zeros, subnormals, infinities, NaNs, the largest floats and 2^20 random
  // bit patterns; an odd count, so that the tail code runs too.
  void Specials() {
    for (const uint32_t b : {0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x7f800000u,
                             0xff800000u, 0x7fc00000u, 0xffc00001u, 0x7f7fffffu, 0xff7fffffu}) {
      Add(b);
    }
    SplitMix64 rng(3);
    for (int i = 0; i < (1 << 20) + 3; ++i) Add(static_cast<uint32_t>(rng.Next()));
    Check();
  }
};

template <class Expect>
Comparison<Expect> Compare(ArrayFn (*fn)(), Expect expect) {
  return Comparison<Expect>{fn, expect, 0, 0, {}, {}, {}};
}

TEST(RoundingLanes, RoundHalfAwayEqualsStdRound) {
  auto check = Compare([] { return HWY_DYNAMIC_DISPATCH(RoundHalfAwayArray); },
                       [](float x) { return std::round(x); });
  // |v| in [2^-2, 2^8): the fractions q8_0 meets (|v| <= 127); [2^22, 2^24):
  // where the ulp grows to 1/2 and 1.
  check.Binades(127 - 2, 127 + 8);
  check.Binades(127 + 22, 127 + 24);
  check.Specials();
  EXPECT_EQ(check.wrong, 0);
  EXPECT_GT(check.checked, 200'000'000 / check.BinadeStep());
}

TEST(RoundingLanes, RoundEvenEqualsNearbyint) {
  auto check = Compare([] { return HWY_DYNAMIC_DISPATCH(RoundEvenArray); },
                       [](float x) { return std::nearbyint(x); });
  // Below 1/2, the ties of [1/2, 2^8), and where the ulp grows to 1.
  check.Binades(127 - 2, 127 + 8);
  check.Binades(127 + 22, 127 + 24);
  check.Specials();
  EXPECT_EQ(check.wrong, 0);
}

TEST(RoundingLanes, Iq4NlLevelEqualsTheReferenceSearch) {
  auto check = Compare([] { return HWY_DYNAMIC_DISPATCH(Iq4NlLevelArray); }, ReferenceLevel);
  // |a| in [2^-1, 2^8): every midpoint and level, and the inexact
  // differences of small |a|; below that the answer is the middle pair.
  check.Binades(127 - 1, 127 + 8);
  check.Specials();
  EXPECT_EQ(check.wrong, 0);
  EXPECT_GT(check.checked, 150'000'000 / check.BinadeStep());
}

TEST(RoundingLanes, RoundToHalfEqualsFloatToHalf) {
  auto check = Compare([] { return HWY_DYNAMIC_DISPATCH(RoundToHalfArray); },
                       [](float x) { return RoundToHalf(x); });
  // Where fp16 rounds to zero or its smallest subnormals, across the
  // subnormal / normal boundary, a normal binade, and up to where it
  // overflows.
  check.Binades(127 - 26, 127 - 23);
  check.Binades(127 - 15, 127 - 13);
  check.Binades(127 + 3, 127 + 4);
  check.Binades(127 + 15, 127 + 17);
  check.Specials();
  EXPECT_EQ(check.wrong, 0);
}

}  // namespace
}  // namespace kvq
#endif
