// ggml's rounding steps in lanes (quant/rounding_lanes.h) against plain
// scalar code: std::round, and iq4_nl's nearest level as the reference
// quantizer finds it (a binary search, then a comparison of two float
// differences). Every float of the binades where the answers change, both
// signs, plus zeros, subnormals, infinities, NaN and random bit patterns.
#include <gtest/gtest.h>

#include "quant/rounding_lanes.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kvq/common/random.h"

namespace kvq {
namespace {

#if defined(__AVX512F__)

// The reference quantizer's table and search (kernels.cpp), written out.
constexpr int8_t kLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                1,    13,   25,  38,  53,  69,  89,  113};

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

// Calls check(16 bit patterns) for bits [first, last), last - first a
// multiple of 16.
template <class Check>
void ForBits(uint32_t first, uint32_t last, Check&& check) {
  for (uint64_t b = first; b < last; b += 16) {
    const __m512i bits =
        _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(b)),
                         _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    check(bits);
  }
}

// Every float with biased exponent in [lo, hi), both signs.
template <class Check>
void ForBinades(uint32_t lo, uint32_t hi, Check&& check) {
  for (uint32_t sign : {0u, 0x80000000u}) ForBits(sign | lo << 23, sign | hi << 23, check);
}

std::vector<uint32_t> SpecialBits() {
  std::vector<uint32_t> bits = {0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x7f800000u,
                                0xff800000u, 0x7fc00000u, 0xffc00001u, 0x7f7fffffu, 0xff7fffffu};
  SplitMix64 rng(3);
  while (bits.size() % 16 != 0 || bits.size() < 1 << 20) {
    bits.push_back(static_cast<uint32_t>(rng.Next()));
  }
  return bits;
}

template <class Check>
void ForSpecials(Check&& check) {
  const std::vector<uint32_t> bits = SpecialBits();
  for (size_t i = 0; i < bits.size(); i += 16) {
    check(_mm512_loadu_si512(bits.data() + i));
  }
}

// Each of 16 lanes of lanes(x) against the scalar expectation: same(x, y)
// is false where they differ; the first five differences are reported.
template <class Lanes, class Same>
struct Comparison {
  Lanes lanes;
  Same same;
  int64_t checked = 0, wrong = 0;

  void operator()(__m512i bits) {
    alignas(64) float x[16], y[16];
    _mm512_store_ps(x, _mm512_castsi512_ps(bits));
    _mm512_store_ps(y, lanes(_mm512_castsi512_ps(bits)));
    for (int k = 0; k < 16; ++k) {
      ++checked;
      if (!same(x[k], y[k]) && wrong++ < 5) {
        ADD_FAILURE() << std::hexfloat << x[k] << " -> " << y[k];
      }
    }
  }
};

TEST(RoundingLanes, RoundHalfAwayEqualsStdRound) {
  Comparison check{[](__m512 v) { return RoundHalfAway(v); },
                   [](float x, float y) {
                     return std::isnan(x) ? std::isnan(y)
                                          : std::bit_cast<uint32_t>(y) ==
                                                std::bit_cast<uint32_t>(std::round(x));
                   }};
  // |v| in [2^-2, 2^8): the fractions q8_0 meets (|v| <= 127); [2^22, 2^24):
  // where the ulp grows to 1/2 and 1.
  ForBinades(127 - 2, 127 + 8, check);
  ForBinades(127 + 22, 127 + 24, check);
  ForSpecials(check);
  EXPECT_EQ(check.wrong, 0);
  EXPECT_GT(check.checked, 200'000'000);
}

TEST(RoundingLanes, Iq4NlLevelEqualsTheReferenceSearch) {
  Comparison check{[](__m512 a) { return Iq4NlLevelLanes(a); },
                   [](float a, float level) { return level == ReferenceLevel(a); }};
  // |a| in [2^-1, 2^8): every midpoint and level, and the inexact
  // differences of small |a|; below that the answer is the middle pair.
  ForBinades(127 - 1, 127 + 8, check);
  ForSpecials(check);
  EXPECT_EQ(check.wrong, 0);
  EXPECT_GT(check.checked, 150'000'000);
}

#else
TEST(RoundingLanes, NeedsAvx512) { GTEST_SKIP() << "the lane code needs AVX-512"; }
#endif

}  // namespace
}  // namespace kvq
