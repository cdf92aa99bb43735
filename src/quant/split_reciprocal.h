#pragma once
// Dequantization divides an integer level q (|q| <= 255) by the scale s:
// y = q / s, as the reference system writes it. vdivps holds the divider
// for about 3 cycles per vector, which caps the int round trip; the same
// quotient comes from two FMA-unit operations,
//
//   hi = 1 / s,  lo = (1 - s * hi) / s   (each rounded; computed once per s)
//   y  = fma(q, hi, q * lo)              (rounded once, after q * lo)
//
// because hi + lo carries 1/s to about 2^-48 and a quotient q / s (8-bit q,
// 24-bit s) is almost never that close to a rounding boundary: only for two
// significands of s. tests/unit/split_reciprocal_test.cpp checks this
// exhaustively: every significand of s and every odd q <= 255 (an even q
// only shifts the exponent), at exponents -100, -33, 0, 24 and 64; from
// -100 to 64 every quantity above is a normal float and so scales exactly
// with s's exponent. The exceptions are two significands of s (0x1.a15686 with
// q = 199, 0x1.f250c6 with q = 61); they, and s outside [2^-100, 2^65),
// keep the division (NeedsDivision). Scales from fp16 data are below 2^32.
#include "common/avx512.h"

#if defined(__AVX512F__)
#include <bit>
#include <cstdint>

namespace kvq {

struct SplitReciprocal {
  float hi = 1, lo = 0;
  bool divide = false;  // s needs the true division.
};

inline constexpr uint32_t kSplitReciprocalExceptions[2] = {
    std::bit_cast<uint32_t>(0x1.a15686p0f) & 0x7fffff,
    std::bit_cast<uint32_t>(0x1.f250c6p0f) & 0x7fffff};
// Biased exponents of 2^-100 and 2^64.
inline constexpr uint32_t kSplitReciprocalMinExponent = 127 - 100;
inline constexpr uint32_t kSplitReciprocalMaxExponent = 127 + 64;

// Lanes whose s needs the true division.
inline __mmask16 NeedsDivision(__m512 s) {
  const __m512i bits = _mm512_and_si512(_mm512_castps_si512(s), _mm512_set1_epi32(0x7fffffff));
  const __m512i exponent = _mm512_srli_epi32(bits, 23);
  const __m512i significand = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffff));
  const int lo = static_cast<int>(kSplitReciprocalMinExponent);
  const int hi = static_cast<int>(kSplitReciprocalMaxExponent);
  return _mm512_cmplt_epi32_mask(exponent, _mm512_set1_epi32(lo)) |
         _mm512_cmpgt_epi32_mask(exponent, _mm512_set1_epi32(hi)) |
         _mm512_cmpeq_epi32_mask(
             significand, _mm512_set1_epi32(static_cast<int>(kSplitReciprocalExceptions[0]))) |
         _mm512_cmpeq_epi32_mask(
             significand, _mm512_set1_epi32(static_cast<int>(kSplitReciprocalExceptions[1])));
}

// hi and lo of 16 scales.
inline void MakeSplitReciprocal(__m512 s, __m512& hi, __m512& lo) {
  const __m512 one = _mm512_set1_ps(1.0f);
  hi = _mm512_div_ps(one, s);
  lo = _mm512_div_ps(_mm512_fnmadd_ps(s, hi, one), s);
}

// One scale, through the same lane code.
inline bool NeedsDivision(float s) { return (NeedsDivision(_mm512_set1_ps(s)) & 1) != 0; }

inline SplitReciprocal MakeSplitReciprocal(float s) {
  __m512 hi, lo;
  MakeSplitReciprocal(_mm512_set1_ps(s), hi, lo);
  return {_mm512_cvtss_f32(hi), _mm512_cvtss_f32(lo), NeedsDivision(s)};
}

// q / s for integer-valued |q| <= 255 where !NeedsDivision(s), in the lanes
// of keep (+0 in the others); for q = -0 the result may be +0 where the
// division gives -0 (-0 + q * lo is +0 when q * lo is).
inline __m512 SplitReciprocalQuotient(__mmask16 keep, __m512 q, __m512 hi, __m512 lo) {
  return _mm512_maskz_fmadd_ps(keep, q, hi, _mm512_mul_ps(q, lo));
}

// The same with the division's -0 for q = -0: q's sign bit or-ed in (for
// q != 0 the signs already agree). One more operation.
inline __m512 SignedSplitReciprocalQuotient(__mmask16 keep, __m512 q, __m512 hi, __m512 lo) {
  const __m512i y = _mm512_castps_si512(_mm512_fmadd_ps(q, hi, _mm512_mul_ps(q, lo)));
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  // 0xf8: y | (q & sign).
  return _mm512_castsi512_ps(
      _mm512_maskz_ternarylogic_epi32(keep, y, _mm512_castps_si512(q), sign, 0xf8));
}

}  // namespace kvq
#endif
