// The fused int kernels' division-free dequantization (quant/split_reciprocal.h)
// against the division itself: exhaustively over every significand of the
// scale, at exponents across the range it claims.
#include <gtest/gtest.h>

#include "quant/split_reciprocal.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kvq/common/random.h"

namespace kvq {
namespace {

#if defined(__AVX512F__)

// s = (1 + k / 2^23) * 2^exponent for the 16 significands k0 .. k0 + 15.
__m512 Scales(int exponent, uint32_t k0) {
  const __m512i bits =
      _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>((127u + exponent) << 23 | k0)),
                       _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  return _mm512_castsi512_ps(bits);
}

__mmask16 BitsDiffer(__m512 a, __m512 b) {
  return _mm512_cmpneq_epi32_mask(_mm512_castps_si512(a), _mm512_castps_si512(b));
}

// Every significand at the exponent and the levels qs (integer-valued):
// where NeedsDivision is false the split quotient has the division's bits.
// Returns how many significands NeedsDivision flags; *needed counts those
// whose split quotient is off for some q (the flag is not idle).
int CheckBinade(int exponent, const std::vector<float>& qs, int* needed) {
  int flagged = 0;
  for (uint32_t k0 = 0; k0 < (1u << 23); k0 += 16) {
    const __m512 s = Scales(exponent, k0);
    __m512 hi, lo;
    MakeSplitReciprocal(s, hi, lo);
    const __mmask16 divide = NeedsDivision(s);
    __mmask16 off = 0;
    for (const float qv : qs) {
      const __m512 q = _mm512_set1_ps(qv);
      const __m512 exact = _mm512_div_ps(q, s);
      off |= BitsDiffer(SignedSplitReciprocalQuotient(0xffff, q, hi, lo), exact);
      // The unsigned form differs at most in the sign of a zero.
      const __m512 fast = SplitReciprocalQuotient(0xffff, q, hi, lo);
      off |= BitsDiffer(_mm512_abs_ps(fast), _mm512_abs_ps(exact));
    }
    if ((off & ~divide) != 0) {
      const int lane = __builtin_ctz(off & ~divide);
      ADD_FAILURE() << "split quotient differs from the division for s = "
                    << std::bit_cast<float>(std::bit_cast<uint32_t>(1.0f) + k0 + lane) << " * 2^"
                    << exponent;
      return -1;
    }
    flagged += __builtin_popcount(divide);
    *needed += __builtin_popcount(off & divide);
  }
  return flagged;
}

TEST(SplitReciprocal, QuotientEqualsTheDivisionForEverySignificand) {
  // Every level of int2 .. int8 (asymmetric up to 255) with both signs and
  // both zeros, at exponent 0.
  std::vector<float> all;
  for (int q = -255; q <= 255; ++q) all.push_back(static_cast<float>(q));
  all.push_back(-0.0f);
  int needed = 0;
  EXPECT_EQ(CheckBinade(0, all, &needed), 2);  // The two listed exceptions.
  EXPECT_EQ(needed, 2);

  // Elsewhere the odd levels (an even q only shifts the exponent), out to
  // the range's ends: the result scales exactly with s.
  std::vector<float> odd;
  for (int q = 1; q <= 255; q += 2) odd.push_back(static_cast<float>(q));
  for (const int exponent : {-100, -33, 24, 64}) {
    needed = 0;
    EXPECT_EQ(CheckBinade(exponent, odd, &needed), 2) << exponent;
    EXPECT_EQ(needed, 2) << exponent;
  }
}

TEST(SplitReciprocal, ScalesOutsideTheRangeDivide) {
  for (const float s : {0x1p-101f, 0x1.fffffep-101f, 0x1p65f, 1e-40f, 0.0f,
                        std::numeric_limits<float>::infinity()}) {
    EXPECT_TRUE(NeedsDivision(s)) << s;
    EXPECT_EQ(NeedsDivision(_mm512_set1_ps(s)), 0xffff) << s;
  }
  for (const float s : {0x1p-100f, 0x1.fffffep64f, 1.0f, 127.0f / 3.5f}) {
    EXPECT_FALSE(NeedsDivision(s)) << s;
    EXPECT_EQ(NeedsDivision(_mm512_set1_ps(s)), 0) << s;
  }
}

TEST(SplitReciprocal, ScalarEqualsLanes) {
  SplitMix64 rng(7);
  for (int i = 0; i < 10000; ++i) {
    const float s = static_cast<float>(
        std::ldexp(1.0 + rng.Uniform(), static_cast<int>(rng.Next() % 240) - 120));
    const SplitReciprocal scalar = MakeSplitReciprocal(s);
    __m512 hi, lo;
    MakeSplitReciprocal(_mm512_set1_ps(s), hi, lo);
    ASSERT_EQ(std::bit_cast<uint32_t>(scalar.hi), std::bit_cast<uint32_t>(_mm512_cvtss_f32(hi)));
    ASSERT_EQ(std::bit_cast<uint32_t>(scalar.lo), std::bit_cast<uint32_t>(_mm512_cvtss_f32(lo)));
    ASSERT_EQ(scalar.divide, NeedsDivision(_mm512_set1_ps(s)) != 0);
  }
}

#else

TEST(SplitReciprocal, NeedsAvx512) { GTEST_SKIP() << "built without AVX-512"; }

#endif

}  // namespace
}  // namespace kvq
