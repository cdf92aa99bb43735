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

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#endif  // KVQ_COMMON_SIMD_INL_H_
