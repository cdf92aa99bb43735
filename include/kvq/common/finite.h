#pragma once
// NaN / Inf detection for the numerics guards (weights as they are widened,
// the residual stream at layer boundaries, dumps as they are read). A float
// is NaN or +-Inf exactly when its 8 exponent bits are all ones; the scan
// takes the maximum exponent field over a block with integer operations, a
// loop GCC vectorises, and looks at single values only in a block that hits.
#include <bit>
#include <cstdint>

namespace kvq {

// Index of the first NaN or Inf in x[0, n), or n when all are finite.
inline int64_t FirstNonFinite(const float* x, int64_t n) {
  constexpr uint32_t kExponent = 0x7F800000u;
  constexpr int64_t kBlock = 1024;
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t end = begin + kBlock < n ? begin + kBlock : n;
    uint32_t top = 0;
    for (int64_t i = begin; i < end; ++i) {
      const uint32_t e = std::bit_cast<uint32_t>(x[i]) & kExponent;
      top = e > top ? e : top;
    }
    if (top != kExponent) continue;
    for (int64_t i = begin; i < end; ++i) {
      if ((std::bit_cast<uint32_t>(x[i]) & kExponent) == kExponent) return i;
    }
  }
  return n;
}

}  // namespace kvq
