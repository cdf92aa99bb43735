// The fused kernel for ggml's blocks of 32: q8_0, q4_0, q4_1
// (kernels.cpp's QuantizeQ* + GgmlDequantizeRow) and iq4_nl (QuantizeIq4Nl,
// with and without the scale search).
#include "quant/fused/families.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "quant/fused/ggml.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "quant/fused/loops-inl.h"
#include "quant/rounding_lanes-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {
namespace fused {
namespace {

constexpr int kBlock = 32;  // Values per ggml block.

// The block parameters are computed kBatch blocks at a time when One
// reaches a new batch: each block's maximum (minimum) reduced across lanes,
// then d, 1 / d and their fp16 roundings N blocks per vector (the same IEEE
// operations as the block-at-a-time code, so the same values). A block
// whose scale or inverse scale is not finite (only float input can get
// there: amax below ~1e-36 or a range overflowing float) goes through the
// scalar code, whatever it does, at batch time.
// y = q * d (+ m): d and m are fp16 values, so y is a multiple of 2^-24 as
// x is.
template <FormatKind kKind, class Source>
struct GgmlRow {
  static constexpr bool kFlat = true, kTinyErrors = false;
  static constexpr int kBatch = 16;
  Source in;
  int64_t end;  // One past the head's last value.
  int64_t batch = -1;
  HWY_ALIGN float d_half[kBatch] = {}, inverse[kBatch] = {}, min[kBatch] = {},
                  min_half[kBatch] = {}, finite[kBatch] = {};
  HWY_ALIGN float scalar_y[kBatch * kBlock] = {};  // y of the blocks not finite.

  // The first value of the block at i whose magnitude (or value) equals
  // value; there is one.
  float FirstEqual(int64_t i, float value, bool magnitude) const {
    for (int j = 0;; ++j) {
      const float x = in.At(i + j);
      if ((magnitude ? std::fabs(x) : x) == value) return x;
    }
  }

  void Batch(int64_t i0) {
    const DF df;
    const int64_t N = Lanes();
    const int64_t count = std::min<int64_t>(kBatch, (end - i0) / kBlock);
    HWY_ALIGN float tops[kBatch] = {}, bottoms[kBatch] = {};
    for (int64_t k = 0; k < count; ++k) {
      const int64_t i = i0 + kBlock * k;
      VF lo = in.Load(i), hi = lo;
      if (kKind != FormatKind::kQ4_1) hi = lo = hn::Abs(lo);
      for (int64_t j = N; j < kBlock; j += N) {
        const VF x = kKind == FormatKind::kQ4_1 ? in.Load(i + j) : hn::Abs(in.Load(i + j));
        lo = hn::Min(lo, x);
        hi = hn::Max(hi, x);
      }
      tops[k] = MaxOf(hi);
      if constexpr (kKind == FormatKind::kQ4_0) {
        // max: the signed value of largest magnitude, the first one on ties;
        // +0 for an all-zero block.
        tops[k] = tops[k] == 0 ? 0.0f : FirstEqual(i, tops[k], true);
      } else if constexpr (kKind == FormatKind::kQ4_1) {
        // min / max: the first value reaching them (decides the sign of a zero).
        bottoms[k] = MinOf(lo);
        if (bottoms[k] == 0) bottoms[k] = FirstEqual(i, 0.0f, false);
        if (tops[k] == 0) tops[k] = FirstEqual(i, 0.0f, false);
      }
    }
    const VF zero = hn::Zero(df), one = hn::Set(df, 1.0f);
    const VF fmax = hn::Set(df, std::numeric_limits<float>::max());
    for (int64_t k = 0; k < kBatch; k += N) {
      const VF top = hn::Load(df, tops + k);
      VF d;
      if constexpr (kKind == FormatKind::kQ8_0) {
        d = hn::Div(top, hn::Set(df, 127.0f));
      } else if constexpr (kKind == FormatKind::kQ4_0) {
        d = hn::Div(top, hn::Set(df, -8.0f));
      } else {
        const VF block_min = hn::Load(df, bottoms + k);
        d = hn::Div(hn::Sub(top, block_min), hn::Set(df, 15.0f));
        hn::Store(block_min, df, min + k);
        hn::Store(RoundToHalfLanes(df, block_min), df, min_half + k);
      }
      const VF id = hn::IfThenElseZero(hn::Ne(d, zero), hn::Div(one, d));
      const MF ok = hn::And(hn::Le(hn::Abs(d), fmax), hn::Le(hn::Abs(id), fmax));
      hn::Store(hn::IfThenElseZero(ok, one), df, finite + k);
      hn::Store(RoundToHalfLanes(df, d), df, d_half + k);
      hn::Store(id, df, inverse + k);
    }
    for (int64_t k = 0; k < count; ++k) {
      if (finite[k] != 0) continue;
      float x[kBlock];
      uint8_t bytes[34];
      for (int j = 0; j < kBlock; ++j) x[j] = in.At(i0 + kBlock * k + j);
      GgmlQuantizeRow(kKind, false, x, kBlock, bytes);
      GgmlDequantizeRow(kKind, bytes, kBlock, scalar_y + kBlock * k);
    }
    batch = i0;
  }

  void Begin(int64_t) {}
  HWY_INLINE VF One(int64_t i, int, VF v) {
    const DF df;
    if (batch < 0 || i - batch >= kBlock * kBatch) Batch(i);
    const int64_t k = (i - batch) / kBlock;
    if (finite[k] == 0) return hn::LoadU(df, scalar_y + (i - batch));
    const VF id = hn::Set(df, inverse[k]), dh = hn::Set(df, d_half[k]);
    if constexpr (kKind == FormatKind::kQ8_0) {
      // (float)(int8_t)roundf(v): +0 for a rounded -0.
      return hn::Mul(hn::Add(RoundHalfAway(df, hn::Mul(v, id)), hn::Zero(df)), dh);
    } else if constexpr (kKind == FormatKind::kQ4_0) {
      VF q = hn::Trunc(hn::Add(hn::Mul(v, id), hn::Set(df, 8.5f)));
      q = hn::Min(hn::Set(df, 15.0f), q);
      return hn::Mul(hn::Sub(q, hn::Set(df, 8.0f)), dh);
    } else {
      VF q = hn::Trunc(hn::Add(hn::Mul(hn::Sub(v, hn::Set(df, min[k])), id), hn::Set(df, 0.5f)));
      q = hn::Min(hn::Set(df, 15.0f), q);
      return hn::Add(hn::Mul(q, dh), hn::Set(df, min_half[k]));
    }
  }
};

// q8_0 from an fp16 source with error sums (kvq quant's path), as GgmlRow +
// RowLoop compute it (the same operations per value), in the shape of
// IntTokenHead: per batch of kBatch blocks their maxima and a widened copy
// in L1, then their round trips from it, two batches in flight (+14% over
// GgmlRow on AVX-512, same-hour A/B). From fp16, d = amax / 127 is 0 or in
// [2^-31, 516], so d and 1 / d are finite and GgmlRow's scalar fallback is
// never needed. Four accumulators per sum (the vectors of a block in turn),
// folded into double before a lane holds kFoldTerms terms: requires
// Lanes() to divide 8 (UsesQ8_0Head).
bool UsesQ8_0Head() { return (kBlock / 4) % Lanes() == 0; }

template <Mode kMode>
void Q8_0Head(const HalfSource& source, int64_t n, Totals& totals) {
  static_assert(kMode.sums == Sums::kHalf && !kMode.store());
  constexpr int kBatch = 16;
  const DF df;
  const DD dd;
  const int64_t N = Lanes();
  const int64_t vectors = kBlock / N;                      // Per block, a multiple of 4.
  const int64_t fold_blocks = kFoldTerms / (vectors / 4);  // Blocks between folds.
  const HalfSource in = source;  // A copy: stores to y cannot change its pointer.
  const VF zero = hn::Zero(df);
  VF amax = zero, sq0 = zero, sq1 = zero, sq2 = zero, sq3 = zero;
  VF sse0 = zero, sse1 = zero, sse2 = zero, sse3 = zero;
  VD sse_lo = hn::Zero(dd), sse_hi = sse_lo, sq_lo = sse_lo, sq_hi = sse_lo;
  struct Slot {
    HWY_ALIGN float inverse[kBatch], d_half[kBatch], xs[kBatch * kBlock];
    int count;
  } slots[2];
  auto ranges = [&](int64_t i0, Slot& slot) HWY_ATTR {
    slot.count = static_cast<int>(std::min<int64_t>(kBatch, (n - i0) / kBlock));
    HWY_ALIGN float tops[kBatch] = {};
    for (int k = 0; k < slot.count; ++k) {
      VF hi = zero;
      auto range = [&](int64_t v, VF& sq) HWY_ATTR {
        const VF x = in.Load(i0 + kBlock * k + v * N);
        hn::Store(x, df, slot.xs + kBlock * k + v * N);
        hi = hn::Max(hi, hn::Abs(x));
        sq = hn::MulAdd(x, x, sq);
      };
      SweepFour(vectors, k, fold_blocks, k + 1 == slot.count, sq0, sq1, sq2, sq3, sq_lo, sq_hi,
                range);
      amax = hn::Max(amax, hi);
      tops[k] = MaxOf(hi);
    }
    const VF one = hn::Set(df, 1.0f);
    for (int64_t k = 0; k < kBatch; k += N) {
      const VF d = hn::Div(hn::Load(df, tops + k), hn::Set(df, 127.0f));
      hn::Store(hn::IfThenElseZero(hn::Ne(d, zero), hn::Div(one, d)), df, slot.inverse + k);
      hn::Store(RoundToHalfLanes(df, d), df, slot.d_half + k);
    }
  };
  auto round_trip = [&](int64_t, const Slot& slot) HWY_ATTR {
    for (int k = 0; k < slot.count; ++k) {
      const VF id = hn::Set(df, slot.inverse[k]), dh = hn::Set(df, slot.d_half[k]);
      auto one = [&](int64_t v, VF& sse) HWY_ATTR {
        const VF x = hn::Load(df, slot.xs + kBlock * k + v * N);
        // (float)(int8_t)roundf(v) is +0 for a rounded -0, which only a
        // stored y would show: x - y is the same.
        const VF yv = hn::Mul(RoundHalfAway(df, hn::Mul(x, id)), dh);
        const VF e = hn::Sub(x, yv);
        sse = hn::MulAdd(e, e, sse);
      };
      SweepFour(vectors, k, fold_blocks, k + 1 == slot.count, sse0, sse1, sse2, sse3, sse_lo,
                sse_hi, one);
    }
  };
  TwoBatchesInFlight(n, kBlock * kBatch, slots, ranges, round_trip);
  totals.sse += SumOf(sse_lo, sse_hi);
  AddSquareSums(sq_lo, sq_hi, amax, totals);
}

// ggml iq4_nl (kernels.cpp's QuantizeIq4Nl + GgmlDequantizeRow); the nearest
// level is Iq4NlLevelLanes (quant/rounding_lanes-inl.h). The scale of each
// block is fitted kBatch blocks at a time when One reaches a new batch, one
// block per lane: the blocks' values transposed in L1 (value j of block k
// at j * kBatch + k), so that every lane runs the reference's serial sums
// in the reference's order (float, no contraction), its first-maximum rule
// and, with kSearch, its 15 trial scales. One then maps each block through
// its inverse scale and fp16 d, as the reference's final pass and
// dequantization do. y = d * level with d an fp16 value: a multiple of
// 2^-24, as for q8_0.
template <bool kSearch, class Source>
struct Iq4NlRow {
  static constexpr bool kFlat = true, kTinyErrors = false;
  static constexpr int kBatch = 16;
  Source in;
  int64_t end;  // One past the head's last value.
  int64_t batch = -1;
  HWY_ALIGN float inverse[kBatch] = {}, d_half[kBatch] = {};

  // sum w x q and sum w q^2 of the N blocks at xs + k with trial scale s
  // (w = x^2).
  static HWY_INLINE void Fit(const float* xs, int64_t k, VF s, VF& sqx, VF& sqq) {
    const DF df;
    sqx = sqq = hn::Zero(df);
    for (int j = 0; j < kBlock; ++j) {
      const VF x = hn::Load(df, xs + j * kBatch + k);
      const VF q = Iq4NlLevelLanes(df, hn::Mul(s, x));
      const VF wq = hn::Mul(hn::Mul(x, x), q);
      sqx = hn::Add(sqx, hn::Mul(wq, x));
      sqq = hn::Add(sqq, hn::Mul(wq, q));
    }
  }

  void Batch(int64_t i0) {
    const DF df;
    const int64_t N = Lanes();
    const int64_t count = std::min<int64_t>(kBatch, (end - i0) / kBlock);
    // Widened in lanes, then transposed in L1.
    HWY_ALIGN float blocks[kBlock * kBatch], xs[kBlock * kBatch] = {};
    for (int64_t k = 0; k < count; ++k) {
      for (int64_t j = 0; j < kBlock; j += N) {
        hn::Store(in.Load(i0 + kBlock * k + j), df, blocks + kBlock * k + j);
      }
      for (int j = 0; j < kBlock; ++j) xs[j * kBatch + k] = blocks[kBlock * k + j];
    }
    const VF zero = hn::Zero(df), one = hn::Set(df, 1.0f);
    for (int64_t k = 0; k < kBatch; k += N) {
      VF amax = zero, max = zero;
      for (int j = 0; j < kBlock; ++j) {
        const VF x = hn::Load(df, xs + j * kBatch + k);
        const MF larger = hn::Lt(amax, hn::Abs(x));
        amax = hn::IfThenElse(larger, hn::Abs(x), amax);
        max = hn::IfThenElse(larger, x, max);
      }
      const VF signed_max = kSearch ? hn::Xor(max, hn::Set(df, -0.0f)) : max;  // -max
      const VF scale0 = hn::Div(one, hn::Div(signed_max, hn::Set(df, -127.0f)));
      VF sqx = zero, sqq = zero;
      Fit(xs, k, scale0, sqx, sqq);
      VF d = hn::IfThenElseZero(hn::Gt(sqq, zero), hn::Div(sqx, sqq));
      VF id = scale0;
      if constexpr (kSearch) {
        VF best = hn::Mul(d, sqx);
        for (int t = -7; t <= 7; ++t) {
          Fit(xs, k, hn::Div(hn::Set(df, static_cast<float>(t - 127)), max), sqx, sqq);
          const MF better =
              hn::And(hn::Gt(sqq, zero), hn::Gt(hn::Mul(sqx, sqx), hn::Mul(best, sqq)));
          d = hn::IfThenElse(better, hn::Div(sqx, sqq), d);
          best = hn::IfThenElse(better, hn::Mul(d, sqx), best);
        }
        id = hn::IfThenElseZero(hn::Ne(d, zero), hn::Div(one, d));
      }
      // An all-(near-)zero block: d = 0 and level 8 (1), which v * 0 finds.
      const MF empty = hn::Lt(amax, hn::Set(df, 1e-15f));
      hn::Store(hn::IfThenZeroElse(empty, id), df, inverse + k);
      hn::Store(RoundToHalfLanes(df, hn::IfThenZeroElse(empty, d)), df, d_half + k);
    }
    batch = i0;
  }

  void Begin(int64_t) {}
  HWY_INLINE VF One(int64_t i, int, VF v) {
    const DF df;
    if (batch < 0 || i - batch >= kBlock * kBatch) Batch(i);
    const int64_t k = (i - batch) / kBlock;
    return hn::Mul(hn::Set(df, d_half[k]),
                   Iq4NlLevelLanes(df, hn::Mul(v, hn::Set(df, inverse[k]))));
  }
};

// The round trip of a whole head, one kernel per format.
template <FormatKind kKind, Mode kMode, class Source>
void GgmlHead(const FusedCall& call, const Source& in, Totals& totals) {
  const int64_t n = call.tokens * call.head_dim;
  auto loop = [&](auto row) HWY_ATTR {
    RowLoop<kMode>(in, 0, call.tokens, call.head_dim, call.y, totals, row);
  };
  if constexpr (kKind == FormatKind::kIq4Nl) {
    call.format.search ? loop(Iq4NlRow<true, Source>{in, n}) : loop(Iq4NlRow<false, Source>{in, n});
  } else {
    if constexpr (kKind == FormatKind::kQ8_0 && kMode.sums == Sums::kHalf) {
      if (UsesQ8_0Head()) return Q8_0Head<WithoutSquares(kMode)>(in, n, totals);
    }
    loop(GgmlRow<kKind, Source>{in, n});
  }
}

}  // namespace

template <FormatKind kKind>
void GgmlKernel(const FusedCall& call) {
  Run(call, [&](auto mode, const auto& in, Totals& totals)
                HWY_ATTR { GgmlHead<kKind, decltype(mode)::kMode>(call, in, totals); });
}

}  // namespace fused

void Q8_0Kernel(const FusedCall& call) { fused::GgmlKernel<FormatKind::kQ8_0>(call); }
void Q4_0Kernel(const FusedCall& call) { fused::GgmlKernel<FormatKind::kQ4_0>(call); }
void Q4_1Kernel(const FusedCall& call) { fused::GgmlKernel<FormatKind::kQ4_1>(call); }
void Iq4NlKernel(const FusedCall& call) { fused::GgmlKernel<FormatKind::kIq4Nl>(call); }

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvq {

HWY_EXPORT(Q8_0Kernel);
HWY_EXPORT(Q4_0Kernel);
HWY_EXPORT(Q4_1Kernel);
HWY_EXPORT(Iq4NlKernel);

void FusedQ8_0Head(const FusedCall& call) { HWY_DYNAMIC_DISPATCH(Q8_0Kernel)(call); }
void FusedQ4_0Head(const FusedCall& call) { HWY_DYNAMIC_DISPATCH(Q4_0Kernel)(call); }
void FusedQ4_1Head(const FusedCall& call) { HWY_DYNAMIC_DISPATCH(Q4_1Kernel)(call); }
void FusedIq4NlHead(const FusedCall& call) { HWY_DYNAMIC_DISPATCH(Iq4NlKernel)(call); }

}  // namespace kvq
#endif
