#pragma once
// Vectorisable elementwise math for the hot loops (softmax, SiLU). Plain
// arithmetic with no library calls, so the compiler turns loops over these
// into SIMD code.
#include <cmath>
#include <cstdint>
#include <cstring>

namespace kvq {

// exp(x) for float: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and the
// Cephes degree-6 polynomial for exp(r); 2^n is built in the exponent bits.
// Max error about 2 ulp over the normal range (tested against std::exp).
// Returns 0 below -87.3 (where the result would be subnormal) and +inf above
// 88.72; NaN propagates.
inline float FastExp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  const float clamped = std::fmin(std::fmax(x, -87.3f), 88.72f);
  const float n = std::floor(clamped * kLog2e + 0.5f);
  float r = clamped - n * kLn2Hi;
  r = r - n * kLn2Lo;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * r2 + r + 1.0f;
  // n is in [-126, 128]; split the scale in two so n = 128 does not overflow
  // the exponent field before the multiply.
  const auto ni = static_cast<int32_t>(n);
  const int32_t half = ni >> 1;
  uint32_t b1 = static_cast<uint32_t>(half + 127) << 23;
  uint32_t b2 = static_cast<uint32_t>(ni - half + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &b1, 4);
  std::memcpy(&s2, &b2, 4);
  y = y * s1 * s2;
  y = x < -87.3f ? 0.0f : y;
  return x != x ? x : y;
}

// SiLU(x) = x * sigmoid(x) = x / (1 + exp(-x)).
inline float Silu(float x) { return x / (1.0f + FastExp(-x)); }

}  // namespace kvq
