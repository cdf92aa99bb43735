#include "kvq/quant/fused.h"

#include "common/avx512.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kvq/common/error.h"
#include "kvq/common/half.h"
#include "quant/rounding_lanes.h"
#include "quant/split_reciprocal.h"

namespace kvq {

#if defined(__AVX512F__)
namespace {

// The per-vector steps must inline into the loops: called, they take the
// accumulators through memory, three times slower.
#define KVQ_INLINE inline __attribute__((always_inline))

// Where the 16 values at flat index i come from, widened to float exactly
// (vcvtph2ps equals HalfToFloat, subnormals included).
struct HalfSource {
  const uint16_t* p;
  KVQ_INLINE __m512 Load(int64_t i) const {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
  }
  float At(int64_t i) const {
    uint16_t h;
    std::memcpy(&h, p + i, 2);  // Dump data need not be aligned.
    return HalfToFloat(h);
  }
};

struct FloatSource {
  const float* p;
  KVQ_INLINE __m512 Load(int64_t i) const { return _mm512_loadu_ps(p + i); }
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
// are scaled by 2^24 first (Row::kTinyErrors). Relative error: at most (16 + 3) * 2^-24 (1.2e-6)
// for SSE, 16 * 2^-24 for sum x^2. kDouble is for float sources, whose values may be anywhere in
// float's range: double lanes (about 1e-15 relative). kNone only checks that
// x is finite.
enum class Sums { kNone, kHalf, kDouble };

// lo/hi +0 turns -0 into +0, as kernels.cpp's MinMax does.
void BlockMinMax(__m512 lo, __m512 hi, float& min, float& max) {
  min = _mm512_reduce_min_ps(lo) + 0.0f;
  max = _mm512_reduce_max_ps(hi) + 0.0f;
}

// What a kernel instantiation does besides the round trip: which error sums
// it keeps, whether it writes y, and whether the round-trip loop sums x^2
// and max|x| (false where a statistics pass over the same values did).
struct Mode {
  Sums sums;
  bool store;
  bool squares = true;
};

// The same mode for a round trip after a statistics pass that summed x^2.
constexpr Mode WithoutSquares(Mode m) { return Mode{m.sums, m.store, false}; }

constexpr float kErrorScale = 0x1p24f;  // Scales x - y of kTinyErrors rows (kHalf).
constexpr int kFoldTerms = 16;          // kHalf: terms per float lane before a fold.

// One head's running results: added to at the end of each loop.
struct Totals {
  double sse = 0, sum_sq = 0;
  float max_abs = 0;
  bool finite = true;
};

// Lanes 0-7 (half 0) or 8-15 (half 1) of v, widened to double.
__m512d LanesToDouble(__m512 v, int half) {
  return _mm512_cvtps_pd(half == 0
                             ? _mm512_castps512_ps256(v)
                             : _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

// A float lane pair folded into double lanes (kHalf).
KVQ_INLINE void FoldInto(__m512 even, __m512 odd, __m512d& lo, __m512d& hi) {
  const __m512 sum = _mm512_add_ps(even, odd);
  lo = _mm512_add_pd(lo, LanesToDouble(sum, 0));
  hi = _mm512_add_pd(hi, LanesToDouble(sum, 1));
}

// x^2 into a mode's sums of squares: one float lane set (kHalf) or the two
// double lane sets (kDouble); nothing for kNone.
template <Sums kSums>
KVQ_INLINE void AddSquares(__m512 x, __m512& lanes, __m512d& lo, __m512d& hi) {
  if constexpr (kSums == Sums::kHalf) {
    lanes = _mm512_fmadd_ps(x, x, lanes);
  } else if constexpr (kSums == Sums::kDouble) {
    const __m512d a = LanesToDouble(x, 0), b = LanesToDouble(x, 1);
    lo = _mm512_fmadd_pd(a, a, lo);
    hi = _mm512_fmadd_pd(b, b, hi);
  }
}

// Four float lane sets folded into double (in pairs, as FoldInto does) and
// cleared: the dedicated head_dim loops keep four accumulators per sum.
KVQ_INLINE void FoldFour(__m512 (&acc)[4], __m512d& lo, __m512d& hi) {
  FoldInto(acc[0], acc[1], lo, hi);
  FoldInto(acc[2], acc[3], lo, hi);
  for (__m512& a : acc) a = _mm512_setzero_ps();
}

// A pass's sum of x^2 (double lanes lo, hi) and max|x| (lanes) into totals;
// a non-finite sum marks the input as not finite.
KVQ_INLINE void AddSquareSums(__m512d lo, __m512d hi, __m512 amax, Totals& totals) {
  totals.sum_sq += _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
  totals.finite = totals.finite && std::isfinite(totals.sum_sq);
  totals.max_abs = std::max(totals.max_abs, _mm512_reduce_max_ps(amax));
}

// Batches [0, n) in steps of `step` with two in flight: the range pass
// (ranges(start, slot)) of batch b + 1 comes before the round trip of batch
// b in program order, so that its dependent divisions overlap that work.
template <class Slot, class Ranges, class RoundTrip>
KVQ_INLINE void TwoBatchesInFlight(int64_t n, int64_t step, Slot (&slots)[2], Ranges&& ranges,
                                   RoundTrip&& round_trip) {
  if (n > 0) ranges(0, slots[0]);
  for (int64_t start = 0, b = 0; start < n; start += step, ++b) {
    if (start + step < n) ranges(start + step, slots[(b + 1) % 2]);
    round_trip(start, slots[b % 2]);
  }
}

// The statistics pass of a sequence-global format over the n values of one
// head: min and max (+0 for -0) and, where the mode keeps error sums, sum
// x^2 and max|x| too, so that the round-trip pass does not redo them. This
// pass reads the head from memory; the round trip then finds it in cache.
template <Mode kMode, class SourceRef>
void ScanHead(const SourceRef& source, int64_t n, float& min, float& max, Totals& totals) {
  const auto in = source;  // A copy: stores elsewhere cannot change its pointer.
  constexpr float kInf = std::numeric_limits<float>::infinity();
  __m512 lo0 = _mm512_set1_ps(kInf), hi0 = _mm512_set1_ps(-kInf), lo1 = lo0, hi1 = hi0;
  __m512 sq_even = _mm512_setzero_ps(), sq_odd = sq_even;
  __m512d sq_lo = _mm512_setzero_pd(), sq_hi = sq_lo;
  int terms = 0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 x0 = in.Load(i), x1 = in.Load(i + 16);
    lo0 = _mm512_min_ps(lo0, x0);
    hi0 = _mm512_max_ps(hi0, x0);
    lo1 = _mm512_min_ps(lo1, x1);
    hi1 = _mm512_max_ps(hi1, x1);
    AddSquares<kMode.sums>(x0, sq_even, sq_lo, sq_hi);
    AddSquares<kMode.sums>(x1, sq_odd, sq_lo, sq_hi);
    if (kMode.sums == Sums::kHalf && ++terms == kFoldTerms) {
      FoldInto(sq_even, sq_odd, sq_lo, sq_hi);
      sq_even = sq_odd = _mm512_setzero_ps();
      terms = 0;
    }
  }
  if (i < n) {
    const __m512 x = in.Load(i);
    lo0 = _mm512_min_ps(lo0, x);
    hi0 = _mm512_max_ps(hi0, x);
    AddSquares<kMode.sums>(x, sq_even, sq_lo, sq_hi);
  }
  BlockMinMax(_mm512_min_ps(lo0, lo1), _mm512_max_ps(hi0, hi1), min, max);
  if (n == 0) min = max = 0;
  if constexpr (kMode.sums == Sums::kHalf) FoldInto(sq_even, sq_odd, sq_lo, sq_hi);
  if constexpr (kMode.sums != Sums::kNone) {
    totals.sum_sq += _mm512_reduce_add_pd(_mm512_add_pd(sq_lo, sq_hi));
    totals.finite = totals.finite && std::isfinite(totals.sum_sq);
    totals.max_abs = std::max({totals.max_abs, std::fabs(min), std::fabs(max)});
  }
}

// Rows [t0, t1) of a [tokens, d] head through `row`: row.Begin(t) sets the
// row's parameters, row.One(i, j, x) maps the 16 values at flat index i and
// column j, and row.Two(i, j, ...) (where a row has it) the 32 at i and i +
// 16 at once. Row::kFlat: Begin does nothing and the mapping does not
// depend on the column, so the rows run as one. Row::kTinyErrors: an error
// from an fp16 source can square to a float subnormal (see Sums). The
// accumulators and the row are this function's locals, so that they can stay
// in registers; two sets
// of accumulators, for the even and the odd vector of each pair, so that
// consecutive FMAs do not wait for each other.
template <Mode kMode, class SourceRef, class Row>
void RowLoop(const SourceRef& source, int64_t t0, int64_t t1, int d, float* y, Totals& totals,
             Row row) {
  constexpr Sums kSums = kMode.sums;
  constexpr bool kSquares = kMode.squares;
  constexpr bool kScaleErrors = kSums == Sums::kHalf && Row::kTinyErrors;
  const auto in = source;  // A copy: stores to y cannot change its pointer.
  const __m512 zero = _mm512_setzero_ps();
  __m512 sse_even = zero, sse_odd = zero, sq_even = zero, sq_odd = zero;
  __m512 amax = zero, check_even = zero, check_odd = zero;
  __m512d sse_lo = _mm512_setzero_pd(), sse_hi = sse_lo, sq_lo = sse_lo, sq_hi = sse_lo;
  int terms = 0;  // Per float lane since the last fold.

  auto put = [&](int64_t i, __m512 x, __m512 v, __m512& sse, __m512& sq, __m512& check) {
    if constexpr (kMode.store) _mm512_storeu_ps(y + i, v);
    if constexpr (kSums == Sums::kNone) {
      check = _mm512_add_ps(check, _mm512_sub_ps(x, x));  // NaN from here on if x is not finite.
    } else {
      if constexpr (kSquares) amax = _mm512_max_ps(amax, _mm512_abs_ps(x));
      if constexpr (kSums == Sums::kHalf) {
        __m512 e = _mm512_sub_ps(x, v);
        if constexpr (kScaleErrors) e = _mm512_mul_ps(e, _mm512_set1_ps(kErrorScale));
        sse = _mm512_fmadd_ps(e, e, sse);
        if constexpr (kSquares) sq = _mm512_fmadd_ps(x, x, sq);  // Inf/NaN stay: the check.
      } else {
        for (int h = 0; h < 2; ++h) {
          const __m512d xd = LanesToDouble(x, h);
          const __m512d e = _mm512_sub_pd(xd, LanesToDouble(v, h));
          // x^2 is exact in double, so fmadd rounds like multiply-then-add;
          // e^2 is too unless x and y are 2^29 apart.
          (h == 0 ? sse_lo : sse_hi) = _mm512_fmadd_pd(e, e, h == 0 ? sse_lo : sse_hi);
          if constexpr (kSquares)
            (h == 0 ? sq_lo : sq_hi) = _mm512_fmadd_pd(xd, xd, h == 0 ? sq_lo : sq_hi);
        }
      }
    }
  };
  auto fold = [&] {
    FoldInto(sse_even, sse_odd, sse_lo, sse_hi);
    if constexpr (kSquares) FoldInto(sq_even, sq_odd, sq_lo, sq_hi);
    sse_even = sse_odd = sq_even = sq_odd = zero;
    terms = 0;
  };

  constexpr bool kPairs = requires(__m512 v) { row.Two(0, 0, v, v, v, v); };
  if (kPairs) KVQ_CHECK(d % 32 == 0);
  // The values [i, i + 32) at (t, j) and, for rows without Two, a last 16.
  auto pair = [&](int64_t i, int j) {
    const __m512 x0 = in.Load(i), x1 = in.Load(i + 16);
    __m512 v0, v1;
    if constexpr (kPairs) {
      row.Two(i, j, x0, x1, v0, v1);
    } else {
      v0 = row.One(i, j, x0);
      v1 = row.One(i + 16, j + 16, x1);
    }
    put(i, x0, v0, sse_even, sq_even, check_even);
    put(i + 16, x1, v1, sse_odd, sq_odd, check_odd);
  };
  auto single = [&](int64_t i, int j) {
    if constexpr (!kPairs) {
      const __m512 x = in.Load(i);
      put(i, x, row.One(i, j, x), sse_even, sq_even, check_even);
    }
  };
  // Stretches of at most kFoldTerms vectors per accumulator, with the fold
  // check once per stretch.
  auto fold_before = [&](int64_t values) {
    const int stretch = static_cast<int>((values + 31) / 32);
    if (kSums == Sums::kHalf && terms + stretch > kFoldTerms) fold();
    terms += stretch;
  };

  if constexpr (Row::kFlat) {
    // Parameters independent of the position: the rows as one run (the
    // column passed on is meaningless there).
    const int64_t begin = t0 * d, end = t1 * d;
    for (int64_t i0 = begin; i0 < end;) {
      const int64_t i1 = std::min(end, i0 + 32 * kFoldTerms);
      fold_before(i1 - i0);
      for (; i0 + 32 <= i1; i0 += 32) pair(i0, 0);
      if (i0 < i1) {
        single(i0, 0);
        i0 += 16;
      }
    }
  } else {
    for (int64_t t = t0; t < t1; ++t) {
      row.Begin(t);
      for (int j = 0; j < d;) {
        const int end = std::min(d, j + 32 * kFoldTerms);
        fold_before(end - j);
        for (; j + 32 <= end; j += 32) pair(t * d + j, j);
        if (j < end) {
          single(t * d + j, j);
          j += 16;
        }
      }
    }
  }

  if constexpr (kSums == Sums::kNone) {
    totals.finite =
        totals.finite && _mm512_reduce_add_ps(_mm512_add_ps(check_even, check_odd)) == 0;
  } else {
    if constexpr (kSums == Sums::kHalf) fold();
    const double scale =
        kScaleErrors ? 1.0 / (static_cast<double>(kErrorScale) * kErrorScale) : 1.0;
    totals.sse += _mm512_reduce_add_pd(_mm512_add_pd(sse_lo, sse_hi)) * scale;
    if constexpr (kSquares) AddSquareSums(sq_lo, sq_hi, amax, totals);
  }
}

// ---------------------------------------------------------------------------
// int<b>: the element math of kernels.h's IntKernel, 16 lanes at a time.
// Bounds come first in max/min so that equal values (signed zeros) give the
// same operand std::max(q, lo) / std::min(q, hi) give.

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

struct IntParams {
  float s, offset, keep;
  SplitReciprocal reciprocal;  // Of s.
};

// split: compute s's split reciprocal (two divisions); otherwise the round
// trip divides.
template <bool kAsym>
IntParams MakeParams(float lo, float hi, int levels, bool split = true) {
  IntParams p{};
  if (kAsym) {
    p.s = static_cast<float>(levels) / (hi - lo);
    const bool ok = hi != lo && std::isfinite(p.s) && p.s > 0;
    p.keep = ok ? 1.0f : 0.0f;
    p.s = ok ? p.s : 1.0f;
    p.offset = lo;
  } else {
    const float amax = std::max(std::fabs(lo), std::fabs(hi));
    p.s = static_cast<float>(levels) / amax;
    const bool ok = amax != 0 && std::isfinite(p.s);
    p.keep = ok ? 1.0f : 0.0f;
    p.s = ok ? p.s : 1.0f;
    p.offset = 0.0f;
  }
  if (split) {
    p.reciprocal = MakeSplitReciprocal(p.s);
  } else {
    p.reciprocal.divide = true;
  }
  // IntElement: -0 + a zero quotient keeps the quotient's sign.
  if (kAsym && p.offset == 0 && std::signbit(p.offset)) p.reciprocal.divide = true;
  return p;
}

// Sixteen parameter sets in lanes, MakeParams lane by lane (the same IEEE
// operations, so the same values; kSplit as its split).
struct IntParamLanes {
  __m512 s, offset, keep, hi, lo;
  __mmask16 divide;
};

template <bool kAsym, bool kSplit>
KVQ_INLINE IntParamLanes MakeParamLanes(__m512 lo, __m512 hi, float levels) {
  const __m512 vlevels = _mm512_set1_ps(levels), one = _mm512_set1_ps(1.0f);
  const __m512 zero = _mm512_setzero_ps();
  const __m512 fmax = _mm512_set1_ps(std::numeric_limits<float>::max());
  IntParamLanes p;
  __mmask16 ok;
  if constexpr (kAsym) {
    const __m512 s = _mm512_div_ps(vlevels, _mm512_sub_ps(hi, lo));
    ok = _mm512_cmp_ps_mask(hi, lo, _CMP_NEQ_UQ) &
         _mm512_cmp_ps_mask(_mm512_abs_ps(s), fmax, _CMP_LE_OQ) &
         _mm512_cmp_ps_mask(s, zero, _CMP_GT_OQ);
    p.s = _mm512_mask_blend_ps(ok, one, s);
    p.offset = lo;
  } else {
    const __m512 amax = _mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi));
    const __m512 s = _mm512_div_ps(vlevels, amax);
    ok = _mm512_cmp_ps_mask(amax, zero, _CMP_NEQ_UQ) &
         _mm512_cmp_ps_mask(_mm512_abs_ps(s), fmax, _CMP_LE_OQ);
    p.s = _mm512_mask_blend_ps(ok, one, s);
    p.offset = zero;
  }
  p.keep = _mm512_maskz_mov_ps(ok, one);
  if constexpr (!kSplit) {
    p.hi = p.lo = zero;
    p.divide = 0xffff;
    return p;
  }
  MakeSplitReciprocal(p.s, p.hi, p.lo);
  p.divide = NeedsDivision(p.s);
  if constexpr (kAsym) {  // An offset of -0, as in MakeParams.
    p.divide |= _mm512_cmpeq_epi32_mask(_mm512_castps_si512(p.offset),
                                        _mm512_set1_epi32(static_cast<int>(0x80000000u)));
  }
  return p;
}

// One set of parameters in lanes (one value each, or one per lane).
struct IntLanes {
  __m512 s, offset, hi, lo;  // hi, lo: s's split reciprocal.
  __mmask16 keep;
  bool divide;  // Some lane's s needs the division.
  IntLanes() = default;
  explicit IntLanes(const IntParams& p)
      : s(_mm512_set1_ps(p.s)),
        offset(_mm512_set1_ps(p.offset)),
        hi(_mm512_set1_ps(p.reciprocal.hi)),
        lo(_mm512_set1_ps(p.reciprocal.lo)),
        keep(p.keep != 0 ? 0xffff : 0),
        divide(p.reciprocal.divide) {}
};

// clamp = false where the parameters come from the very values being
// quantized (the block's own min / max): then the clamp is a no-op. With
// s = fl(levels / r) for the float range r, |x * s| (or (x - lo) * s, which
// is >= +0) is at most levels * (1 + 2^-23) before rounding, so it rounds to
// at most levels, and a -0 or +0 stays what the clamp would leave.
template <IntOptions kInt>
KVQ_INLINE __m512 IntElement(__m512 x, const IntLanes& p, __m512 top) {
  constexpr int kMode =
      (kInt.trunc ? _MM_FROUND_TO_ZERO : _MM_FROUND_TO_NEAREST_INT) | _MM_FROUND_NO_EXC;
  constexpr bool kClamp = kInt.clamp;
  if constexpr (kInt.asym) {
    __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_sub_ps(x, p.offset), p.s), kMode);
    if constexpr (kClamp) q = _mm512_min_ps(top, _mm512_max_ps(_mm512_setzero_ps(), q));
    // A zero quotient's sign shows only through an offset of -0 (MakeParams
    // divides there).
    const __m512 quotient = !kInt.split || p.divide
                                ? _mm512_div_ps(q, p.s)
                                : SplitReciprocalQuotient(0xffff, q, p.hi, p.lo);
    return _mm512_mask_blend_ps(p.keep, p.offset, _mm512_add_ps(quotient, p.offset));
  } else {
    __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(x, p.s), kMode);
    if constexpr (kClamp) {
      q = _mm512_min_ps(top, _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), top), q));
    }
    if (!kInt.split || p.divide) return _mm512_maskz_div_ps(p.keep, q, p.s);
    // Only a stored y needs the -0 of q = -0; the error is the same.
    if constexpr (kInt.store) return SignedSplitReciprocalQuotient(p.keep, q, p.hi, p.lo);
    return SplitReciprocalQuotient(p.keep, q, p.hi, p.lo);
  }
}

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
  IntLanes p;
  __m512 top;
  IntUniformRow(const IntParams& params, __m512 top_) : p(params), top(top_) {}
  void Begin(int64_t) {}
  KVQ_INLINE __m512 One(int64_t, int, __m512 x) const { return IntElement<kInt>(x, p, top); }
};

// Lane k of the result = op over the 16 lanes of v[k]: 15 ops and 30
// shuffles for 16 horizontal reductions, where one at a time takes 4 ops
// and 4 shuffles each and a long dependency chain. The shuffle network
// leaves token T in lane 4 (T % 4) + T / 4 (a 4 x 4 transpose), undone by the
// final permute.
template <class Op>
KVQ_INLINE __m512 ReduceEach(__m512 (&v)[16], Op op) {
  __m512 w[8], u[4], r[2];
  for (int k = 0; k < 8; ++k) {  // v[2k] into 128-bit chunks 0-1, v[2k+1] into 2-3.
    w[k] = op(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
              _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  for (int k = 0; k < 4; ++k) {  // Chunk c: v[4k + c], 4 values.
    u[k] = op(_mm512_shuffle_f32x4(w[2 * k], w[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0)),
              _mm512_shuffle_f32x4(w[2 * k], w[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  for (int k = 0; k < 2; ++k) {  // Chunk c: v[8k + c] then v[8k + 4 + c], 2 values each.
    r[k] = op(_mm512_shuffle_ps(u[2 * k], u[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
              _mm512_shuffle_ps(u[2 * k], u[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  const __m512 out = op(_mm512_shuffle_ps(r[0], r[1], _MM_SHUFFLE(2, 0, 2, 0)),
                        _mm512_shuffle_ps(r[0], r[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, out);
}

// The parameters of 16 tokens from their ranges in lanes (lo, hi: per-lane
// min and max; for symmetric formats hi holds max |x| and lo is unused), as
// MakeParams computes them one by one (the same IEEE operations, so the same
// values).
template <IntOptions kInt>
KVQ_INLINE IntParamLanes TokenParams(__m512 (&lo)[16], __m512 (&hi)[16], float levels) {
  const __m512 max = ReduceEach(hi, [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); });
  if constexpr (kInt.asym) {
    // +0 turns -0 into +0, as BlockMinMax does.
    const __m512 zero = _mm512_setzero_ps();
    const __m512 min = ReduceEach(lo, [](__m512 a, __m512 b) { return _mm512_min_ps(a, b); });
    return MakeParamLanes<true, true>(_mm512_add_ps(min, zero), _mm512_add_ps(max, zero), levels);
  } else {
    return MakeParamLanes<false, true>(max, max, levels);
  }
}

// Parameters per token (g == head_dim), computed 16 tokens at a time when
// Begin reaches a new batch: the horizontal min / max and the scale's
// division run 16 lanes wide, as MakeParams does them one by one (the same
// IEEE operations, so the same values). kSquares: the batch pass also sums
// x^2 and max|x| into *totals (at most 16 terms per float lane, then
// double), so the round trip skips them.
template <IntOptions kInt, Sums kSquares, class Source>
struct IntTokenRow {
  static constexpr bool kAsym = kInt.asym;
  static constexpr bool kFlat = false, kTinyErrors = false;
  static constexpr int kBatch = 16;
  Source in;
  int d;
  float levels;
  int64_t end;  // One past the last token this row object sees.
  Totals* totals = nullptr;
  int64_t batch = -1;
  IntLanes p{};
  alignas(64) float scales[kBatch] = {}, offsets[kBatch] = {}, keeps[kBatch] = {}, his[kBatch] = {},
                    los[kBatch] = {};
  uint32_t divides = 0;  // Bit k: token k's scale needs the division.

  void Batch(int64_t t0) {
    constexpr float kInf = std::numeric_limits<float>::infinity();
    const int64_t count = std::min<int64_t>(kBatch, end - t0);
    __m512 lo[kBatch], hi[kBatch], amax = _mm512_setzero_ps();
    __m512d sq_lo = _mm512_setzero_pd(), sq_hi = sq_lo;
    __m512 sq = _mm512_setzero_ps();
    int terms = 0;  // Per float lane of sq since the last fold.
    for (int k = 0; k < kBatch; ++k) {
      __m512 vlo = _mm512_set1_ps(kInf), vhi = _mm512_set1_ps(-kInf);
      if (kSquares == Sums::kHalf && terms + d / 16 > kFoldTerms) {
        FoldInto(sq, _mm512_setzero_ps(), sq_lo, sq_hi);
        sq = _mm512_setzero_ps();
        terms = 0;
      }
      terms += d / 16;
      for (int j = 0; k < count && j < d; j += 16) {
        const __m512 x = in.Load((t0 + k) * d + j);
        if (kAsym) {
          vlo = _mm512_min_ps(vlo, x);
          vhi = _mm512_max_ps(vhi, x);
        } else {
          vhi = _mm512_max_ps(vhi, _mm512_abs_ps(x));
        }
        AddSquares<kSquares>(x, sq, sq_lo, sq_hi);
      }
      if (kSquares != Sums::kNone && k < count) {
        amax = _mm512_max_ps(amax,
                             kAsym ? _mm512_max_ps(_mm512_abs_ps(vlo), _mm512_abs_ps(vhi)) : vhi);
      }
      lo[k] = vlo;
      hi[k] = vhi;
    }
    if constexpr (kSquares == Sums::kHalf) FoldInto(sq, _mm512_setzero_ps(), sq_lo, sq_hi);
    if constexpr (kSquares != Sums::kNone) {
      AddSquareSums(sq_lo, sq_hi, amax, *totals);
    }
    const IntParamLanes p16 = TokenParams<kInt>(lo, hi, levels);
    _mm512_store_ps(scales, p16.s);
    _mm512_store_ps(offsets, p16.offset);
    _mm512_store_ps(keeps, p16.keep);
    _mm512_store_ps(his, p16.hi);
    _mm512_store_ps(los, p16.lo);
    divides = p16.divide;
    batch = t0;
  }
  KVQ_INLINE void Begin(int64_t t) {
    if (batch < 0 || t - batch >= kBatch) Batch(t);
    const int64_t k = t - batch;
    p.s = _mm512_set1_ps(scales[k]);
    p.offset = _mm512_set1_ps(offsets[k]);
    p.hi = _mm512_set1_ps(his[k]);
    p.lo = _mm512_set1_ps(los[k]);
    p.keep = keeps[k] != 0 ? 0xffff : 0;
    p.divide = (divides >> k) & 1;
  }
  KVQ_INLINE __m512 One(int64_t, int, __m512 x) const {
    return IntElement<Unclamped(kInt)>(x, p, _mm512_set1_ps(levels));
  }
};

// The per-token int formats for head_dim 16 * kVec (64, 128) from an fp16
// source with error sums (kvq quant's path), as IntTokenRow + RowLoop
// compute them (the same operations per value, so the same y and the same
// error bounds), without the generic loop's per-vector bookkeeping. Per batch
// of 16 tokens: their ranges, then their round trips. The range pass keeps
// the widened values in an L1 buffer for the round trip: a second vcvtph2ps
// per vector cost more than the store and the reload (measured: +20%). Four
// accumulators per sum, folded into double (in pairs, as FoldInto does)
// before a lane holds kFoldTerms terms.
template <int kVec, Mode kMode, IntOptions kInt, class Source>
void IntTokenHead(const Source& source, int64_t tokens, float levels, float* y, Totals& totals) {
  static_assert(kMode.sums == Sums::kHalf && kVec % 4 == 0);
  constexpr bool kAsym = kInt.asym;
  constexpr int d = 16 * kVec, kBatch = 16, kAcc = 4;
  constexpr int kFoldTokens = kFoldTerms / (kVec / kAcc);  // Tokens between folds.
  static_assert(kBatch % kFoldTokens == 0);
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const Source in = source;  // A copy: stores to y cannot change its pointer.
  const __m512 zero = _mm512_setzero_ps(), top = _mm512_set1_ps(levels);
  __m512 sse[kAcc], sq[kAcc], amax = zero;
  for (int a = 0; a < kAcc; ++a) sse[a] = sq[a] = zero;
  __m512d sse_lo = _mm512_setzero_pd(), sse_hi = sse_lo, sq_lo = sse_lo, sq_hi = sse_lo;
  // Two batches in flight: a batch's scales take three divisions in a chain.
  struct Slot {
    alignas(64) float scales[kBatch], offsets[kBatch], his[kBatch], los[kBatch];
    alignas(64) float xs[kBatch * d];
    __mmask16 keeps, divides;
    int count;
  } slots[2];
  auto ranges = [&](int64_t t0, Slot& slot) {
    slot.count = static_cast<int>(std::min<int64_t>(kBatch, tokens - t0));
    __m512 lo[kBatch], hi[kBatch];
    for (int k = 0; k < kBatch; ++k) {
      __m512 vlo = _mm512_set1_ps(kInf), vhi = _mm512_set1_ps(-kInf);
      if (k < slot.count) {
        for (int v = 0; v < kVec; ++v) {
          const __m512 x = in.Load((t0 + k) * d + 16 * v);
          _mm512_store_ps(slot.xs + k * d + 16 * v, x);
          if (kAsym) {
            vlo = _mm512_min_ps(vlo, x);
            vhi = _mm512_max_ps(vhi, x);
          } else {
            vhi = _mm512_max_ps(vhi, _mm512_abs_ps(x));
          }
          sq[v % kAcc] = _mm512_fmadd_ps(x, x, sq[v % kAcc]);
        }
        amax = _mm512_max_ps(amax,
                             kAsym ? _mm512_max_ps(_mm512_abs_ps(vlo), _mm512_abs_ps(vhi)) : vhi);
      }
      if ((k + 1) % kFoldTokens == 0) FoldFour(sq, sq_lo, sq_hi);
      lo[k] = vlo;
      hi[k] = vhi;
    }
    const IntParamLanes p16 = TokenParams<kInt>(lo, hi, levels);
    _mm512_store_ps(slot.scales, p16.s);
    _mm512_store_ps(slot.offsets, p16.offset);
    _mm512_store_ps(slot.his, p16.hi);
    _mm512_store_ps(slot.los, p16.lo);
    slot.keeps = _mm512_cmp_ps_mask(p16.keep, zero, _CMP_NEQ_OQ);
    slot.divides = p16.divide;
  };
  auto round_trip = [&](int64_t t0, const Slot& slot) {
    for (int k = 0; k < slot.count; ++k) {
      IntLanes p;
      p.s = _mm512_set1_ps(slot.scales[k]);
      p.offset = _mm512_set1_ps(slot.offsets[k]);
      p.hi = _mm512_set1_ps(slot.his[k]);
      p.lo = _mm512_set1_ps(slot.los[k]);
      p.keep = (slot.keeps >> k) & 1 ? 0xffff : 0;
      p.divide = (slot.divides >> k) & 1;
      for (int v = 0; v < kVec; ++v) {
        const __m512 x = _mm512_load_ps(slot.xs + k * d + 16 * v);
        const __m512 yv = IntElement<Unclamped(kInt)>(x, p, top);
        if constexpr (kMode.store) _mm512_storeu_ps(y + (t0 + k) * d + 16 * v, yv);
        const __m512 e = _mm512_sub_ps(x, yv);
        sse[v % kAcc] = _mm512_fmadd_ps(e, e, sse[v % kAcc]);
      }
      if ((k + 1) % kFoldTokens == 0 || k + 1 == slot.count) FoldFour(sse, sse_lo, sse_hi);
    }
  };
  TwoBatchesInFlight(tokens, kBatch, slots, ranges, round_trip);
  totals.sse += _mm512_reduce_add_pd(_mm512_add_pd(sse_lo, sse_hi));
  AddSquareSums(sq_lo, sq_hi, amax, totals);
}

// Parameters per group of g values along head_dim, computed from the row in
// Begin. g is a multiple of 16. Instantiated Dividing: two more divisions
// per group cost about what they save over g values.
template <IntOptions kInt, class Source>
struct IntGroupDimRow {
  static constexpr bool kAsym = kInt.asym;
  static constexpr bool kFlat = false, kTinyErrors = false;
  const Source& in;
  int d, g, levels;
  __m512 top;
  IntParams params[kMaxGroupsPerRow] = {};
  IntUniformRow<kInt> first{MakeParams<false>(0, 0, 1), top};  // Group 0, in registers.

  KVQ_INLINE void Begin(int64_t t) {
    constexpr float kInf = std::numeric_limits<float>::infinity();
    for (int c0 = 0, k = 0; c0 < d; c0 += g, ++k) {
      const int64_t i0 = t * d + c0;
      __m512 vlo = _mm512_set1_ps(kInf), vhi = _mm512_set1_ps(-kInf);
      for (int j = 0; j < g; j += 16) {
        const __m512 x = in.Load(i0 + j);
        if (kAsym) {
          vlo = _mm512_min_ps(vlo, x);
          vhi = _mm512_max_ps(vhi, x);
        } else {
          vhi = _mm512_max_ps(vhi, _mm512_abs_ps(x));
        }
      }
      if (kAsym) {
        float min, max;
        BlockMinMax(vlo, vhi, min, max);
        params[k] = MakeParams<true>(min, max, levels, kInt.split);
      } else {
        const float amax = _mm512_reduce_max_ps(vhi);
        params[k] = MakeParams<false>(-amax, amax, levels, kInt.split);
      }
    }
    first = IntUniformRow<kInt>(params[0], top);
  }
  KVQ_INLINE __m512 One(int64_t t, int j, __m512 x) const {
    if (j < g) return first.One(t, j, x);
    return IntUniformRow<kInt>(params[j / g], top).One(t, j, x);
  }
};

// Parameters per channel (channel, g<N>:token). Instantiated Dividing: the
// scales change from vector to vector, and loading a split reciprocal too
// costs more than the division it saves (measured).
template <IntOptions kInt>
struct IntChannelRow {
  static constexpr bool kFlat = false, kTinyErrors = false;
  const float *s, *offset, *keep;
  __m512 top;
  void Begin(int64_t) {}
  KVQ_INLINE __m512 One(int64_t, int j, __m512 x) const {
    IntLanes p{};
    p.s = _mm512_loadu_ps(s + j);
    p.offset = _mm512_loadu_ps(offset + j);
    p.keep = _mm512_cmp_ps_mask(_mm512_loadu_ps(keep + j), _mm512_setzero_ps(), _CMP_NEQ_OQ);
    return IntElement<kInt>(x, p, top);
  }
};

// Per-channel min / max of rows [t0, t1) of a head with d = 16 * kVec into
// lo / hi (+0 for -0), in registers; where the mode keeps error sums, also
// sum x^2 and max|x| (the round trip then skips them, as after ScanHead).
template <int kVec, Mode kMode, class Source>
void ChannelScan(const Source& source, int64_t t0, int64_t t1, float* lo, float* hi,
                 Totals& totals) {
  static_assert(kVec % 2 == 0);
  constexpr int d = 16 * kVec;
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const Source in = source;
  __m512 vlo[kVec], vhi[kVec];
  for (int k = 0; k < kVec; ++k) {
    vlo[k] = _mm512_set1_ps(kInf);
    vhi[k] = _mm512_set1_ps(-kInf);
  }
  __m512 sq_even = _mm512_setzero_ps(), sq_odd = sq_even;
  __m512d sq_lo = _mm512_setzero_pd(), sq_hi = sq_lo;
  int terms = 0;
  for (int64_t t = t0; t < t1; ++t) {
    for (int k = 0; k < kVec; ++k) {
      const __m512 x = in.Load(t * d + 16 * k);
      vlo[k] = _mm512_min_ps(vlo[k], x);
      vhi[k] = _mm512_max_ps(vhi[k], x);
      AddSquares<kMode.sums>(x, k % 2 == 0 ? sq_even : sq_odd, sq_lo, sq_hi);
    }
    if constexpr (kMode.sums == Sums::kHalf) {
      terms += kVec / 2;
      if (terms + kVec / 2 > kFoldTerms) {
        FoldInto(sq_even, sq_odd, sq_lo, sq_hi);
        sq_even = sq_odd = _mm512_setzero_ps();
        terms = 0;
      }
    }
  }
  __m512 amax = _mm512_setzero_ps();
  for (int k = 0; k < kVec; ++k) {
    const __m512 zero = _mm512_setzero_ps();
    vlo[k] = _mm512_add_ps(vlo[k], zero);
    vhi[k] = _mm512_add_ps(vhi[k], zero);
    _mm512_storeu_ps(lo + 16 * k, vlo[k]);
    _mm512_storeu_ps(hi + 16 * k, vhi[k]);
    amax = _mm512_max_ps(amax, _mm512_max_ps(_mm512_abs_ps(vlo[k]), _mm512_abs_ps(vhi[k])));
  }
  if constexpr (kMode.sums == Sums::kHalf) FoldInto(sq_even, sq_odd, sq_lo, sq_hi);
  if constexpr (kMode.sums != Sums::kNone) {
    if (t1 > t0) totals.max_abs = std::max(totals.max_abs, _mm512_reduce_max_ps(amax));
    totals.sum_sq += _mm512_reduce_add_pd(_mm512_add_pd(sq_lo, sq_hi));
    totals.finite = totals.finite && std::isfinite(totals.sum_sq);
  }
}

// The round trip of rows [t0, t1) of a head with per-channel parameters and
// head_dim 16 * kVec (64, 128) from an fp16 source with error sums (kvq
// quant's path), as IntChannelRow + RowLoop compute it (the same operations
// per value, so the same y and error bounds). With the parameters in
// registers the split reciprocal pays; a vector of channels with a lane that
// needs the division divides.
template <int kVec, Mode kMode, IntOptions kInt, class Source>
void IntChannelRoundTrip(const Source& source, int64_t t0, int64_t t1, const float* lo,
                         const float* hi, float levels, float* y, Totals& totals) {
  static_assert(kMode.sums == Sums::kHalf && !kMode.squares && kVec % 4 == 0);
  constexpr int d = 16 * kVec, kAcc = 4;
  constexpr int kFoldTokens = kFoldTerms / (kVec / kAcc);  // Tokens between folds.
  const Source in = source;  // A copy: stores to y cannot change its pointer.
  const __m512 zero = _mm512_setzero_ps(), top = _mm512_set1_ps(levels);
  IntLanes p[kVec];
  for (int v = 0; v < kVec; ++v) {
    const IntParamLanes lanes = MakeParamLanes<kInt.asym, true>(
        _mm512_loadu_ps(lo + 16 * v), _mm512_loadu_ps(hi + 16 * v), levels);
    p[v].s = lanes.s;
    p[v].offset = lanes.offset;
    p[v].hi = lanes.hi;
    p[v].lo = lanes.lo;
    p[v].keep = _mm512_cmp_ps_mask(lanes.keep, zero, _CMP_NEQ_OQ);
    p[v].divide = lanes.divide != 0;
  }
  __m512 sse[kAcc];
  for (int a = 0; a < kAcc; ++a) sse[a] = zero;
  __m512d sse_lo = _mm512_setzero_pd(), sse_hi = sse_lo;
  for (int64_t t = t0; t < t1; ++t) {
    for (int v = 0; v < kVec; ++v) {
      const int64_t i = t * d + 16 * v;
      const __m512 x = in.Load(i);
      const __m512 yv = IntElement<kInt>(x, p[v], top);
      if constexpr (kMode.store) _mm512_storeu_ps(y + i, yv);
      const __m512 e = _mm512_sub_ps(x, yv);
      sse[v % kAcc] = _mm512_fmadd_ps(e, e, sse[v % kAcc]);
    }
    if ((t - t0 + 1) % kFoldTokens == 0 || t + 1 == t1) FoldFour(sse, sse_lo, sse_hi);
  }
  totals.sse += _mm512_reduce_add_pd(_mm512_add_pd(sse_lo, sse_hi));
}

template <Mode kMode, bool kAsym, bool kTrunc, class Source>
void IntHead(const FormatSpec& f, const HeadStats* stats, const Source& in, int64_t tokens, int d,
             int64_t chunk_len, float* y, Totals& totals) {
  constexpr IntOptions kInt{kAsym, kTrunc, true, kMode.store};
  constexpr IntOptions kChannels = Dividing(kInt);
  const int levels = kAsym ? (1 << f.bits) - 1 : (1 << (f.bits - 1)) - 1;
  const __m512 top = _mm512_set1_ps(static_cast<float>(levels));
  const int64_t n = tokens * d;
  constexpr float kInf = std::numeric_limits<float>::infinity();

  // Per-channel parameters [d] (channel, g<N>:token).
  std::vector<float> ps(static_cast<size_t>(d)), po(ps.size()), pk(ps.size());
  std::vector<float> lo(ps.size()), hi(ps.size());
  auto set_channels = [&] {
    for (int c = 0; c < d; c += 16) {
      const IntParamLanes p = MakeParamLanes<kAsym, kChannels.split>(
          _mm512_loadu_ps(lo.data() + c), _mm512_loadu_ps(hi.data() + c), levels);
      _mm512_storeu_ps(ps.data() + c, p.s);
      _mm512_storeu_ps(po.data() + c, p.offset);
      _mm512_storeu_ps(pk.data() + c, p.keep);
    }
  };
  IntChannelRow<kChannels> channel_row{ps.data(), po.data(), pk.data(), top};
  // Per-channel min / max of rows [t0, t1) into lo / hi, +0 normalised.
  auto channel_ranges = [&](int64_t t0, int64_t t1) {
    std::fill(lo.begin(), lo.end(), kInf);
    std::fill(hi.begin(), hi.end(), -kInf);
    for (int64_t t = t0; t < t1; ++t) {
      for (int j = 0; j < d; j += 16) {
        const __m512 x = in.Load(t * d + j);
        _mm512_storeu_ps(lo.data() + j, _mm512_min_ps(_mm512_loadu_ps(lo.data() + j), x));
        _mm512_storeu_ps(hi.data() + j, _mm512_max_ps(_mm512_loadu_ps(hi.data() + j), x));
      }
    }
    for (int c = 0; c < d; ++c) {
      lo[static_cast<size_t>(c)] += 0.0f;
      hi[static_cast<size_t>(c)] += 0.0f;
    }
  };

  // Per-channel ranges, in registers for head_dim 64 and 128; true when the
  // scan also summed x^2 (then the round trip does not).
  auto scan_channels = [&](int64_t t0, int64_t t1) {
    if (d == 64) {
      ChannelScan<4, kMode>(in, t0, t1, lo.data(), hi.data(), totals);
    } else if (d == 128) {
      ChannelScan<8, kMode>(in, t0, t1, lo.data(), hi.data(), totals);
    } else {
      channel_ranges(t0, t1);
      return false;
    }
    return kMode.sums != Sums::kNone;
  };
  // Rows [t0, t1) with the channel ranges in lo / hi. squared: the ranges
  // come from these very rows (scan_channels), so the specialised round trips
  // may leave out the clamp; they make their own parameters.
  auto round_trip = [&](int64_t t0, int64_t t1, bool squared) {
    if constexpr (kMode.sums == Sums::kHalf) {
      if (squared && d == 64) {
        return IntChannelRoundTrip<4, WithoutSquares(kMode), Unclamped(kInt)>(
            in, t0, t1, lo.data(), hi.data(), static_cast<float>(levels), y, totals);
      }
      if (squared && d == 128) {
        return IntChannelRoundTrip<8, WithoutSquares(kMode), Unclamped(kInt)>(
            in, t0, t1, lo.data(), hi.data(), static_cast<float>(levels), y, totals);
      }
    }
    set_channels();
    if (squared) {
      RowLoop<WithoutSquares(kMode)>(in, t0, t1, d, y, totals, channel_row);
    } else {
      RowLoop<kMode>(in, t0, t1, d, y, totals, channel_row);
    }
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
        RowLoop<kMode>(in, 0, tokens, d, y, totals, IntUniformRow<kInt>(p, top));
      } else {
        RowLoop<WithoutSquares(kMode)>(in, 0, tokens, d, y, totals,
                                       IntUniformRow<Unclamped(kInt)>(p, top));
      }
      break;
    }
    case Granularity::kChannel:
      if (stats != nullptr) {
        KVQ_CHECK(static_cast<int>(stats->channel_min.size()) == d);
        lo = stats->channel_min;
        hi = stats->channel_max;
        round_trip(0, tokens, false);
      } else {
        round_trip(0, tokens, scan_channels(0, tokens));
      }
      break;
    case Granularity::kToken: {
      const float top_level = static_cast<float>(levels);
      if constexpr (kMode.sums == Sums::kHalf) {
        if (d == 64) {
          IntTokenHead<4, kMode, kInt>(in, tokens, top_level, y, totals);
          break;
        }
        if (d == 128) {
          IntTokenHead<8, kMode, kInt>(in, tokens, top_level, y, totals);
          break;
        }
      }
      if (kMode.sums != Sums::kNone && d <= 16 * kFoldTerms) {
        IntTokenRow<kInt, kMode.sums, Source> row{in, d, top_level, tokens, &totals};
        RowLoop<WithoutSquares(kMode)>(in, 0, tokens, d, y, totals, row);
      } else {
        IntTokenRow<kInt, Sums::kNone, Source> row{in, d, top_level, tokens};
        RowLoop<kMode>(in, 0, tokens, d, y, totals, row);
      }
      break;
    }
    case Granularity::kGroupDim: {
      const int g = f.group;
      KVQ_CHECK(d / g <= kMaxGroupsPerRow);
      IntGroupDimRow<Dividing(kInt), Source> row{in, d, g, levels, top};
      RowLoop<kMode>(in, 0, tokens, d, y, totals, row);
      break;
    }
    case Granularity::kGroupToken: {
      const int64_t len = chunk_len > 0 ? chunk_len : tokens;
      for (int64_t b = 0; b < tokens; b += len) {
        const int64_t e = std::min(tokens, b + len);
        for (int64_t t0 = b; t0 < e; t0 += f.group) {
          const int64_t t1 = std::min(e, t0 + f.group);
          round_trip(t0, t1, scan_channels(t0, t1));
        }
      }
      break;
    }
  }
}

// ---------------------------------------------------------------------------
// fp16 and fp8 (kernels.cpp's Fp16Fast / RoundMiniFloat, vectorised).

// Each lane rounded to fp16 and back (vcvtps2ph rounds to nearest even, as
// FloatToHalf does).
KVQ_INLINE __m512 RoundToHalfLanes(__m512 v) {
  return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// From an fp16 source y = x: e = 0.
struct Fp16Row {
  static constexpr bool kFlat = true, kTinyErrors = false;
  void Begin(int64_t) {}
  KVQ_INLINE __m512 One(int64_t, int, __m512 x) const { return RoundToHalfLanes(x); }
};

// RoundMiniFloat of a >= 0 in lanes: nearest even on the grid of a
// minifloat with man mantissa bits and minimum exponent min_exp, saturating
// at vmax (also for a NaN, as !(a < max) does there).
KVQ_INLINE __m512 RoundMiniFloatLanes(__m512 a, __m512 vmax, __m512 min_exp, __m512 man) {
  const __m512 e = _mm512_max_ps(_mm512_getexp_ps(a), min_exp);
  const __m512 quantum = _mm512_scalef_ps(_mm512_set1_ps(1.0f), _mm512_sub_ps(e, man));
  // a / quantum as a * 2^(man - e): the same correctly rounded value as the
  // division by a power of two, without the divider.
  const __m512 scaled = _mm512_scalef_ps(a, _mm512_sub_ps(man, e));
  __m512 r = _mm512_mul_ps(
      _mm512_roundscale_ps(scaled, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), quantum);
  r = _mm512_min_ps(vmax, r);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, vmax, _CMP_LT_OQ), vmax, r);
}

// v = x / s; a = |v|; quantum = 2^(max(floor(log2 a), 1 - bias) - man_bits);
// r = min(rint(a / quantum) * quantum, max), r = max where !(a < max);
// y = copysign(r, v) * s. (getexp(0) = -inf picks 1 - bias, where frexp
// picks -1: both round 0 to 0.) s == 0 (an all-zero head) gives 0.
// An fp8 subnormal times a scale as small as 2^-33 can come within 2^-63
// of an fp16 x: kTinyErrors.
struct Fp8Row {
  static constexpr bool kFlat = true, kTinyErrors = true;
  __m512 vs, vmax, min_exp, man;
  bool zero_scale;
  Fp8Row(bool e4m3, float amax) {
    const int man_bits = e4m3 ? 3 : 2, bias = e4m3 ? 7 : 15;
    const float fmax = e4m3 ? 448.0f : 57344.0f;
    const float s = amax / fmax;
    zero_scale = s == 0;
    vs = _mm512_set1_ps(s);
    vmax = _mm512_set1_ps(fmax);
    min_exp = _mm512_set1_ps(static_cast<float>(1 - bias));
    man = _mm512_set1_ps(static_cast<float>(man_bits));
  }
  void Begin(int64_t) {}
  KVQ_INLINE __m512 One(int64_t, int, __m512 x) const {
    if (zero_scale) return _mm512_setzero_ps();
    const __m512 v = _mm512_div_ps(x, vs);
    __m512 r = RoundMiniFloatLanes(_mm512_abs_ps(v), vmax, min_exp, man);
    r = _mm512_or_ps(r, _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
    return _mm512_mul_ps(r, vs);
  }
};

// nvfp4 (kernels.cpp's Nvfp4Reference): blocks of 16 values (one vector),
// global = amax / (6 * 448), block = e4m3(bmax / 6 / global) (RoundMiniFloat),
// scale = block * global, y = e2m1(x / scale) * scale, 0 where scale is 0.
// The block scales are computed 16 blocks at a time when One reaches a new
// batch (one shuffle network for the 16 maxima). e2m1 is E2m1Encode's loop
// over the 8 magnitudes run in lanes: the same float errors and the same
// tie rule, so the same code for every input. y can come within 2^-63 of an
// fp16 x, as fp8's can: kTinyErrors.
template <class Source>
struct Nvfp4Row {
  static constexpr bool kFlat = true, kTinyErrors = true;
  static constexpr int kBatch = 16;  // Blocks of 16.
  Source in;
  int64_t end;  // One past the head's last value.
  float global;
  int64_t batch = -1;
  alignas(64) float scales[kBatch] = {};

  Nvfp4Row(const Source& source, int64_t n, float amax)
      : in(source), end(n), global(amax / (6.0f * 448.0f)) {}

  void Batch(int64_t i0) {
    const int64_t count = std::min<int64_t>(kBatch, (end - i0) / 16);
    __m512 hi[kBatch];
    for (int k = 0; k < kBatch; ++k) {
      hi[k] = k < count ? _mm512_abs_ps(in.Load(i0 + 16 * k)) : _mm512_setzero_ps();
    }
    const __m512 bmax = ReduceEach(hi, [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); });
    const __m512 vglobal = _mm512_set1_ps(global);
    const __m512 block =
        RoundMiniFloatLanes(_mm512_div_ps(_mm512_div_ps(bmax, _mm512_set1_ps(6.0f)), vglobal),
                            _mm512_set1_ps(448.0f), _mm512_set1_ps(-6.0f), _mm512_set1_ps(3.0f));
    _mm512_store_ps(scales, global == 0 ? _mm512_setzero_ps() : _mm512_mul_ps(block, vglobal));
    batch = i0;
  }

  void Begin(int64_t) {}
  KVQ_INLINE __m512 One(int64_t i, int, __m512 x) {
    if (batch < 0 || i - batch >= 16 * kBatch) Batch(i);
    const float scale = scales[(i - batch) / 16];
    if (scale == 0) return _mm512_setzero_ps();
    const __m512 vscale = _mm512_set1_ps(scale);
    const __m512 v = _mm512_div_ps(x, vscale);
    const __m512 a = _mm512_abs_ps(v);
    constexpr float kMagnitudes[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    __m512 best = _mm512_setzero_ps(), best_err = a;
    for (int c = 1; c < 8; ++c) {
      const __m512 t = _mm512_set1_ps(kMagnitudes[c]);
      const __m512 err = _mm512_abs_ps(_mm512_sub_ps(a, t));
      __mmask16 take = _mm512_cmp_ps_mask(err, best_err, _CMP_LT_OQ);
      if (c % 2 == 0) take |= _mm512_cmp_ps_mask(err, best_err, _CMP_EQ_OQ);
      best = _mm512_mask_blend_ps(take, best, t);
      best_err = _mm512_mask_blend_ps(take, best_err, err);
    }
    const __m512 r = _mm512_or_ps(best, _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
    return _mm512_mul_ps(r, vscale);
  }
};

// ---------------------------------------------------------------------------
// ggml q8_0 / q4_0 / q4_1 (kernels.cpp's QuantizeQ* + GgmlDequantizeRow),
// one 32-value block as two vectors.

// Index of the first of the 32 lanes (v0 then v1) equal to value.
int FirstEqual(__m512 v0, __m512 v1, float value) {
  const __m512 m = _mm512_set1_ps(value);
  const uint32_t mask = _mm512_cmp_ps_mask(v0, m, _CMP_EQ_OQ) |
                        (static_cast<uint32_t>(_mm512_cmp_ps_mask(v1, m, _CMP_EQ_OQ)) << 16);
  return __builtin_ctz(mask);
}

// The block parameters are computed 16 blocks (512 values) at a time when
// Two reaches a new batch: the horizontal maxima / minima through one
// shuffle network, d, 1 / d and their fp16 roundings 16 lanes wide (the same
// IEEE operations as the block-at-a-time code, so the same values). A block
// whose scale or inverse scale is not finite (only float input can get
// there: amax below ~1e-36 or a range overflowing float) goes through the
// scalar code, whatever it does.
// y = q * d (+ m): d and m are fp16 values, so y is a multiple of 2^-24 as
// x is.
template <FormatKind kKind, class Source>
struct GgmlRow {
  static constexpr bool kFlat = true, kTinyErrors = false;
  static constexpr int kBatch = 16;  // Blocks of 32.
  Source in;
  int64_t end;  // One past the head's last value.
  int64_t batch = -1;
  uint32_t scalar_blocks = 0;  // Bit k: block k of the batch needs the scalar code.
  alignas(64) float d_half[kBatch] = {}, inverse[kBatch] = {}, min[kBatch] = {},
                    min_half[kBatch] = {};

  void Batch(int64_t i0) {
    const int64_t count = std::min<int64_t>(kBatch, (end - i0) / 32);
    const __m512 zero = _mm512_setzero_ps();
    __m512 lo[kBatch], hi[kBatch];
    for (int k = 0; k < kBatch; ++k) {
      lo[k] = hi[k] = zero;
      if (k >= count) continue;
      const __m512 v0 = in.Load(i0 + 32 * k), v1 = in.Load(i0 + 32 * k + 16);
      if constexpr (kKind == FormatKind::kQ4_1) {
        lo[k] = _mm512_min_ps(v0, v1);
        hi[k] = _mm512_max_ps(v0, v1);
      } else {
        hi[k] = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1));
      }
    }
    auto max_op = [](__m512 x, __m512 y) { return _mm512_max_ps(x, y); };
    const __m512 top = ReduceEach(hi, max_op);
    alignas(64) float tops[kBatch], bottoms[kBatch];
    _mm512_store_ps(tops, top);
    __m512 d, block_min = zero;
    if constexpr (kKind == FormatKind::kQ8_0) {
      d = _mm512_div_ps(top, _mm512_set1_ps(127.0f));
    } else if constexpr (kKind == FormatKind::kQ4_0) {
      // max: the signed value of largest magnitude, the first one on ties;
      // +0 for an all-zero block.
      alignas(64) float max[kBatch] = {};
      for (int k = 0; k < count; ++k) {
        if (tops[k] == 0) continue;
        const __m512 m = _mm512_set1_ps(tops[k]);
        const int64_t i = i0 + 32 * k;
        const uint32_t mask = _mm512_cmp_ps_mask(_mm512_abs_ps(in.Load(i)), m, _CMP_EQ_OQ) |
                              (static_cast<uint32_t>(_mm512_cmp_ps_mask(
                                   _mm512_abs_ps(in.Load(i + 16)), m, _CMP_EQ_OQ))
                               << 16);
        max[k] = in.At(i + __builtin_ctz(mask));
      }
      d = _mm512_div_ps(_mm512_load_ps(max), _mm512_set1_ps(-8.0f));
    } else {
      // min / max: the first value reaching them (decides the sign of a zero).
      _mm512_store_ps(bottoms,
                      ReduceEach(lo, [](__m512 x, __m512 y) { return _mm512_min_ps(x, y); }));
      for (int k = 0; k < count; ++k) {
        const int64_t i = i0 + 32 * k;
        if (bottoms[k] == 0 || tops[k] == 0) {
          const __m512 v0 = in.Load(i), v1 = in.Load(i + 16);
          if (bottoms[k] == 0) bottoms[k] = in.At(i + FirstEqual(v0, v1, bottoms[k]));
          if (tops[k] == 0) tops[k] = in.At(i + FirstEqual(v0, v1, tops[k]));
        }
      }
      block_min = _mm512_load_ps(bottoms);
      d = _mm512_div_ps(_mm512_sub_ps(_mm512_load_ps(tops), block_min), _mm512_set1_ps(15.0f));
      _mm512_store_ps(min, block_min);
      _mm512_store_ps(min_half, RoundToHalfLanes(block_min));
    }
    const __m512 id =
        _mm512_maskz_div_ps(_mm512_cmp_ps_mask(d, zero, _CMP_NEQ_UQ), _mm512_set1_ps(1.0f), d);
    const __m512 fmax = _mm512_set1_ps(std::numeric_limits<float>::max());
    const __mmask16 finite = _mm512_cmp_ps_mask(_mm512_abs_ps(d), fmax, _CMP_LE_OQ) &
                             _mm512_cmp_ps_mask(_mm512_abs_ps(id), fmax, _CMP_LE_OQ);
    scalar_blocks = static_cast<uint16_t>(~finite);
    _mm512_store_ps(d_half, RoundToHalfLanes(d));
    _mm512_store_ps(inverse, id);
    batch = i0;
  }

  void Begin(int64_t) {}
  KVQ_INLINE void Two(int64_t i, int, __m512 v0, __m512 v1, __m512& y0, __m512& y1) {
    if (batch < 0 || i - batch >= 32 * kBatch) Batch(i);
    const int64_t k = (i - batch) / 32;
    if ((scalar_blocks >> k) & 1) {
      alignas(64) float x[32], y[32];
      uint8_t bytes[34];
      _mm512_store_ps(x, v0);
      _mm512_store_ps(x + 16, v1);
      GgmlQuantizeRow(kKind, false, x, 32, bytes);
      GgmlDequantizeRow(kKind, bytes, 32, y);
      y0 = _mm512_load_ps(y);
      y1 = _mm512_load_ps(y + 16);
      return;
    }
    const __m512 zero = _mm512_setzero_ps();
    const __m512 vid = _mm512_set1_ps(inverse[k]), dh = _mm512_set1_ps(d_half[k]);
    const __m512 fifteen = _mm512_set1_ps(15.0f);
    if constexpr (kKind == FormatKind::kQ8_0) {
      // (float)(int8_t)roundf(v): +0 for a rounded -0.
      y0 = _mm512_mul_ps(_mm512_add_ps(RoundHalfAway(_mm512_mul_ps(v0, vid)), zero), dh);
      y1 = _mm512_mul_ps(_mm512_add_ps(RoundHalfAway(_mm512_mul_ps(v1, vid)), zero), dh);
    } else if constexpr (kKind == FormatKind::kQ4_0) {
      const __m512 half8 = _mm512_set1_ps(8.5f), eight = _mm512_set1_ps(8.0f);
      auto one = [&](__m512 v) {
        __m512 q = _mm512_roundscale_ps(_mm512_add_ps(_mm512_mul_ps(v, vid), half8),
                                        _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        q = _mm512_min_ps(fifteen, q);
        return _mm512_mul_ps(_mm512_sub_ps(q, eight), dh);
      };
      y0 = one(v0);
      y1 = one(v1);
    } else {
      const __m512 vmin = _mm512_set1_ps(min[k]), mh = _mm512_set1_ps(min_half[k]);
      const __m512 half = _mm512_set1_ps(0.5f);
      auto one = [&](__m512 v) {
        __m512 q =
            _mm512_roundscale_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, vmin), vid), half),
                                 _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        q = _mm512_min_ps(fifteen, q);
        return _mm512_add_ps(_mm512_mul_ps(q, dh), mh);
      };
      y0 = one(v0);
      y1 = one(v1);
    }
  }
};

// q8_0 from an fp16 source with error sums (kvq quant's path), as GgmlRow +
// RowLoop compute it (the same operations per value), in the shape of
// IntTokenHead: per batch of 16 blocks their maxima and a widened copy in
// L1, then their round trips from it, two batches in flight (+14% over
// GgmlRow, same-hour A/B). From fp16, d = amax / 127 is 0 or in
// [2^-31, 516], so d and 1 / d are finite and GgmlRow's scalar fallback is
// never needed.
template <Mode kMode, class Source>
void Q8_0Head(const Source& source, int64_t n, float* y, Totals& totals) {
  static_assert(kMode.sums == Sums::kHalf && std::is_same_v<Source, HalfSource>);
  constexpr int kBatch = 16;  // Blocks of 32: kFoldTerms per accumulator.
  static_assert(kBatch == kFoldTerms);
  const Source in = source;  // A copy: stores to y cannot change its pointer.
  const __m512 zero = _mm512_setzero_ps();
  __m512 amax = zero;
  __m512d sse_lo = _mm512_setzero_pd(), sse_hi = sse_lo, sq_lo = sse_lo, sq_hi = sse_lo;
  struct Slot {
    alignas(64) float inverse[kBatch], d_half[kBatch], xs[kBatch * 32];
    int count;
  } slots[2];
  auto ranges = [&](int64_t i0, Slot& slot) {
    slot.count = static_cast<int>(std::min<int64_t>(kBatch, (n - i0) / 32));
    __m512 hi[kBatch], sq_even = zero, sq_odd = zero;
    for (int k = 0; k < kBatch; ++k) {
      hi[k] = zero;
      if (k >= slot.count) continue;
      const __m512 v0 = in.Load(i0 + 32 * k), v1 = in.Load(i0 + 32 * k + 16);
      _mm512_store_ps(slot.xs + 32 * k, v0);
      _mm512_store_ps(slot.xs + 32 * k + 16, v1);
      hi[k] = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1));
      sq_even = _mm512_fmadd_ps(v0, v0, sq_even);
      sq_odd = _mm512_fmadd_ps(v1, v1, sq_odd);
    }
    FoldInto(sq_even, sq_odd, sq_lo, sq_hi);
    const __m512 top = ReduceEach(hi, [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); });
    amax = _mm512_max_ps(amax, top);
    const __m512 d = _mm512_div_ps(top, _mm512_set1_ps(127.0f));
    _mm512_store_ps(slot.inverse, _mm512_maskz_div_ps(_mm512_cmp_ps_mask(d, zero, _CMP_NEQ_UQ),
                                                      _mm512_set1_ps(1.0f), d));
    _mm512_store_ps(slot.d_half, RoundToHalfLanes(d));
  };
  auto round_trip = [&](int64_t i0, const Slot& slot) {
    __m512 sse_even = zero, sse_odd = zero;
    for (int k = 0; k < slot.count; ++k) {
      const __m512 id = _mm512_set1_ps(slot.inverse[k]), dh = _mm512_set1_ps(slot.d_half[k]);
      auto one = [&](int h, __m512& sse) {
        const __m512 x = _mm512_load_ps(slot.xs + 32 * k + 16 * h);
        __m512 q = RoundHalfAway(_mm512_mul_ps(x, id));
        // (float)(int8_t)roundf(v) is +0 for a rounded -0; only a stored y
        // shows the sign (x - y is the same).
        if constexpr (kMode.store) q = _mm512_add_ps(q, zero);
        const __m512 yv = _mm512_mul_ps(q, dh);
        if constexpr (kMode.store) _mm512_storeu_ps(y + i0 + 32 * k + 16 * h, yv);
        const __m512 e = _mm512_sub_ps(x, yv);
        sse = _mm512_fmadd_ps(e, e, sse);
      };
      one(0, sse_even);
      one(1, sse_odd);
    }
    FoldInto(sse_even, sse_odd, sse_lo, sse_hi);
  };
  TwoBatchesInFlight(n, 32 * kBatch, slots, ranges, round_trip);
  totals.sse += _mm512_reduce_add_pd(_mm512_add_pd(sse_lo, sse_hi));
  AddSquareSums(sq_lo, sq_hi, amax, totals);
}

// ggml iq4_nl (kernels.cpp's QuantizeIq4Nl + GgmlDequantizeRow); the nearest
// level is Iq4NlLevelLanes (quant/rounding_lanes.h).
// The scale of each block is fitted 16 blocks at a time when Two reaches a
// new batch, one block per lane: the block's 32 values transposed into 32
// vectors, so that every lane runs the reference's serial sums in the
// reference's order (float, no contraction), its first-maximum rule and, with
// kSearch, its 15 trial scales. Two then maps each block through its inverse
// scale and fp16 d, as the reference's final pass and dequantization do.
// y = d * level with d an fp16 value: a multiple of 2^-24, as for q8_0.
template <bool kSearch, class Source>
struct Iq4NlRow {
  static constexpr bool kFlat = true, kTinyErrors = false;
  static constexpr int kBatch = 16;  // Blocks of 32.
  Source in;
  int64_t end;  // One past the head's last value.
  int64_t batch = -1;
  alignas(64) float inverse[kBatch] = {}, d_half[kBatch] = {};

  void Batch(int64_t i0) {
    const int64_t count = std::min<int64_t>(kBatch, (end - i0) / 32);
    alignas(64) float xs[kBatch * 32] = {};
    for (int k = 0; k < count; ++k) {
      _mm512_store_ps(xs + 32 * k, in.Load(i0 + 32 * k));
      _mm512_store_ps(xs + 32 * k + 16, in.Load(i0 + 32 * k + 16));
    }
    const __m512i rows = _mm512_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352,
                                           384, 416, 448, 480);  // Block k's first value.
    const __m512 zero = _mm512_setzero_ps();
    __m512 x[32], w[32], amax = zero, max = zero;
    for (int j = 0; j < 32; ++j) {
      x[j] = _mm512_i32gather_ps(rows, xs + j, 4);
      w[j] = _mm512_mul_ps(x[j], x[j]);
      const __mmask16 larger = _mm512_cmp_ps_mask(amax, _mm512_abs_ps(x[j]), _CMP_LT_OQ);
      amax = _mm512_mask_blend_ps(larger, amax, _mm512_abs_ps(x[j]));
      max = _mm512_mask_blend_ps(larger, max, x[j]);
    }
    auto fit = [&](__m512 s, __m512& sqx, __m512& sqq) {
      sqx = sqq = zero;
      for (int j = 0; j < 32; ++j) {
        const __m512 q = Iq4NlLevelLanes(_mm512_mul_ps(s, x[j]));
        const __m512 wq = _mm512_mul_ps(w[j], q);
        sqx = _mm512_add_ps(sqx, _mm512_mul_ps(wq, x[j]));
        sqq = _mm512_add_ps(sqq, _mm512_mul_ps(wq, q));
      }
    };
    const __m512 one = _mm512_set1_ps(1.0f), negative = _mm512_set1_ps(-0.0f);
    const __m512 signed_max = kSearch ? _mm512_xor_ps(max, negative) : max;  // -max
    const __m512 scale0 = _mm512_div_ps(one, _mm512_div_ps(signed_max, _mm512_set1_ps(-127.0f)));
    __m512 sqx, sqq;
    fit(scale0, sqx, sqq);
    __m512 d = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(sqq, zero, _CMP_GT_OQ), sqx, sqq);
    __m512 id = scale0;
    if constexpr (kSearch) {
      __m512 best = _mm512_mul_ps(d, sqx);
      for (int t = -7; t <= 7; ++t) {
        fit(_mm512_div_ps(_mm512_set1_ps(static_cast<float>(t - 127)), max), sqx, sqq);
        const __mmask16 better =
            _mm512_cmp_ps_mask(sqq, zero, _CMP_GT_OQ) &
            _mm512_cmp_ps_mask(_mm512_mul_ps(sqx, sqx), _mm512_mul_ps(best, sqq), _CMP_GT_OQ);
        d = _mm512_mask_div_ps(d, better, sqx, sqq);
        best = _mm512_mask_mul_ps(best, better, d, sqx);
      }
      id = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(d, zero, _CMP_NEQ_UQ), one, d);
    }
    // An all-(near-)zero block: d = 0 and level 8 (1), which v * 0 finds.
    const __mmask16 empty = _mm512_cmp_ps_mask(amax, _mm512_set1_ps(1e-15f), _CMP_LT_OQ);
    _mm512_store_ps(inverse, _mm512_mask_blend_ps(empty, id, zero));
    _mm512_store_ps(d_half, RoundToHalfLanes(_mm512_mask_blend_ps(empty, d, zero)));
    batch = i0;
  }

  void Begin(int64_t) {}
  KVQ_INLINE void Two(int64_t i, int, __m512 v0, __m512 v1, __m512& y0, __m512& y1) {
    if (batch < 0 || i - batch >= 32 * kBatch) Batch(i);
    const int64_t k = (i - batch) / 32;
    const __m512 id = _mm512_set1_ps(inverse[k]), d = _mm512_set1_ps(d_half[k]);
    y0 = _mm512_mul_ps(d, Iq4NlLevelLanes(_mm512_mul_ps(v0, id)));
    y1 = _mm512_mul_ps(d, Iq4NlLevelLanes(_mm512_mul_ps(v1, id)));
  }
};

// ---------------------------------------------------------------------------

template <Mode kMode, class Source>
void Dispatch(const FormatSpec& f, int64_t chunk_len, const Source& in, int64_t tokens, int d,
              const HeadStats* stats, float* y, Totals& totals) {
  switch (f.kind) {
    case FormatKind::kFp16: {
      Fp16Row row;
      RowLoop<kMode>(in, 0, tokens, d, y, totals, row);
      return;
    }
    case FormatKind::kFp8E4M3:
    case FormatKind::kFp8E5M2: {
      const bool e4m3 = f.kind == FormatKind::kFp8E4M3;
      if (stats != nullptr) {
        Fp8Row row(e4m3, stats->amax);
        RowLoop<kMode>(in, 0, tokens, d, y, totals, row);
      } else {
        float min, max;
        ScanHead<kMode>(in, tokens * d, min, max, totals);
        Fp8Row row(e4m3, std::max(std::fabs(min), std::fabs(max)));
        RowLoop<WithoutSquares(kMode)>(in, 0, tokens, d, y, totals, row);
      }
      return;
    }
    case FormatKind::kNvfp4: {
      if (stats != nullptr) {
        Nvfp4Row<Source> row(in, tokens * d, stats->amax);
        RowLoop<kMode>(in, 0, tokens, d, y, totals, row);
      } else {
        float min, max;
        ScanHead<kMode>(in, tokens * d, min, max, totals);
        Nvfp4Row<Source> row(in, tokens * d, std::max(std::fabs(min), std::fabs(max)));
        RowLoop<WithoutSquares(kMode)>(in, 0, tokens, d, y, totals, row);
      }
      return;
    }
    case FormatKind::kIq4Nl: {
      if (f.search) {
        Iq4NlRow<true, Source> row{in, tokens * d};
        RowLoop<kMode>(in, 0, tokens, d, y, totals, row);
      } else {
        Iq4NlRow<false, Source> row{in, tokens * d};
        RowLoop<kMode>(in, 0, tokens, d, y, totals, row);
      }
      return;
    }
    case FormatKind::kQ8_0: {
      if constexpr (kMode.sums == Sums::kHalf) {
        Q8_0Head<WithoutSquares(kMode)>(in, tokens * d, y, totals);
        return;
      }
      GgmlRow<FormatKind::kQ8_0, Source> row{in, tokens * d};
      RowLoop<kMode>(in, 0, tokens, d, y, totals, row);
      return;
    }
    case FormatKind::kQ4_0: {
      GgmlRow<FormatKind::kQ4_0, Source> row{in, tokens * d};
      RowLoop<kMode>(in, 0, tokens, d, y, totals, row);
      return;
    }
    case FormatKind::kQ4_1: {
      GgmlRow<FormatKind::kQ4_1, Source> row{in, tokens * d};
      RowLoop<kMode>(in, 0, tokens, d, y, totals, row);
      return;
    }
    case FormatKind::kInt: {
      const bool trunc = f.rounding == Rounding::kTrunc;
      auto run = [&]<bool kAsym, bool kTrunc>() {
        IntHead<kMode, kAsym, kTrunc>(f, stats, in, tokens, d, chunk_len, y, totals);
      };
      if (f.zero_point) {
        trunc ? run.template operator()<true, true>() : run.template operator()<true, false>();
      } else {
        trunc ? run.template operator()<false, true>() : run.template operator()<false, false>();
      }
      return;
    }
    default:
      KVQ_CHECK(false);
  }
}

template <class Source>
void Run(const FormatSpec& f, int64_t chunk_len, const Source& in, int64_t tokens, int d,
         const HeadStats* stats, float* y, QdqErrorSums* sums) {
  constexpr Sums kSums = std::is_same_v<Source, HalfSource> ? Sums::kHalf : Sums::kDouble;
  Totals totals;
  if (sums != nullptr) {
    if (y != nullptr) {
      Dispatch<Mode{kSums, true}>(f, chunk_len, in, tokens, d, stats, y, totals);
    } else {
      Dispatch<Mode{kSums, false}>(f, chunk_len, in, tokens, d, stats, y, totals);
    }
  } else if (y != nullptr) {
    Dispatch<Mode{Sums::kNone, true}>(f, chunk_len, in, tokens, d, stats, y, totals);
  } else {
    Dispatch<Mode{Sums::kNone, false}>(f, chunk_len, in, tokens, d, stats, y, totals);
  }
  if (!totals.finite) ThrowInput("non-finite value in the block to quantize");
  if (sums != nullptr) {
    sums->count += tokens * d;
    sums->sse += totals.sse;
    sums->sum_sq += totals.sum_sq;
    sums->max_abs = std::max(sums->max_abs, totals.max_abs);
  }
}

#undef KVQ_INLINE

}  // namespace
#endif

bool HasFusedKernel(const FormatSpec& f, int head_dim) {
#if defined(__AVX512F__)
  if (f.hadamard || f.pre_rope || f.bias_aware || f.sink > 0 || f.recent > 0) return false;
  if (head_dim <= 0 || head_dim % 16 != 0) return false;
  switch (f.kind) {
    case FormatKind::kFp16:
    case FormatKind::kFp8E4M3:
    case FormatKind::kFp8E5M2:
    case FormatKind::kNvfp4:
      return true;
    case FormatKind::kQ8_0:
    case FormatKind::kQ4_0:
    case FormatKind::kQ4_1:
    case FormatKind::kIq4Nl:
      return head_dim % 32 == 0;
    case FormatKind::kInt:
      if (f.granularity == Granularity::kGroupDim)
        return f.group % 16 == 0 && head_dim % f.group == 0;
      return f.granularity != Granularity::kGroupToken || f.group > 0;
    default:
      return false;
  }
#else
  (void)f;
  (void)head_dim;
  return false;
#endif
}

void FusedQuantizeHead(const FormatSpec& f, int64_t chunk_len, const uint16_t* x_half,
                       const float* x_float, int64_t tokens, int head_dim, const HeadStats* stats,
                       float* y, QdqErrorSums* sums) {
  KVQ_CHECK(HasFusedKernel(f, head_dim) && (x_half == nullptr) != (x_float == nullptr));
#if defined(__AVX512F__)
  if (x_half != nullptr) {
    Run(f, chunk_len, HalfSource{x_half}, tokens, head_dim, stats, y, sums);
  } else {
    Run(f, chunk_len, FloatSource{x_float}, tokens, head_dim, stats, y, sums);
  }
#else
  (void)chunk_len;
  (void)tokens;
  (void)stats;
  (void)y;
  (void)sums;
#endif
}

}  // namespace kvq
