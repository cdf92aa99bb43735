// Dequantization divides an integer level q (|q| <= 255) by the scale s:
// y = q / s, as the reference system writes it. The divider caps the int
// round trip (vdivps holds it for about 3 cycles per vector); the same
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
//
// The argument needs the multiply-add fused: where the target has none
// (kHasFma false: SSE4, EMU128), every scale needs the division.
//
// Included once per target after <hwy/highway.h> (toggled include guard).
#if defined(KVQ_QUANT_SPLIT_RECIPROCAL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVQ_QUANT_SPLIT_RECIPROCAL_INL_H_
#undef KVQ_QUANT_SPLIT_RECIPROCAL_INL_H_
#else
#define KVQ_QUANT_SPLIT_RECIPROCAL_INL_H_
#endif

#include <hwy/highway.h>

#include <bit>
#include <cstdint>

#include "common/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {

inline constexpr uint32_t kSplitReciprocalExceptions[2] = {
    std::bit_cast<uint32_t>(0x1.a15686p0f) & 0x7fffff,
    std::bit_cast<uint32_t>(0x1.f250c6p0f) & 0x7fffff};
// Biased exponents of 2^-100 and 2^64.
inline constexpr int32_t kSplitReciprocalMinExponent = 127 - 100;
inline constexpr int32_t kSplitReciprocalMaxExponent = 127 + 64;

struct SplitReciprocal {
  float hi = 1, lo = 0;
  bool divide = false;  // s needs the true division.
};

// Lanes whose s needs the true division: all of them without FMA.
template <class D, class V = hn::Vec<D>>
HWY_INLINE hn::Mask<D> NeedsDivision(D d, V s) {
  if constexpr (!kHasFma) {
    (void)s;
    return hn::FirstN(d, hn::Lanes(d));
  } else {
    const hn::RebindToSigned<D> di;
    const auto bits = hn::And(hn::BitCast(di, s), hn::Set(di, 0x7fffffff));
    const auto exponent = hn::ShiftRight<23>(bits);
    const auto significand = hn::And(bits, hn::Set(di, 0x7fffff));
    const auto outside = hn::Or(hn::Lt(exponent, hn::Set(di, kSplitReciprocalMinExponent)),
                                hn::Gt(exponent, hn::Set(di, kSplitReciprocalMaxExponent)));
    const auto exception = hn::Or(
        hn::Eq(significand, hn::Set(di, static_cast<int32_t>(kSplitReciprocalExceptions[0]))),
        hn::Eq(significand, hn::Set(di, static_cast<int32_t>(kSplitReciprocalExceptions[1]))));
    return hn::RebindMask(d, hn::Or(outside, exception));
  }
}

// hi and lo of s in lanes (meaningful only where !NeedsDivision).
template <class D, class V = hn::Vec<D>>
HWY_INLINE void MakeSplitReciprocal(D d, V s, V& hi, V& lo) {
  const V one = hn::Set(d, 1.0f);
  hi = hn::Div(one, s);
  lo = hn::Div(hn::NegMulAdd(s, hi, one), s);
}

// One scale, through the same lane code.
inline SplitReciprocal MakeSplitReciprocal(float s) {
  const hn::CappedTag<float, 1> d;
  auto hi = hn::Zero(d), lo = hn::Zero(d);
  const auto vs = hn::Set(d, s);
  MakeSplitReciprocal(d, vs, hi, lo);
  return {hn::GetLane(hi), hn::GetLane(lo), !hn::AllFalse(d, NeedsDivision(d, vs))};
}

// q / s for integer-valued |q| <= 255 where !NeedsDivision(s), in the lanes
// of keep (+0 in the others); for q = -0 the result may be +0 where the
// division gives -0 (-0 + q * lo is +0 when q * lo is).
template <class V, class M>
HWY_INLINE V SplitReciprocalQuotient(M keep, V q, V hi, V lo) {
  return hn::IfThenElseZero(keep, hn::MulAdd(q, hi, hn::Mul(q, lo)));
}

// The same with the division's -0 for q = -0: q's sign bit or-ed in (for
// q != 0 the signs already agree). One more operation.
template <class D, class V = hn::Vec<D>, class M>
HWY_INLINE V SignedSplitReciprocalQuotient(D d, M keep, V q, V hi, V lo) {
  const V sign = hn::And(q, hn::Set(d, -0.0f));
  return hn::IfThenElseZero(keep, hn::Or(hn::MulAdd(q, hi, hn::Mul(q, lo)), sign));
}

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#endif  // KVQ_QUANT_SPLIT_RECIPROCAL_INL_H_
