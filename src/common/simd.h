#pragma once
// Portable fixed-width vectors (GCC/Clang vector extensions) for the few
// reductions the compiler does not vectorise on its own. Lane order is fixed,
// so results do not depend on the target; min/max/abs are exact in any order.
#include <cstdint>
#include <cstring>

namespace kvq::simd {

typedef float F8 __attribute__((vector_size(32)));
typedef double D8 __attribute__((vector_size(64)));
typedef int32_t I8 __attribute__((vector_size(32)));

inline F8 LoadF8(const float* p) {
  F8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline D8 ToD8(F8 v) { return __builtin_convertvector(v, D8); }
inline F8 Abs(F8 v) {
  I8 bits;
  std::memcpy(&bits, &v, sizeof v);
  bits &= 0x7fffffff;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}
// Same semantics as std::max / std::min (a < b ? b : a), lane by lane.
inline F8 Max(F8 a, F8 b) { return a < b ? b : a; }
inline F8 Min(F8 a, F8 b) { return b < a ? b : a; }

}  // namespace kvq::simd
