#pragma once
// Vectorisable elementary functions for hot loops. Written as plain scalar
// code (no libm call, no branch) so that GCC vectorises a loop calling them;
// each stands next to its std:: reference in tests/unit/fast_math_test.cpp
// with a max-ULP bound.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace kvq {

// exp(x) for float, max error 2 ULP against std::exp on [kFastExpMin, 88]
// (tested). Below kFastExpMin it returns exactly 0 (also for -inf, which is
// what a masked softmax score needs); above 88 it returns exp(88). NaN input
// gives an unspecified finite value: callers pass finite or -inf scores.
//
// Cody-Waite range reduction: n = round(x / ln2), r = x - n * ln2 with ln2
// split into a 9-bit head (n * kLn2Hi is exact) and a tail,
// |r| <= ln2 / 2; exp(r) by the Cephes degree-7 polynomial
// 1 + r + r^2 (c0 + c1 r + ... + c5 r^5); the result is exp(r) with n added
// to its exponent field. kFastExpMin keeps 2^n normal (n >= -124).
inline constexpr float kFastExpMin = -86.0f;
inline constexpr float kFastExpMax = 88.0f;

// a * b + c, fused (one rounding) where the target has FMA: the polynomial
// then costs one instruction per term. The ULP bound holds either way.
inline float MulAdd(float a, float b, float c) {
#if defined(__FMA__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

inline float FastExp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  // 1.5 * 2^23: adding it rounds to an integer (round to nearest even) and
  // leaves that integer in the low mantissa bits.
  constexpr float kRoundMagic = 12582912.0f;
  const float xc = std::min(std::max(x, kFastExpMin), kFastExpMax);
  const float shifted = MulAdd(xc, kLog2e, kRoundMagic);
  const float n = shifted - kRoundMagic;
  const int32_t ni = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kRoundMagic);
  const float r = MulAdd(-n, kLn2Lo, MulAdd(-n, kLn2Hi, xc));
  float p = 1.9875691500e-4f;
  p = MulAdd(p, r, 1.3981999507e-3f);
  p = MulAdd(p, r, 8.3334519073e-3f);
  p = MulAdd(p, r, 4.1665795894e-2f);
  p = MulAdd(p, r, 1.6666665459e-1f);
  p = MulAdd(p, r, 5.0000001201e-1f);
  p = MulAdd(p, r * r, r) + 1.0f;
  const float scaled = std::bit_cast<float>(std::bit_cast<int32_t>(p) +
                                            static_cast<int32_t>(static_cast<uint32_t>(ni) << 23));
  return x < kFastExpMin ? 0.0f : scaled;
}

// SiLU(x) = x * sigmoid(x) = x / (1 + exp(-x)). For x < -86, exp(-x)
// saturates at exp(88) and the result is a correctly signed value below
// 1e-36 in magnitude, where the exact one would be even smaller.
inline float Silu(float x) { return x / (1.0f + FastExp(-x)); }

// Array forms for hot loops, in SIMD lanes on the best target of the CPU
// (the same formulas; MulAdd is fused where the target has FMA, so a lane
// may differ from the scalar function by an ULP within the same bounds).
// y[i] = FastExp(x[i] - shift); y may equal x.
void FastExpShifted(const float* x, float shift, float* y, int64_t n);
// gate[i] = Silu(gate[i]) * up[i].
void SiluGate(float* gate, const float* up, int64_t n);

}  // namespace kvq
