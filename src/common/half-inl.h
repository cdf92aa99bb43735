// fp16 <-> float in lanes, equal to kvq/common/half.h's HalfToFloat and
// FloatToHalf on every target. F16C (AVX2, AVX-512), NEON and SVE convert
// exactly; Highway 1.0.3's emulation (SSE4, EMU128, SCALAR) truncates when
// narrowing and widens fp16 infinities and NaNs to finite floats, so those
// targets convert by hand here.
//
// Included once per target after <hwy/highway.h> (toggled include guard).
#if defined(KVQ_COMMON_HALF_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVQ_COMMON_HALF_INL_H_
#undef KVQ_COMMON_HALF_INL_H_
#else
#define KVQ_COMMON_HALF_INL_H_
#endif

#include <hwy/highway.h>

#include <cstdint>
#include <limits>

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The hardware conversions: F16C on x86 (AVX2 and up), every SIMD target of
// A64. The portable fallback targets (SCALAR, EMU128) emulate them, and
// Highway 1.0's emulation neither keeps infinities nor rounds to
// subnormals: the bit arithmetic below serves them, as it does SSE4.
#if (HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2 && !defined(HWY_DISABLE_F16C)) || \
    (HWY_ARCH_ARM_A64 && HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128)
#define KVQ_NATIVE_HALF 1
#else
#define KVQ_NATIVE_HALF 0
#endif

// The Lanes(d) fp16 values at p (any alignment), widened exactly.
template <class D>
HWY_INLINE hn::Vec<D> LoadHalfLanes(D d, const uint16_t* p) {
  const hn::Rebind<uint16_t, D> d16;
#if KVQ_NATIVE_HALF
  const hn::Rebind<hwy::float16_t, D> dh;
  return hn::PromoteTo(d, hn::BitCast(dh, hn::LoadU(d16, p)));
#else
  // Exponent and significand shifted into place and rebiased; infinities
  // and NaNs rebiased once more, subnormals normalised by a float
  // subtraction (exact).
  const hn::RebindToUnsigned<D> du;
  const auto h = hn::PromoteTo(du, hn::LoadU(d16, p));
  const auto shifted = hn::ShiftLeft<13>(hn::And(h, hn::Set(du, 0x7fff)));
  const auto exponent = hn::And(shifted, hn::Set(du, 0x0f800000));
  const auto rebiased = hn::Add(shifted, hn::Set(du, (127 - 15) << 23));
  const auto special = hn::Add(rebiased, hn::Set(du, (128 - 16) << 23));
  const auto subnormal =
      hn::BitCast(du, hn::Sub(hn::BitCast(d, hn::Add(rebiased, hn::Set(du, 1 << 23))),
                              hn::BitCast(d, hn::Set(du, 113 << 23))));
  auto bits = hn::IfThenElse(hn::Eq(exponent, hn::Set(du, 0x0f800000)), special, rebiased);
  bits = hn::IfThenElse(hn::Eq(exponent, hn::Zero(du)), subnormal, bits);
  return hn::BitCast(d, hn::Or(bits, hn::ShiftLeft<16>(hn::And(h, hn::Set(du, 0x8000)))));
#endif
}

// Each lane rounded to fp16 and back (FloatToHalf: nearest even, subnormals
// kept, overflow to infinity). By hand: below 2^-14 (fp16 subnormals) adding
// and subtracting 1/2 rounds to a multiple of 2^-24; above, the 13 dropped
// significand bits round to even on the integer bits, a carry into the
// exponent being the right result.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V RoundToHalfLanes(D d, V v) {
#if KVQ_NATIVE_HALF
  const hn::Rebind<hwy::float16_t, D> dh;
  return hn::PromoteTo(d, hn::DemoteTo(dh, v));
#else
  const hn::RebindToUnsigned<D> du;
  const V a = hn::Abs(v);
  const auto bits = hn::BitCast(du, a);
  const V half = hn::Set(d, 0.5f);
  const V subnormal = hn::Sub(hn::Add(a, half), half);
  const auto odd = hn::And(hn::ShiftRight<13>(bits), hn::Set(du, 1));
  const auto normal =
      hn::And(hn::Add(hn::Add(bits, hn::Set(du, 0xfff)), odd), hn::Set(du, ~uint32_t{0x1fff}));
  const V inf = hn::Set(d, std::numeric_limits<float>::infinity());
  V r = hn::IfThenElse(hn::Lt(a, hn::Set(d, 0x1p-14f)), subnormal, hn::BitCast(d, normal));
  r = hn::IfThenElse(hn::Ge(a, hn::Set(d, 65520.0f)), inf, r);  // Rounds to infinity.
  r = hn::IfThenElse(hn::Eq(a, a), r, v);                       // NaN stays NaN.
  return hn::CopySignToAbs(r, v);
#endif
}

#undef KVQ_NATIVE_HALF

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#endif  // KVQ_COMMON_HALF_INL_H_
