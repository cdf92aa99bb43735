// The orthonormal Walsh-Hadamard butterfly of one row in lanes, shared by
// HadamardButterflyRows (array_ops.cpp) and the fused +had kernel
// (quant/fused/int.cpp). Each output is the same float operation on the same
// operands as in the plain loop (stage h pairs value j with j + h: a + b low,
// a - b high, stages in increasing h, then each value times norm), so the
// results are bit for bit the same on every target.
//
// Included once per target after <hwy/highway.h> (toggled include guard).
#if defined(KVQ_COMMON_HADAMARD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVQ_COMMON_HADAMARD_INL_H_
#undef KVQ_COMMON_HADAMARD_INL_H_
#else
#define KVQ_COMMON_HADAMARD_INL_H_
#endif

#include <hwy/highway.h>

#include "common/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {

// v [n] in place: the butterfly's stages h < Lanes(d) inside each vector
// (lane j pairs with lane j ^ h, through a lane permutation), stages h >=
// Lanes(d) between whole vectors, then the scaling by norm. n is a power of
// two and a multiple of Lanes(d).
template <class D>
HWY_INLINE void HadamardRowInLanes(D d, float* HWY_RESTRICT v, int n, float norm) {
  const hn::RebindToSigned<D> di;
  const int lanes = static_cast<int>(hn::Lanes(d));
  for (int h = 1; h < lanes; h *= 2) {
    const auto partner_index = hn::IndicesFromVec(d, hn::Xor(hn::Iota(di, 0), hn::Set(di, h)));
    const auto high = hn::RebindMask(d, hn::TestBit(hn::Iota(di, 0), hn::Set(di, h)));
    for (int i = 0; i < n; i += lanes) {
      const auto a = hn::LoadU(d, v + i);
      const auto partner = hn::TableLookupLanes(a, partner_index);
      hn::StoreU(hn::IfThenElse(high, hn::Sub(partner, a), hn::Add(a, partner)), d, v + i);
    }
  }
  for (int h = lanes; h < n; h *= 2) {
    for (int i = 0; i < n; i += 2 * h) {
      for (int j = i; j < i + h; j += lanes) {
        const auto a = hn::LoadU(d, v + j), b = hn::LoadU(d, v + j + h);
        hn::StoreU(hn::Add(a, b), d, v + j);
        hn::StoreU(hn::Sub(a, b), d, v + j + h);
      }
    }
  }
  const auto scale = hn::Set(d, norm);
  for (int i = 0; i < n; i += lanes) hn::StoreU(hn::Mul(hn::LoadU(d, v + i), scale), d, v + i);
}

#if !HWY_HAVE_SCALABLE
// HadamardRowInLanes for a row of kVectors whole vectors, held in registers
// through every stage and stored once: the same operations on the same
// operands.
template <int kVectors, class D>
HWY_INLINE void HadamardRowInRegisters(D d, float* HWY_RESTRICT v, float norm) {
  const hn::RebindToSigned<D> di;
  using VF = hn::Vec<D>;
  constexpr int kLanes = static_cast<int>(hn::MaxLanes(d));
  VF a[kVectors];
  for (int i = 0; i < kVectors; ++i) a[i] = hn::LoadU(d, v + i * kLanes);
  for (int h = 1; h < kLanes; h *= 2) {
    const auto partner_index = hn::IndicesFromVec(d, hn::Xor(hn::Iota(di, 0), hn::Set(di, h)));
    const auto high = hn::RebindMask(d, hn::TestBit(hn::Iota(di, 0), hn::Set(di, h)));
    for (int i = 0; i < kVectors; ++i) {
      const VF partner = hn::TableLookupLanes(a[i], partner_index);
      a[i] = hn::IfThenElse(high, hn::Sub(partner, a[i]), hn::Add(a[i], partner));
    }
  }
  for (int h = 1; h < kVectors; h *= 2) {
    for (int i = 0; i < kVectors; i += 2 * h) {
      for (int j = i; j < i + h; ++j) {
        const VF lo = a[j], hi = a[j + h];
        a[j] = hn::Add(lo, hi);
        a[j + h] = hn::Sub(lo, hi);
      }
    }
  }
  const VF scale = hn::Set(d, norm);
  for (int i = 0; i < kVectors; ++i) hn::StoreU(hn::Mul(a[i], scale), d, v + i * kLanes);
}
#endif

// HadamardRowInLanes, in registers where the row is 4, 8 or 16 vectors (on
// fixed-width targets: head_dim 64 and 128 on x86).
template <class D>
HWY_INLINE void HadamardRow(D d, float* HWY_RESTRICT v, int n, float norm) {
#if !HWY_HAVE_SCALABLE
  constexpr int kLanes = static_cast<int>(hn::MaxLanes(d));
  if (n == 4 * kLanes) return HadamardRowInRegisters<4>(d, v, norm);
  if (n == 8 * kLanes) return HadamardRowInRegisters<8>(d, v, norm);
  if (n == 16 * kLanes) return HadamardRowInRegisters<16>(d, v, norm);
#endif
  HadamardRowInLanes(d, v, n, norm);
}

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#endif  // KVQ_COMMON_HADAMARD_INL_H_
