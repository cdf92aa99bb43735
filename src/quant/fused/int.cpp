// The fused kernel for int<b> of every granularity: the element math of
// kernels.cpp's IntReference in lanes. Bounds come first in max/min so that equal
// values (signed zeros) give the same operand std::max(q, lo) / std::min(q,
// hi) give.
#include "quant/fused/families.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "quant/fused/int.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <vector>

#include "common/hadamard-inl.h"
#include "quant/fused/loops-inl.h"
#include "quant/rounding_lanes-inl.h"
#include "quant/split_reciprocal-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {
namespace fused {
namespace {

// What an int row does: zero point (asym), truncation, the clamp of q
// (off where the parameters come from the very values, see IntElement),
// whether y is stored, and whether q / s may use the split reciprocal (off
// for rows whose scales change too often to pay for it: Dividing).
struct IntOptions {
  bool asym, trunc, clamp = true, store = true, split = true;
};

constexpr IntOptions Unclamped(IntOptions o) {
  o.clamp = false;
  return o;
}

constexpr IntOptions Dividing(IntOptions o) {
  o.split = false;
  return o;
}

// One set of parameters: s, the offset, keep (1: s is usable; 0: y is the
// offset) and s's split reciprocal (divide where it is not to be used).
struct IntParams {
  float s, offset, keep;
  SplitReciprocal reciprocal;
};

// split: compute s's split reciprocal (two divisions); otherwise the round
// trip divides.
template <bool kAsym>
IntParams MakeParams(float lo, float hi, int levels, bool split = true) {
  const IntScale scale = MakeIntScale(kAsym, lo, hi, levels);
  IntParams p{scale.s, scale.offset, scale.usable ? 1.0f : 0.0f, {}};
  if (split) {
    p.reciprocal = MakeSplitReciprocal(p.s);
  } else {
    p.reciprocal.divide = true;
  }
  // IntElement: -0 + a zero quotient keeps the quotient's sign.
  if (kAsym && p.offset == 0 && std::signbit(p.offset)) p.reciprocal.divide = true;
  return p;
}

// Parameter arrays of a batch of tokens or of a head's channels, one entry
// per token or channel; divide is 1 where s needs the division.
struct IntParamArrays {
  float *s, *offset, *keep, *hi, *lo, *divide;
};

// MakeParams for the N ranges at lo[k], hi[k] (symmetric formats take the
// larger magnitude) into the arrays at k, lane by lane (the
// same IEEE operations, so the same values; kSplit as its split).
template <bool kAsym, bool kSplit>
HWY_INLINE void MakeParamLanes(const float* lo_in, const float* hi_in, int64_t k, float levels,
                               const IntParamArrays& out) {
  const DF df;
  const VF lo = hn::LoadU(df, lo_in + k), hi = hn::LoadU(df, hi_in + k);
  const VF vlevels = hn::Set(df, levels), one = hn::Set(df, 1.0f), zero = hn::Zero(df);
  const VF fmax = hn::Set(df, std::numeric_limits<float>::max());
  VF s, offset;
  MF ok;
  if constexpr (kAsym) {
    s = hn::Div(vlevels, hn::Sub(hi, lo));
    ok = hn::And(hn::And(hn::Ne(hi, lo), hn::Le(hn::Abs(s), fmax)), hn::Gt(s, zero));
    offset = lo;
  } else {
    const VF amax = hn::Max(hn::Abs(lo), hn::Abs(hi));
    s = hn::Div(vlevels, amax);
    ok = hn::And(hn::Ne(amax, zero), hn::Le(hn::Abs(s), fmax));
    offset = zero;
  }
  s = hn::IfThenElse(ok, s, one);
  hn::StoreU(s, df, out.s + k);
  hn::StoreU(offset, df, out.offset + k);
  hn::StoreU(hn::IfThenElseZero(ok, one), df, out.keep + k);
  VF rhi = zero, rlo = zero;
  MF divide = hn::FirstN(df, hn::Lanes(df));
  if constexpr (kSplit) {
    MakeSplitReciprocal(df, s, rhi, rlo);
    divide = NeedsDivision(df, s);
    if constexpr (kAsym) {  // An offset of -0, as in MakeParams.
      const hn::RebindToSigned<DF> di;
      divide = hn::Or(divide, hn::RebindMask(df, hn::Eq(hn::BitCast(di, offset),
                                                        hn::BitCast(di, hn::Set(df, -0.0f)))));
    }
  }
  hn::StoreU(rhi, df, out.hi + k);
  hn::StoreU(rlo, df, out.lo + k);
  hn::StoreU(hn::IfThenElseZero(divide, one), df, out.divide + k);
}

// q = round(x * s) (or (x - offset) * s), clamped to the levels, and y =
// q / s (+ offset), 0 (the offset) where keep is false. divide: some lane's
// s needs the true division (always without FMA, see split_reciprocal-inl.h).
// kInt.clamp = false where the parameters come from the very values being
// quantized (the block's own min / max): then the clamp is a no-op. With
// s = fl(levels / r) for the float range r, |x * s| (or (x - lo) * s, which
// is >= +0) is at most levels * (1 + 2^-23) before rounding, so it rounds to
// at most levels, and a -0 or +0 stays what the clamp would leave.
template <IntOptions kInt>
HWY_INLINE VF IntElement(VF x, VF s, VF offset, VF rhi, VF rlo, MF keep, bool divide, float top) {
  const DF df;
  const VF scaled = kInt.asym ? hn::Mul(hn::Sub(x, offset), s) : hn::Mul(x, s);
  VF q = kInt.trunc ? hn::Trunc(scaled) : RoundEven(df, scaled);
  const bool split = kInt.split && kHasFma && !divide;
  if constexpr (kInt.asym) {
    if constexpr (kInt.clamp) q = hn::Min(hn::Set(df, top), StdMax(q, hn::Zero(df)));
    // A zero quotient's sign shows only through an offset of -0 (MakeParams
    // divides there).
    const VF quotient =
        split ? SplitReciprocalQuotient(hn::FirstN(df, hn::Lanes(df)), q, rhi, rlo) : hn::Div(q, s);
    return hn::IfThenElse(keep, hn::Add(quotient, offset), offset);
  } else {
    if constexpr (kInt.clamp) q = hn::Min(hn::Set(df, top), hn::Max(hn::Set(df, -top), q));
    if (!split) return hn::IfThenElseZero(keep, hn::Div(q, s));
    // Only a stored y needs the -0 of q = -0; the error is the same.
    if constexpr (kInt.store) return SignedSplitReciprocalQuotient(df, keep, q, rhi, rlo);
    return SplitReciprocalQuotient(keep, q, rhi, rlo);
  }
}

// IntElement with one set of parameters for all lanes.
template <IntOptions kInt>
HWY_INLINE VF IntElement(VF x, const IntParams& p, float top) {
  const DF df;
  return IntElement<kInt>(x, hn::Set(df, p.s), hn::Set(df, p.offset), hn::Set(df, p.reciprocal.hi),
                          hn::Set(df, p.reciprocal.lo), hn::Ne(hn::Set(df, p.keep), hn::Zero(df)),
                          p.reciprocal.divide, top);
}

// One token's range from its lanes' min and max (symmetric formats: vhi
// holds max |x|, and so does lo): +0 turns -0 into +0, as kernels.cpp's
// MinMax does.
template <bool kAsym>
HWY_INLINE void StoreRange(VF vlo, VF vhi, float& lo, float& hi) {
  hi = MaxOf(vhi) + 0.0f;
  lo = kAsym ? MinOf(vlo) + 0.0f : hi;
}

// The parameters of a batch of kTokenBatch tokens, one entry per token,
// made N tokens per vector from their ranges (MakeParamLanes).
constexpr int kTokenBatch = 16;
struct TokenBatchParams {
  HWY_ALIGN float scales[kTokenBatch], offsets[kTokenBatch], keeps[kTokenBatch], his[kTokenBatch],
      los[kTokenBatch], divides[kTokenBatch];

  template <bool kAsym, bool kSplit>
  HWY_INLINE void Make(const float* lo, const float* hi, float levels) {
    const IntParamArrays out{scales, offsets, keeps, his, los, divides};
    for (int64_t k = 0; k < kTokenBatch; k += Lanes()) {
      MakeParamLanes<kAsym, kSplit>(lo, hi, k, levels, out);
    }
  }
  IntParams Of(int64_t k) const {
    return {scales[k], offsets[k], keeps[k], {his[k], los[k], divides[k] != 0}};
  }
};

// Int rows from an fp16 source (x a multiple of 2^-24): q = 0 gives y = 0 or
// the offset (an fp16 value), so e = x - y is a multiple of 2^-24; a nonzero
// |y| >= 2^-25 is a multiple of 2^-48, and a smaller one is further than
// 2^-25 from x (x != 0 there, or q would be 0) or, asymmetric with x = 0,
// comes from the cancellation of q / s >= 2^-24 (a multiple of 2^-47)
// against the offset. So e is 0 or at least 2^-48: kTinyErrors = false.

// HasFusedKernel's bound on head_dim / group for g<N>:dim.
constexpr int kMaxGroupsPerRow = 64;

// One set of parameters for every value (tensor scale).
template <IntOptions kInt>
struct IntUniformRow {
  static constexpr bool kFlat = true, kTinyErrors = false;
  IntParams p;
  float top;
  void Begin(int64_t) {}
  HWY_INLINE VF One(int64_t, int, VF x) const { return IntElement<kInt>(x, p, top); }
};

// Parameters per token (g == head_dim), computed kBatch tokens at a time
// when Begin reaches a new batch: each token's range reduced across lanes,
// then the scales' divisions N tokens per vector, as MakeParams does them
// one by one (the same IEEE operations, so the same values). kSquares: the
// batch pass also sums x^2 and max|x| into *totals (at most kFoldTerms terms
// per float lane, then double), so the round trip skips them.
template <IntOptions kInt, Sums kSquares, class Source>
struct IntTokenRow {
  static constexpr bool kAsym = kInt.asym;
  static constexpr bool kFlat = false, kTinyErrors = false;
  static constexpr int kBatch = kTokenBatch;
  Source in;
  int d;
  float levels;
  int64_t end;  // One past the last token this row object sees.
  Totals* totals = nullptr;
  int64_t batch = -1;
  IntParams p{};
  TokenBatchParams params{};

  void Batch(int64_t t0) {
    const DF df;
    const DD dd;
    const int64_t N = Lanes();
    constexpr float kInf = std::numeric_limits<float>::infinity();
    const int64_t count = std::min<int64_t>(kBatch, end - t0);
    HWY_ALIGN float lo[kBatch], hi[kBatch];
    VF amax = hn::Zero(df), sq = hn::Zero(df);
    VD sq_lo = hn::Zero(dd), sq_hi = sq_lo;
    const int vectors = static_cast<int>(d / N);
    int terms = 0;  // Per float lane of sq since the last fold.
    for (int k = 0; k < kBatch; ++k) {
      VF vlo = hn::Set(df, kInf), vhi = hn::Set(df, -kInf);
      if (kSquares == Sums::kHalf && terms + vectors > kFoldTerms) {
        FoldInto(sq, hn::Zero(df), sq_lo, sq_hi);
        sq = hn::Zero(df);
        terms = 0;
      }
      terms += vectors;
      for (int j = 0; k < count && j < d; j += static_cast<int>(N)) {
        const VF x = in.Load((t0 + k) * d + j);
        if (kAsym) {
          vlo = hn::Min(vlo, x);
          vhi = hn::Max(vhi, x);
        } else {
          vhi = hn::Max(vhi, hn::Abs(x));
        }
        AddSquares<kSquares>(x, sq, sq_lo, sq_hi);
      }
      if (kSquares != Sums::kNone && k < count) {
        amax = hn::Max(amax, kAsym ? hn::Max(hn::Abs(vlo), hn::Abs(vhi)) : vhi);
      }
      StoreRange<kAsym>(vlo, vhi, lo[k], hi[k]);
    }
    if constexpr (kSquares == Sums::kHalf) FoldInto(sq, hn::Zero(df), sq_lo, sq_hi);
    if constexpr (kSquares != Sums::kNone) AddSquareSums(sq_lo, sq_hi, amax, *totals);
    params.Make<kAsym, kInt.split>(lo, hi, levels);
    batch = t0;
  }
  HWY_INLINE void Begin(int64_t t) {
    if (batch < 0 || t - batch >= kBatch) Batch(t);
    p = params.Of(t - batch);
  }
  HWY_INLINE VF One(int64_t, int, VF x) const { return IntElement<Unclamped(kInt)>(x, p, levels); }
};

// The per-token int formats for head_dim kDim (64, 128) from an fp16 source
// with error sums (kvq quant's path), as IntTokenRow + RowLoop compute them
// (the same operations per value, so the same y and the same error bounds),
// without the generic loop's per-vector bookkeeping. Per batch of kBatch
// tokens: their ranges, then their round trips. The range pass keeps the
// widened values in an L1 buffer for the round trip: a second widening per
// vector cost more than the store and the reload (measured on AVX-512:
// +20%). Two batches in flight: a batch's scales take three divisions in a
// chain. Four accumulators per sum (vectors v, v + 1, v + 2, v + 3), folded
// into double before a lane holds kFoldTerms terms. Requires Lanes() to
// divide kDim / 4 and kDim / Lanes() <= 4 kFoldTerms (UsesTokenHead).
template <int kDim>
bool UsesTokenHead() {
  const int64_t vectors = kDim / Lanes();
  return vectors % 4 == 0 && vectors <= 4 * kFoldTerms;
}

template <int kDim, Mode kMode, IntOptions kInt, class Source>
void IntTokenHead(const Source& source, int64_t tokens, float levels, Totals& totals) {
  static_assert(kMode.sums == Sums::kHalf && !kMode.store());
  constexpr bool kAsym = kInt.asym;
  constexpr int kBatch = kTokenBatch;
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const DF df;
  const DD dd;
  const int64_t N = Lanes();
  const int64_t vectors = kDim / N;
  const int64_t fold_tokens = kFoldTerms / (vectors / 4);  // Tokens between folds.
  const Source in = source;  // A copy: stores to y cannot change its pointer.
  const VF zero = hn::Zero(df);
  VF sse0 = zero, sse1 = zero, sse2 = zero, sse3 = zero;
  VF sq0 = zero, sq1 = zero, sq2 = zero, sq3 = zero, amax = zero;
  VD sse_lo = hn::Zero(dd), sse_hi = sse_lo, sq_lo = sse_lo, sq_hi = sse_lo;
  struct Slot {
    TokenBatchParams params;
    HWY_ALIGN float xs[kBatch * kDim];
    int count;
  } slots[2];
  auto ranges = [&](int64_t t0, Slot& slot) HWY_ATTR {
    slot.count = static_cast<int>(std::min<int64_t>(kBatch, tokens - t0));
    HWY_ALIGN float lo[kBatch], hi[kBatch];
    for (int k = 0; k < kBatch; ++k) {
      VF vlo = hn::Set(df, kInf), vhi = hn::Set(df, -kInf);
      auto range = [&](int64_t v, VF& sq) HWY_ATTR {
        const VF x = in.Load((t0 + k) * kDim + v * N);
        hn::Store(x, df, slot.xs + k * kDim + v * N);
        if (kAsym) {
          vlo = hn::Min(vlo, x);
          vhi = hn::Max(vhi, x);
        } else {
          vhi = hn::Max(vhi, hn::Abs(x));
        }
        sq = hn::MulAdd(x, x, sq);
      };
      // The tokens past the head's end only keep the folds where they were.
      SweepFour(k < slot.count ? vectors : 0, k, fold_tokens, false, sq0, sq1, sq2, sq3, sq_lo,
                sq_hi, range);
      if (k < slot.count) amax = hn::Max(amax, kAsym ? hn::Max(hn::Abs(vlo), hn::Abs(vhi)) : vhi);
      StoreRange<kAsym>(vlo, vhi, lo[k], hi[k]);
    }
    slot.params.template Make<kAsym, kInt.split>(lo, hi, levels);
  };
  auto round_trip = [&](int64_t, const Slot& slot) HWY_ATTR {
    for (int k = 0; k < slot.count; ++k) {
      const IntParams p = slot.params.Of(k);
      auto one = [&](int64_t v, VF& sse) HWY_ATTR {
        const VF x = hn::Load(df, slot.xs + k * kDim + v * N);
        const VF yv = IntElement<Unclamped(kInt)>(x, p, levels);
        const VF e = hn::Sub(x, yv);
        sse = hn::MulAdd(e, e, sse);
      };
      SweepFour(vectors, k, fold_tokens, k + 1 == slot.count, sse0, sse1, sse2, sse3, sse_lo,
                sse_hi, one);
    }
  };
  TwoBatchesInFlight(tokens, kBatch, slots, ranges, round_trip);
  totals.sse += SumOf(sse_lo, sse_hi);
  AddSquareSums(sq_lo, sq_hi, amax, totals);
}

// The per-token int formats with the Hadamard rotation (+had), any Mode:
// per token, x rotated (HadamardRow, as HadamardRows does it), its
// range, scale, round trip and the rotation back, then y and the error
// against x in the original basis, as QuantizeHead's generic path computes
// them (the same float operations, so the same y). Per batch of kBatch
// tokens: their rotations and ranges into an L1 buffer, then their round
// trips; two batches in flight, as IntTokenHead. The dequantized values
// keep the sign of a zero quotient (kInt.store), which the rotation back
// can show. y after the rotation is no multiple of 2^-48, so errors from an
// fp16 source are scaled by 2^24 before squaring (as Row::kTinyErrors rows).
template <Mode kMode, IntOptions kInt, class Source>
void IntTokenHadamardHead(const Source& source, int64_t tokens, int d, float levels, float* y,
                          Totals& totals) {
  static_assert(kInt.store);
  constexpr Sums kSums = kMode.sums;
  constexpr bool kAsym = kInt.asym;
  constexpr int kBatch = kTokenBatch;
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const DF df;
  const DD dd;
  const int64_t N = Lanes();
  const int vectors = static_cast<int>(d / N);
  const float norm = 1.0f / std::sqrt(static_cast<float>(d));  // As HadamardRows.
  const Source in = source;  // A copy: stores to y cannot change its pointer.
  const VF zero = hn::Zero(df);
  VF sq = zero, sse = zero, amax = zero, check = zero;
  VD sq_lo = hn::Zero(dd), sq_hi = sq_lo, sse_lo = sq_lo, sse_hi = sq_lo;
  struct Slot {
    TokenBatchParams params;
    HWY_ALIGN float rotated[kBatch * kMaxFusedHadamardDim];
    int count;
  } slots[2];
  // Runs add(i, acc) for the vectors of token t in stretches of at most
  // kFoldTerms, each folded into the double lanes lo, hi (kHalf: float lanes
  // hold at most kFoldTerms terms; kDouble adds to lo, hi directly).
  auto sweep = [&](int64_t t, VF& acc, VD& lo, VD& hi, auto&& add) HWY_ATTR {
    for (int v0 = 0; v0 < vectors; v0 += kFoldTerms) {
      const int v1 = std::min(vectors, v0 + kFoldTerms);
      for (int v = v0; v < v1; ++v) add(t * d + v * N, v * N, acc);
      if constexpr (kSums == Sums::kHalf) {
        FoldInto(acc, zero, lo, hi);
        acc = zero;
      }
    }
  };
  auto ranges = [&](int64_t t0, Slot& slot) HWY_ATTR {
    slot.count = static_cast<int>(std::min<int64_t>(kBatch, tokens - t0));
    HWY_ALIGN float lo[kBatch], hi[kBatch];
    for (int k = 0; k < kBatch; ++k) {
      lo[k] = hi[k] = 0;  // Tokens past the head's end: any finite range.
      if (k >= slot.count) continue;
      float* r = slot.rotated + k * d;
      sweep(t0 + k, sq, sq_lo, sq_hi, [&](int64_t i, int64_t j, VF& acc) HWY_ATTR {
        const VF x = in.Load(i);
        hn::Store(x, df, r + j);
        if constexpr (kSums == Sums::kNone) {
          check = hn::Add(check, hn::Sub(x, x));  // NaN from here on if x is not finite.
        } else {
          amax = hn::Max(amax, hn::Abs(x));
          AddSquares<kSums>(x, acc, sq_lo, sq_hi);
        }
      });
      HadamardRow(df, r, d, norm);
      VF vlo = hn::Set(df, kInf), vhi = hn::Set(df, -kInf);
      for (int v = 0; v < vectors; ++v) {
        const VF x = hn::Load(df, r + v * N);
        if (kAsym) {
          vlo = hn::Min(vlo, x);
          vhi = hn::Max(vhi, x);
        } else {
          vhi = hn::Max(vhi, hn::Abs(x));
        }
      }
      StoreRange<kAsym>(vlo, vhi, lo[k], hi[k]);
    }
    slot.params.template Make<kAsym, kInt.split>(lo, hi, levels);
  };
  auto round_trip = [&](int64_t t0, Slot& slot) HWY_ATTR {
    for (int k = 0; k < slot.count; ++k) {
      const IntParams p = slot.params.Of(k);
      float* r = slot.rotated + k * d;
      for (int v = 0; v < vectors; ++v) {
        hn::Store(IntElement<Unclamped(kInt)>(hn::Load(df, r + v * N), p, levels), df, r + v * N);
      }
      HadamardRow(df, r, d, norm);
      if constexpr (kMode.store()) {
        for (int v = 0; v < vectors; ++v) {
          hn::StoreU(hn::Load(df, r + v * N), df, y + (t0 + k) * d + v * N);
        }
      }
      if constexpr (kSums != Sums::kNone) {
        sweep(t0 + k, sse, sse_lo, sse_hi, [&](int64_t i, int64_t j, VF& acc) HWY_ATTR {
          const VF x = in.Load(i), yv = hn::Load(df, r + j);
          if constexpr (kSums == Sums::kHalf) {
            const VF e = hn::Mul(hn::Sub(x, yv), hn::Set(df, kErrorScale));
            acc = hn::MulAdd(e, e, acc);
          } else {
            const VD e_lo = hn::Sub(LowerToDouble(x), LowerToDouble(yv));
            const VD e_hi = hn::Sub(UpperToDouble(x), UpperToDouble(yv));
            sse_lo = hn::MulAdd(e_lo, e_lo, sse_lo);
            sse_hi = hn::MulAdd(e_hi, e_hi, sse_hi);
          }
        });
      }
    }
  };
  TwoBatchesInFlight(tokens, kBatch, slots, ranges, round_trip);
  if constexpr (kSums == Sums::kNone) {
    totals.finite = totals.finite && hn::AllTrue(df, hn::Eq(check, zero));
  } else {
    const double scale =
        kSums == Sums::kHalf ? 1.0 / (static_cast<double>(kErrorScale) * kErrorScale) : 1.0;
    totals.sse += SumOf(sse_lo, sse_hi) * scale;
    AddSquareSums(sq_lo, sq_hi, amax, totals);
  }
}

// Parameters per group of g values along head_dim, computed from the row in
// Begin. g is a multiple of 16. Instantiated Dividing: two more divisions
// per group cost about what they save over g values.
template <IntOptions kInt, class Source>
struct IntGroupDimRow {
  static constexpr bool kAsym = kInt.asym;
  static constexpr bool kFlat = false, kTinyErrors = false;
  Source in;
  int d, g, levels;
  IntParams params[kMaxGroupsPerRow] = {};

  HWY_INLINE void Begin(int64_t t) {
    const DF df;
    const int64_t N = Lanes();
    constexpr float kInf = std::numeric_limits<float>::infinity();
    for (int c0 = 0, k = 0; c0 < d; c0 += g, ++k) {
      const int64_t i0 = t * d + c0;
      VF vlo = hn::Set(df, kInf), vhi = hn::Set(df, -kInf);
      for (int j = 0; j < g; j += static_cast<int>(N)) {
        const VF x = in.Load(i0 + j);
        if (kAsym) {
          vlo = hn::Min(vlo, x);
          vhi = hn::Max(vhi, x);
        } else {
          vhi = hn::Max(vhi, hn::Abs(x));
        }
      }
      if (kAsym) {
        params[k] = MakeParams<true>(MinOf(vlo) + 0.0f, MaxOf(vhi) + 0.0f, levels, kInt.split);
      } else {
        const float amax = MaxOf(vhi);
        params[k] = MakeParams<false>(-amax, amax, levels, kInt.split);
      }
    }
  }
  HWY_INLINE VF One(int64_t, int j, VF x) const {
    return IntElement<kInt>(x, params[j / g], static_cast<float>(levels));
  }
};

// Parameters per channel (channel, g<N>:token), loaded with the values.
// Instantiated Dividing: the scales change from vector to vector, and
// loading a split reciprocal too costs more than the division it saves
// (measured on AVX-512).
template <IntOptions kInt>
struct IntChannelRow {
  static constexpr bool kFlat = false, kTinyErrors = false;
  const float *s, *offset, *keep;
  float top;
  void Begin(int64_t) {}
  HWY_INLINE VF One(int64_t, int j, VF x) const {
    const DF df;
    const VF zero = hn::Zero(df);
    return IntElement<kInt>(x, hn::LoadU(df, s + j), hn::LoadU(df, offset + j), zero, zero,
                            hn::Ne(hn::LoadU(df, keep + j), zero), true, top);
  }
};

// Per-channel min / max of rows [t0, t1) of a [tokens, d] head into lo / hi
// (+0 for -0).
template <class Source>
void ChannelRanges(const Source& in, int64_t t0, int64_t t1, int d, float* lo, float* hi) {
  const DF df;
  const int64_t N = Lanes();
  constexpr float kInf = std::numeric_limits<float>::infinity();
  std::fill(lo, lo + d, kInf);
  std::fill(hi, hi + d, -kInf);
  for (int64_t t = t0; t < t1; ++t) {
    for (int64_t j = 0; j < d; j += N) {
      const VF x = in.Load(t * d + j);
      hn::StoreU(hn::Min(hn::LoadU(df, lo + j), x), df, lo + j);
      hn::StoreU(hn::Max(hn::LoadU(df, hi + j), x), df, hi + j);
    }
  }
  for (int c = 0; c < d; ++c) {
    lo[c] += 0.0f;
    hi[c] += 0.0f;
  }
}

template <Mode kMode, bool kAsym, bool kTrunc, class Source>
void IntHead(const FusedCall& call, const Source& in, Totals& totals) {
  const FormatSpec& f = call.format;
  const HeadStats* stats = call.stats;
  const int64_t tokens = call.tokens;
  const int d = call.head_dim;
  float* y = call.y;
  constexpr IntOptions kInt{kAsym, kTrunc, true, kMode.store()};
  constexpr IntOptions kChannels = Dividing(kInt);
  const int levels = kAsym ? (1 << f.bits) - 1 : (1 << (f.bits - 1)) - 1;
  const float top = static_cast<float>(levels);
  const int64_t n = tokens * d;

  // Per-channel parameters [d] (channel, g<N>:token).
  const size_t channels = static_cast<size_t>(d);
  // The channel rows divide: their split reciprocals go to one scratch array.
  std::vector<float> lo(channels), hi(channels), ps(channels), po(channels), pk(channels),
      no_reciprocal(channels);
  const IntParamArrays channel_params{
      ps.data(),           po.data(), pk.data(), no_reciprocal.data(), no_reciprocal.data(),
      no_reciprocal.data()};
  const IntChannelRow<kChannels> channel_row{ps.data(), po.data(), pk.data(), top};
  // Rows [t0, t1) with the channel ranges in lo / hi.
  auto round_trip = [&](int64_t t0, int64_t t1) HWY_ATTR {
    for (int64_t c = 0; c < d; c += Lanes()) {
      MakeParamLanes<kAsym, kChannels.split>(lo.data(), hi.data(), c, top, channel_params);
    }
    RowLoop<kMode>(in, t0, t1, d, y, totals, channel_row);
  };

  switch (f.granularity) {
    case Granularity::kTensor: {
      float min, max;
      if (stats != nullptr) {
        min = stats->min;
        max = stats->max;
      } else {
        ScanHead<kMode>(in, n, min, max, totals);
      }
      const float amax = stats != nullptr ? stats->amax : std::max(std::fabs(min), std::fabs(max));
      const IntParams p =
          kAsym ? MakeParams<true>(min, max, levels) : MakeParams<false>(-amax, amax, levels);
      if (stats != nullptr) {
        RowLoop<kMode>(in, 0, tokens, d, y, totals, IntUniformRow<kInt>{p, top});
      } else {
        RowLoop<WithoutSquares(kMode)>(in, 0, tokens, d, y, totals,
                                       IntUniformRow<Unclamped(kInt)>{p, top});
      }
      break;
    }
    case Granularity::kChannel:
      if (stats != nullptr) {
        KVQ_CHECK(static_cast<int>(stats->channel_min.size()) == d);
        lo = stats->channel_min;
        hi = stats->channel_max;
      } else {
        ChannelRanges(in, 0, tokens, d, lo.data(), hi.data());
      }
      round_trip(0, tokens);
      break;
    case Granularity::kToken:
      if (f.hadamard) {
        constexpr IntOptions kStored{kAsym, kTrunc, true, true};
        IntTokenHadamardHead<kMode, kStored>(in, tokens, d, top, y, totals);
        break;
      }
      if constexpr (kMode.sums == Sums::kHalf) {
        if (d == 64 && UsesTokenHead<64>()) {
          IntTokenHead<64, kMode, kInt>(in, tokens, top, totals);
          break;
        }
        if (d == 128 && UsesTokenHead<128>()) {
          IntTokenHead<128, kMode, kInt>(in, tokens, top, totals);
          break;
        }
      }
      if (kMode.sums != Sums::kNone && d <= Lanes() * kFoldTerms) {
        IntTokenRow<kInt, kMode.sums, Source> row{in, d, top, tokens, &totals};
        RowLoop<WithoutSquares(kMode)>(in, 0, tokens, d, y, totals, row);
      } else {
        IntTokenRow<kInt, Sums::kNone, Source> row{in, d, top, tokens};
        RowLoop<kMode>(in, 0, tokens, d, y, totals, row);
      }
      break;
    case Granularity::kGroupDim: {
      KVQ_CHECK(d / f.group <= kMaxGroupsPerRow);
      IntGroupDimRow<Dividing(kInt), Source> row{in, d, f.group, levels};
      RowLoop<kMode>(in, 0, tokens, d, y, totals, row);
      break;
    }
    case Granularity::kGroupToken: {
      const int64_t len = call.chunk_len > 0 ? call.chunk_len : tokens;
      for (int64_t b = 0; b < tokens; b += len) {
        const int64_t e = std::min(tokens, b + len);
        for (int64_t t0 = b; t0 < e; t0 += f.group) {
          const int64_t t1 = std::min(e, t0 + f.group);
          ChannelRanges(in, t0, t1, d, lo.data(), hi.data());
          round_trip(t0, t1);
        }
      }
      break;
    }
  }
}

}  // namespace
}  // namespace fused

void IntFormatsHead(const FusedCall& call) {
  const bool trunc = call.format.rounding == Rounding::kTrunc;
  const bool asym = call.format.zero_point;
  fused::Run(call, [&](auto mode, const auto& in, fused::Totals& totals) HWY_ATTR {
    constexpr fused::Mode kMode = decltype(mode)::kMode;
    if (asym) {
      trunc ? fused::IntHead<kMode, true, true>(call, in, totals)
            : fused::IntHead<kMode, true, false>(call, in, totals);
    } else {
      trunc ? fused::IntHead<kMode, false, true>(call, in, totals)
            : fused::IntHead<kMode, false, false>(call, in, totals);
    }
  });
}

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvq {

HWY_EXPORT(IntFormatsHead);

void FusedIntHead(const FusedCall& call) { HWY_DYNAMIC_DISPATCH(IntFormatsHead)(call); }

}  // namespace kvq
#endif
