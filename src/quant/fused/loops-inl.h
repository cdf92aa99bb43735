// The fused kernel's scaffolding, shared by the format families: where the
// values come from, how the error sums are kept, the statistics pass and the
// row loop. Lane-count generic: vectors of N = min(Lanes, 16) floats (16 on
// AVX-512, 8 on AVX2, 4 on SSE4, NEON and EMU128, 4 to 16 on SVE, 1 on the
// SCALAR fallback that GCC before 12.3 gets instead of EMU128), so that N
// divides every unit the formats use (16 values of a head_dim, group or
// nvfp4 block, 32 of a ggml block). No vectors in structs or arrays (SVE's
// are sizeless): per-row parameters are kept as floats and broadcast, and
// per-lane parameters go through small float arrays in L1.
//
// Included once per target after <hwy/highway.h> (toggled include guard).
#if defined(KVQ_QUANT_FUSED_LOOPS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef KVQ_QUANT_FUSED_LOOPS_INL_H_
#undef KVQ_QUANT_FUSED_LOOPS_INL_H_
#else
#define KVQ_QUANT_FUSED_LOOPS_INL_H_
#endif

#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common/half-inl.h"
#include "common/simd-inl.h"
#include "kvq/common/error.h"
#include "kvq/common/half.h"
#include "quant/fused/families.h"

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {
namespace fused {

using DF = hn::CappedTag<float, 16>;
using VF = hn::Vec<DF>;
using MF = hn::Mask<DF>;
#if HWY_TARGET == HWY_SCALAR
using DD = hn::Rebind<double, DF>;  // One lane: the lower "half" is all of it.
#else
using DD = hn::Rebind<double, hn::Half<DF> >;  // Half of DF's lanes, widened.
#endif
using VD = hn::Vec<DD>;

// Lanes per vector: a power of two up to 16.
HWY_INLINE int64_t Lanes() { return static_cast<int64_t>(hn::Lanes(DF())); }

// Where the N values at flat index i come from, widened to float exactly
// (LoadHalfLanes equals HalfToFloat).
struct HalfSource {
  const uint16_t* p;
  HWY_INLINE VF Load(int64_t i) const { return LoadHalfLanes(DF(), p + i); }
  float At(int64_t i) const {
    uint16_t h;
    std::memcpy(&h, p + i, 2);  // Dump data need not be aligned.
    return HalfToFloat(h);
  }
};

struct FloatSource {
  const float* p;
  HWY_INLINE VF Load(int64_t i) const { return hn::LoadU(DF(), p + i); }
  float At(int64_t i) const {
    float v;
    std::memcpy(&v, p + i, 4);
    return v;
  }
};

// How the error sums are kept. kHalf is for fp16 sources: float lanes, which
// cannot overflow there (|x|, |x - y| <= 2^17), folded into double before a
// lane holds more than 16 terms; x^2 is exact in float, and e = x - y is 0
// or at least 2^-48 in magnitude for the int, ggml and fp16 rows (see their
// notes), so e^2 is never a float subnormal; fp8's errors can be smaller and
// are scaled by 2^24 first (Row::kTinyErrors). Relative error: at most
// (16 + 3) * 2^-24 for SSE where the target fuses e * e + sse, one rounding
// more per term where it does not (SSE4, EMU128): (16 + 4) * 2^-24 = 1.2e-6;
// 16 * 2^-24 for sum x^2 (x^2 is exact). kDouble is for float sources, whose
// values may be anywhere in float's range: double lanes (about 1e-15
// relative). kNone keeps none (the call writes y) and only checks that x is
// finite.
enum class Sums { kNone, kHalf, kDouble };

// What a kernel instantiation does besides the round trip: which error sums
// it keeps, and whether the round-trip loop sums x^2 and max|x| (false where
// a statistics pass over the same values did). A call either keeps sums or
// writes y (Run), so the mode without sums is the one that writes y.
struct Mode {
  Sums sums;
  bool squares = true;
  constexpr bool store() const { return sums == Sums::kNone; }
};

// The same mode for a round trip after a statistics pass that summed x^2.
constexpr Mode WithoutSquares(Mode m) { return Mode{m.sums, false}; }

constexpr float kErrorScale = 0x1p24f;  // Scales x - y of kTinyErrors rows (kHalf).
constexpr int kFoldTerms = 16;          // kHalf: terms per float lane before a fold.

// One head's running results: added to at the end of each loop.
struct Totals {
  double sse = 0, sum_sq = 0;
  float max_abs = 0;
  bool finite = true;
};

// The lower and upper half of v's lanes, widened to double (with one lane:
// that lane, and zero).
#if HWY_TARGET == HWY_SCALAR
HWY_INLINE VD LowerToDouble(VF v) { return hn::PromoteTo(DD(), v); }
HWY_INLINE VD UpperToDouble(VF) { return hn::Zero(DD()); }
#else
HWY_INLINE VD LowerToDouble(VF v) { return hn::PromoteTo(DD(), hn::LowerHalf(hn::Half<DF>(), v)); }
HWY_INLINE VD UpperToDouble(VF v) { return hn::PromoteTo(DD(), hn::UpperHalf(hn::Half<DF>(), v)); }
#endif

// A float lane pair folded into double lanes (kHalf).
HWY_INLINE void FoldInto(VF even, VF odd, VD& lo, VD& hi) {
  const VF sum = hn::Add(even, odd);
  lo = hn::Add(lo, LowerToDouble(sum));
  hi = hn::Add(hi, UpperToDouble(sum));
}

// x^2 into a mode's sums of squares: one float lane set (kHalf; x^2 is exact
// for fp16 x, so the add rounds once with or without FMA) or the two double
// lane sets (kDouble, x^2 exact in double); nothing for kNone.
template <Sums kSums>
HWY_INLINE void AddSquares(VF x, VF& lanes, VD& lo, VD& hi) {
  if constexpr (kSums == Sums::kHalf) {
    lanes = hn::MulAdd(x, x, lanes);
  } else if constexpr (kSums == Sums::kDouble) {
    const VD a = LowerToDouble(x), b = UpperToDouble(x);
    lo = hn::MulAdd(a, a, lo);
    hi = hn::MulAdd(b, b, hi);
  }
}

HWY_INLINE double SumOf(VD lo, VD hi) { return hn::GetLane(hn::SumOfLanes(DD(), hn::Add(lo, hi))); }
HWY_INLINE float MaxOf(VF v) { return hn::GetLane(hn::MaxOfLanes(DF(), v)); }
HWY_INLINE float MinOf(VF v) { return hn::GetLane(hn::MinOfLanes(DF(), v)); }

// A pass's sum of x^2 (double lanes lo, hi) and max|x| (lanes) into totals;
// a non-finite sum marks the input as not finite.
HWY_INLINE void AddSquareSums(VD lo, VD hi, VF amax, Totals& totals) {
  totals.sum_sq += SumOf(lo, hi);
  totals.finite = totals.finite && std::isfinite(totals.sum_sq);
  totals.max_abs = std::max(totals.max_abs, MaxOf(amax));
}

// The statistics pass of a sequence-global format over the n values of one
// head: min and max (+0 for -0, as kernels.cpp's MinMax does) and, where the
// mode keeps error sums, sum x^2 and max|x| too, so that the round-trip pass
// does not redo them. This pass reads the head from memory; the round trip
// then finds it in cache.
template <Mode kMode, class Source>
void ScanHead(const Source& source, int64_t n, float& min, float& max, Totals& totals) {
  const DF df;
  const DD dd;
  const int64_t N = Lanes();
  const auto in = source;  // A copy: stores elsewhere cannot change its pointer.
  constexpr float kInf = std::numeric_limits<float>::infinity();
  VF lo0 = hn::Set(df, kInf), hi0 = hn::Set(df, -kInf), lo1 = lo0, hi1 = hi0;
  VF sq_even = hn::Zero(df), sq_odd = sq_even;
  VD sq_lo = hn::Zero(dd), sq_hi = sq_lo;
  int terms = 0;
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    const VF x0 = in.Load(i), x1 = in.Load(i + N);
    lo0 = hn::Min(lo0, x0);
    hi0 = hn::Max(hi0, x0);
    lo1 = hn::Min(lo1, x1);
    hi1 = hn::Max(hi1, x1);
    AddSquares<kMode.sums>(x0, sq_even, sq_lo, sq_hi);
    AddSquares<kMode.sums>(x1, sq_odd, sq_lo, sq_hi);
    if (kMode.sums == Sums::kHalf && ++terms == kFoldTerms) {
      FoldInto(sq_even, sq_odd, sq_lo, sq_hi);
      sq_even = sq_odd = hn::Zero(df);
      terms = 0;
    }
  }
  if (i < n) {
    const VF x = in.Load(i);
    lo0 = hn::Min(lo0, x);
    hi0 = hn::Max(hi0, x);
    AddSquares<kMode.sums>(x, sq_even, sq_lo, sq_hi);
  }
  min = MinOf(hn::Min(lo0, lo1)) + 0.0f;
  max = MaxOf(hn::Max(hi0, hi1)) + 0.0f;
  if (n == 0) min = max = 0;
  if constexpr (kMode.sums == Sums::kHalf) FoldInto(sq_even, sq_odd, sq_lo, sq_hi);
  if constexpr (kMode.sums != Sums::kNone) {
    totals.sum_sq += SumOf(sq_lo, sq_hi);
    totals.finite = totals.finite && std::isfinite(totals.sum_sq);
    totals.max_abs = std::max({totals.max_abs, std::fabs(min), std::fabs(max)});
  }
}

// Rows [t0, t1) of a [tokens, d] head through `row`: row.Begin(t) sets the
// row's parameters and row.One(i, j, x) maps the N values at flat index i
// and column j. Row::kFlat: Begin does nothing and the mapping does not
// depend on the column, so the rows run as one. Row::kTinyErrors: an error
// from an fp16 source can square to a float subnormal (see Sums). The
// accumulators and the row are this function's locals, so that they can stay
// in registers; two sets of accumulators, for the even and the odd vector of
// each pair, so that consecutive multiply-adds do not wait for each other.
template <Mode kMode, class Source, class Row>
void RowLoop(const Source& source, int64_t t0, int64_t t1, int d, float* y, Totals& totals,
             Row row) {
  constexpr Sums kSums = kMode.sums;
  constexpr bool kSquares = kMode.squares;
  constexpr bool kScaleErrors = kSums == Sums::kHalf && Row::kTinyErrors;
  const DF df;
  const DD dd;
  const int64_t N = Lanes();
  const auto in = source;  // A copy: stores to y cannot change its pointer.
  const VF zero = hn::Zero(df);
  VF sse_even = zero, sse_odd = zero, sq_even = zero, sq_odd = zero;
  VF amax = zero, check_even = zero, check_odd = zero;
  VD sse_lo = hn::Zero(dd), sse_hi = sse_lo, sq_lo = sse_lo, sq_hi = sse_lo;
  int terms = 0;  // Per float lane since the last fold.

  auto put = [&](int64_t i, VF x, VF v, VF& sse, VF& sq, VF& check) HWY_ATTR {
    if constexpr (kMode.store()) hn::StoreU(v, df, y + i);
    if constexpr (kSums == Sums::kNone) {
      check = hn::Add(check, hn::Sub(x, x));  // NaN from here on if x is not finite.
    } else {
      if constexpr (kSquares) amax = hn::Max(amax, hn::Abs(x));
      if constexpr (kSums == Sums::kHalf) {
        VF e = hn::Sub(x, v);
        if constexpr (kScaleErrors) e = hn::Mul(e, hn::Set(df, kErrorScale));
        sse = hn::MulAdd(e, e, sse);
        if constexpr (kSquares) sq = hn::MulAdd(x, x, sq);  // Inf/NaN stay: the check.
      } else {
        // x^2 is exact in double, so a multiply-add rounds like
        // multiply-then-add; e^2 is too unless x and y are 2^29 apart.
        const VD x_lo = LowerToDouble(x), x_hi = UpperToDouble(x);
        const VD e_lo = hn::Sub(x_lo, LowerToDouble(v)), e_hi = hn::Sub(x_hi, UpperToDouble(v));
        sse_lo = hn::MulAdd(e_lo, e_lo, sse_lo);
        sse_hi = hn::MulAdd(e_hi, e_hi, sse_hi);
        if constexpr (kSquares) {
          sq_lo = hn::MulAdd(x_lo, x_lo, sq_lo);
          sq_hi = hn::MulAdd(x_hi, x_hi, sq_hi);
        }
      }
    }
  };
  auto fold = [&]() HWY_ATTR {
    FoldInto(sse_even, sse_odd, sse_lo, sse_hi);
    if constexpr (kSquares) FoldInto(sq_even, sq_odd, sq_lo, sq_hi);
    sse_even = sse_odd = sq_even = sq_odd = zero;
    terms = 0;
  };
  // The values [i, i + 2N) at (t, j).
  auto pair = [&](int64_t i, int j) HWY_ATTR {
    const VF x0 = in.Load(i), x1 = in.Load(i + N);
    const VF v0 = row.One(i, j, x0);
    const VF v1 = row.One(i + N, j + static_cast<int>(N), x1);
    put(i, x0, v0, sse_even, sq_even, check_even);
    put(i + N, x1, v1, sse_odd, sq_odd, check_odd);
  };
  auto single = [&](int64_t i, int j) HWY_ATTR {
    const VF x = in.Load(i);
    put(i, x, row.One(i, j, x), sse_even, sq_even, check_even);
  };
  // Stretches of at most kFoldTerms vectors per accumulator, with the fold
  // check once per stretch.
  const int64_t stretch_values = 2 * N * kFoldTerms;
  auto fold_before = [&](int64_t values) HWY_ATTR {
    const int stretch = static_cast<int>((values + 2 * N - 1) / (2 * N));
    if (kSums == Sums::kHalf && terms + stretch > kFoldTerms) fold();
    terms += stretch;
  };

  if constexpr (Row::kFlat) {
    // Parameters independent of the position: the rows as one run (the
    // column passed on is meaningless there).
    const int64_t begin = t0 * d, end = t1 * d;
    for (int64_t i0 = begin; i0 < end;) {
      const int64_t i1 = std::min(end, i0 + stretch_values);
      fold_before(i1 - i0);
      for (; i0 + 2 * N <= i1; i0 += 2 * N) pair(i0, 0);
      if (i0 < i1) {
        single(i0, 0);
        i0 += N;
      }
    }
  } else {
    for (int64_t t = t0; t < t1; ++t) {
      row.Begin(t);
      for (int j = 0; j < d;) {
        const int end = static_cast<int>(std::min<int64_t>(d, j + stretch_values));
        fold_before(end - j);
        for (; j + 2 * N <= end; j += static_cast<int>(2 * N)) pair(t * d + j, j);
        if (j < end) {
          single(t * d + j, j);
          j += static_cast<int>(N);
        }
      }
    }
  }

  if constexpr (kSums == Sums::kNone) {
    totals.finite = totals.finite && hn::AllTrue(df, hn::Eq(hn::Add(check_even, check_odd), zero));
  } else {
    if constexpr (kSums == Sums::kHalf) fold();
    const double scale =
        kScaleErrors ? 1.0 / (static_cast<double>(kErrorScale) * kErrorScale) : 1.0;
    totals.sse += SumOf(sse_lo, sse_hi) * scale;
    if constexpr (kSquares) AddSquareSums(sq_lo, sq_hi, amax, totals);
  }
}

// Batches [0, n) in steps of `step` with two in flight: the range pass
// (ranges(start, slot)) of batch b + 1 comes before the round trip of batch
// b in program order, so that its dependent divisions overlap that work.
template <class Slot, class Ranges, class RoundTrip>
HWY_INLINE void TwoBatchesInFlight(int64_t n, int64_t step, Slot (&slots)[2], Ranges&& ranges,
                                   RoundTrip&& round_trip) {
  if (n > 0) ranges(0, slots[0]);
  for (int64_t start = 0, b = 0; start < n; start += step, ++b) {
    if (start + step < n) ranges(start + step, slots[(b + 1) % 2]);
    round_trip(start, slots[b % 2]);
  }
}

// The vectors [0, vectors) of unit `unit` (a ggml block, a token) through
// body(v, sum), handing the four float accumulators a0..a3 in turn (vectors
// a multiple of 4) so that consecutive multiply-adds do not wait for each
// other; then, after every `fold_units`-th unit and after the `last`, the
// four folded into the double lanes lo, hi (in pairs, as FoldInto does) and
// cleared. The dedicated loops size fold_units so that no float lane holds
// more than kFoldTerms terms.
template <class Body>
HWY_INLINE void SweepFour(int64_t vectors, int64_t unit, int64_t fold_units, bool last, VF& a0,
                          VF& a1, VF& a2, VF& a3, VD& lo, VD& hi, Body&& body) {
  for (int64_t v = 0; v < vectors; v += 4) {
    body(v, a0);
    body(v + 1, a1);
    body(v + 2, a2);
    body(v + 3, a3);
  }
  if ((unit + 1) % fold_units == 0 || last) {
    FoldInto(a0, a1, lo, hi);
    FoldInto(a2, a3, lo, hi);
    a0 = a1 = a2 = a3 = hn::Zero(DF());
  }
}

// A compile-time Mode as a value, for generic lambdas.
template <Mode kM>
struct ModeTag {
  static constexpr Mode kMode = kM;
};

// Runs body(ModeTag, source, totals) for the call's one output: y from a
// float source (QuantizeHead), or the error sums from a float or an fp16
// source (QuantizeHeadError, straight from the dump). Only these three
// instantiations are compiled: each is a copy of every kernel for every SIMD
// target, and no caller asks for the others.
template <class Body>
void Run(const FusedCall& call, Body&& body) {
  Totals totals;
  if (call.y != nullptr) {
    body(ModeTag<Mode{Sums::kNone}>{}, FloatSource{call.x_float}, totals);
  } else if (call.x_half != nullptr) {
    body(ModeTag<Mode{Sums::kHalf}>{}, HalfSource{call.x_half}, totals);
  } else {
    body(ModeTag<Mode{Sums::kDouble}>{}, FloatSource{call.x_float}, totals);
  }
  if (!totals.finite) ThrowInput("non-finite value in the block to quantize");
  if (call.sums != nullptr) {
    call.sums->count += call.tokens * call.head_dim;
    call.sums->sse += totals.sse;
    call.sums->sum_sq += totals.sum_sq;
    call.sums->max_abs = std::max(call.sums->max_abs, totals.max_abs);
  }
}

}  // namespace fused
}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#endif  // KVQ_QUANT_FUSED_LOOPS_INL_H_
