#pragma once
// Two of ggml's scalar rounding steps, 16 lanes at a time, each equal to the
// scalar code for every float input (tests/unit/rounding_lanes_test.cpp
// checks whole binades and the special values; both were also checked once
// on all 2^32 bit patterns).
#include "common/avx512.h"

#if defined(__AVX512F__)
#include <limits>

namespace kvq {

// roundf (half away from zero) as trunc(v + copysign(0.49999997, v)), with
// 0.49999997 the largest float below 1/2: a plain 1/2 would send the float
// just below k + 1/2 up. Equal to std::round but for NaN's payload, signed
// zeros included; three operations where truncating and comparing the
// remainder with 1/2 takes six.
[[gnu::always_inline]] inline __m512 RoundHalfAway(__m512 v) {
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  const __m512i below_half = _mm512_castps_si512(_mm512_set1_ps(0x1.fffffep-2f));
  // 0xea: (v & sign) | below_half.
  const __m512 nudge = _mm512_castsi512_ps(
      _mm512_ternarylogic_epi32(_mm512_castps_si512(v), sign, below_half, 0xea));
  return _mm512_roundscale_ps(_mm512_add_ps(v, nudge), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
}

// iq4_nl's level for a (its 16-entry table, ascending). The reference picks
// the index by a binary search and then compares the float differences
// a - t[lo] < t[hi] - a. That equals counting the midpoints
// m_i = (t_i + t_i+1) / 2 with !(a < m_i): near a midpoint both differences
// are exact (|a| >= 4.5 there and the differences below 12.5), and away
// from one their rounding cannot reorder them; a NaN passes every test and
// gets the last level, as in the reference. The count comes from four
// permute steps of a binary search.
[[gnu::always_inline]] inline __m512 Iq4NlLevelLanes(__m512 a) {
  const __m512 midpoints =
      _mm512_setr_ps(-115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f, 7.0f, 19.0f,
                     31.5f, 45.5f, 61.0f, 79.0f, 101.0f, std::numeric_limits<float>::infinity());
  const __m512 levels =
      _mm512_setr_ps(-127.0f, -104.0f, -83.0f, -65.0f, -49.0f, -35.0f, -22.0f, -10.0f, 1.0f, 13.0f,
                     25.0f, 38.0f, 53.0f, 69.0f, 89.0f, 113.0f);
  __m512i count = _mm512_setzero_si512();
  for (int step = 8; step >= 1; step /= 2) {  // The largest count in 0..15 that passes.
    const __m512i candidate = _mm512_add_epi32(count, _mm512_set1_epi32(step));
    const __m512 m =
        _mm512_permutexvar_ps(_mm512_sub_epi32(candidate, _mm512_set1_epi32(1)), midpoints);
    count = _mm512_mask_mov_epi32(count, _mm512_cmp_ps_mask(a, m, _CMP_NLT_UQ), candidate);
  }
  return _mm512_permutexvar_ps(count, levels);
}

}  // namespace kvq
#endif
