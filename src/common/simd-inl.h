// Per-target facts and elementary functions shared by the Highway kernels.
// Included from a kernel file after <hwy/highway.h>, once per target (the
// include guard toggles with HWY_TARGET_TOGGLE, as Highway's own -inl.h do).
#if defined(KVQ_COMMON_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVQ_COMMON_SIMD_INL_H_
#undef KVQ_COMMON_SIMD_INL_H_
#else
#define KVQ_COMMON_SIMD_INL_H_
#endif

#include <hwy/highway.h>

#include "kvq/common/fast_math.h"

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Whether hn::MulAdd rounds once. SSE4 and the scalar targets emulate it as a
// multiply and an add (two roundings), as does 32-bit Arm; code whose
// exactness argument needs a fused multiply-add must not use it there.
#if HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3 || HWY_TARGET == HWY_EMU128 || \
    HWY_TARGET == HWY_SCALAR || (HWY_ARCH_ARM && !HWY_ARCH_ARM_A64)
inline constexpr bool kHasFma = false;
#else
inline constexpr bool kHasFma = true;
#endif

// Architectural vector registers: register-blocked kernels size their
// accumulator tiles to fit (AVX-512, A64 NEON and SVE: 32; AVX2, SSE4: 16).
#if (HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3) || HWY_ARCH_ARM_A64 || HWY_ARCH_RVV
inline constexpr int kVectorRegisters = 32;
#else
inline constexpr int kVectorRegisters = 16;
#endif

// FastExp (kvq/common/fast_math.h) in lanes: the same range reduction and
// polynomial; hn::MulAdd is fused where the target has FMA, so results may
// differ from the scalar FastExp by an ULP, within the same 2-ULP bound
// (tests/unit/fast_math_test.cpp checks every target).
template <class D, class V = hn::Vec<D>>
HWY_INLINE V FastExpLanes(D d, V x) {
  const hn::RebindToSigned<D> di;
  const V round_magic = hn::Set(d, 12582912.0f);
  const V xc = hn::Min(hn::Max(x, hn::Set(d, kFastExpMin)), hn::Set(d, kFastExpMax));
  const V shifted = hn::MulAdd(xc, hn::Set(d, 1.44269504088896341f), round_magic);
  const V n = hn::Sub(shifted, round_magic);
  const auto ni = hn::Sub(hn::BitCast(di, shifted), hn::BitCast(di, round_magic));
  const V r =
      hn::NegMulAdd(n, hn::Set(d, -2.12194440e-4f), hn::NegMulAdd(n, hn::Set(d, 0.693359375f), xc));
  V p = hn::Set(d, 1.9875691500e-4f);
  p = hn::MulAdd(p, r, hn::Set(d, 1.3981999507e-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 8.3334519073e-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 4.1665795894e-2f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.6666665459e-1f));
  p = hn::MulAdd(p, r, hn::Set(d, 5.0000001201e-1f));
  p = hn::Add(hn::MulAdd(p, hn::Mul(r, r), r), hn::Set(d, 1.0f));
  const V scaled = hn::BitCast(d, hn::Add(hn::BitCast(di, p), hn::ShiftLeft<23>(ni)));
  return hn::IfThenZeroElse(hn::Lt(x, hn::Set(d, kFastExpMin)), scaled);
}

// fp16 bits -> float, exact for every code on every target (HalfToFloat in
// lanes). x86's F16C converts natively; elsewhere the bits are rebiased
// here, because Highway 1.0.3's emulated PromoteTo (SSE4, EMU128, SCALAR)
// turns exponent 31 (Inf, NaN) into finite values.
template <class DF>
HWY_INLINE hn::Vec<DF> HalfToFloatLanes(DF df, hn::Vec<hn::Rebind<uint16_t, DF>> bits) {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  const hn::Rebind<hwy::float16_t, DF> df16;
  return hn::PromoteTo(df, hn::BitCast(df16, bits));
#else
  const hn::RebindToUnsigned<DF> du;
  const hn::RebindToSigned<DF> di;
  const auto h = hn::PromoteTo(du, bits);
  const auto sign = hn::ShiftLeft<16>(hn::And(h, hn::Set(du, 0x8000u)));
  const auto exponent = hn::And(hn::ShiftRight<10>(h), hn::Set(du, 0x1fu));
  const auto mantissa = hn::And(h, hn::Set(du, 0x3ffu));
  const auto normal =
      hn::Or(hn::ShiftLeft<23>(hn::Add(exponent, hn::Set(du, 112u))), hn::ShiftLeft<13>(mantissa));
  const auto inf_nan = hn::Or(hn::Set(du, 0x7f800000u), hn::ShiftLeft<13>(mantissa));
  // mantissa * 2^-24 is exact in float (and 0 for a zero).
  const auto subnormal = hn::BitCast(du, hn::Mul(hn::ConvertTo(df, hn::BitCast(di, mantissa)),
                                                 hn::Set(df, 5.9604644775390625e-8f)));
  const auto magnitude =
      hn::IfThenElse(hn::Eq(exponent, hn::Zero(du)), subnormal,
                     hn::IfThenElse(hn::Eq(exponent, hn::Set(du, 0x1fu)), inf_nan, normal));
  return hn::BitCast(df, hn::Or(sign, magnitude));
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#endif  // KVQ_COMMON_SIMD_INL_H_
