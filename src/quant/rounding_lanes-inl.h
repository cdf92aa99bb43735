// Rounding steps of the quantizers in lanes, each equal to the scalar code
// for every float input on every target (tests/unit/rounding_lanes_test.cpp
// checks whole binades and the special values on each target the CPU has).
// Included once per target after <hwy/highway.h>; the include guard toggles
// with HWY_TARGET_TOGGLE, as Highway's own -inl.h do.
#if defined(KVQ_QUANT_ROUNDING_LANES_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVQ_QUANT_ROUNDING_LANES_INL_H_
#undef KVQ_QUANT_ROUNDING_LANES_INL_H_
#else
#define KVQ_QUANT_ROUNDING_LANES_INL_H_
#endif

#include <hwy/highway.h>

#include <cstdint>
#include <limits>

#include "common/half-inl.h"
#include "common/simd-inl.h"
#include "kvq/quant/kernels.h"

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {

// Round to nearest, ties to even (std::nearbyint), signed zeros kept.
// The scalar targets' hn::Round (EMU128, and SCALAR, which GCC before 12.3
// gets instead) adds 1/2 and truncates, which sends the float just below 1/2
// to 1; there |v| + 2^23 - 2^23 rounds instead (exact for |v| < 2^23, and
// larger floats are integers already). The other targets have the
// instruction.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V RoundEven(D d, V v) {
#if HWY_TARGET == HWY_EMU128 || HWY_TARGET == HWY_SCALAR
  const V magic = hn::Set(d, 0x1p23f);
  const V a = hn::Abs(v);
  const V rounded = hn::CopySignToAbs(hn::Sub(hn::Add(a, magic), magic), v);
  return hn::IfThenElse(hn::Lt(a, magic), rounded, v);
#else
  (void)d;
  return hn::Round(v);
#endif
}

// std::max(a, b), signed zeros and NaN included (a < b ? b : a): x86's max
// instruction is that with the operands swapped; NEON's orders -0 below +0.
template <class V>
HWY_INLINE V StdMax(V a, V b) {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_SSSE3
  return hn::Max(b, a);
#else
  return hn::IfThenElse(hn::Lt(a, b), b, a);
#endif
}

// ggml's roundf (half away from zero) as trunc(v + copysign(0.49999997, v)),
// with 0.49999997 the largest float below 1/2: a plain 1/2 would send the
// float just below k + 1/2 up. Equal to std::round but for NaN's payload,
// signed zeros included; three operations where truncating and comparing the
// remainder with 1/2 takes six.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V RoundHalfAway(D d, V v) {
  return hn::Trunc(hn::Add(v, hn::CopySignToAbs(hn::Set(d, 0x1.fffffep-2f), v)));
}

// iq4_nl's level for a (its 16-entry table, ascending). The reference picks
// the index by a binary search and then compares the float differences
// a - t[lo] < t[hi] - a. That equals counting the midpoints
// m_i = (t_i + t_i+1) / 2 with !(a < m_i): near a midpoint both differences
// are exact (|a| >= 4.5 there and the differences below 12.5), and away
// from one their rounding cannot reorder them; a NaN passes every test and
// gets the last level, as in the reference. The midpoints ascend, so the
// last one passed names the level: a chain of selects, whatever the lane
// count.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V Iq4NlLevelLanes(D d, V a) {
  const auto level_at = [](int i) { return static_cast<float>(kIq4NlLevels[i]); };
  V level = hn::Set(d, level_at(0));
  for (int i = 0; i < 15; ++i) {
    const float midpoint = (level_at(i) + level_at(i + 1)) / 2.0f;  // Exact.
    level = hn::IfThenElse(hn::Lt(a, hn::Set(d, midpoint)), level, hn::Set(d, level_at(i + 1)));
  }
  return level;
}

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#endif  // KVQ_QUANT_ROUNDING_LANES_INL_H_
