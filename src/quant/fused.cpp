#include "kvq/quant/fused.h"

#include "common/avx512.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kvq/common/error.h"
#include "kvq/common/half.h"

namespace kvq {

#if defined(__AVX512F__)
namespace {

// Where the 16 values at flat index i come from, widened to float exactly
// (vcvtph2ps equals HalfToFloat, subnormals included).
struct HalfSource {
  const uint16_t* p;
  __m512 Load(int64_t i) const {
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
  __m512 Load(int64_t i) const { return _mm512_loadu_ps(p + i); }
  float At(int64_t i) const {
    float v;
    std::memcpy(&v, p + i, 4);
    return v;
  }
};

// Where the round trip goes: y (optional), the finiteness check of x and,
// with kSums, the error sums in double, 16 lanes in two halves of 8.
template <bool kSums>
struct Sink {
  float* y;
  __m512d sse[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
  __m512d sq[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
  __m512 amax = _mm512_setzero_ps();
  __mmask16 bad = 0;

  static __m512d Half(__m512 v, int half) {
    return _mm512_cvtps_pd(half == 0
                               ? _mm512_castps512_ps256(v)
                               : _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  }

  void Put(int64_t i, __m512 x, __m512 v) {
    const __m512 ax = _mm512_abs_ps(x);
    // Not <= FLT_MAX (unordered included): +-Inf or NaN.
    bad |= _mm512_cmp_ps_mask(ax, _mm512_set1_ps(FLT_MAX), _CMP_NLE_UQ);
    if (y != nullptr) _mm512_storeu_ps(y + i, v);
    if constexpr (kSums) {
      amax = _mm512_max_ps(amax, ax);
      for (int h = 0; h < 2; ++h) {
        const __m512d xd = Half(x, h);
        const __m512d e = _mm512_sub_pd(xd, Half(v, h));
        // x^2 is exact in double, so fmadd rounds like multiply-then-add;
        // e^2 is too unless x and y are 2^29 apart.
        sse[h] = _mm512_fmadd_pd(e, e, sse[h]);
        sq[h] = _mm512_fmadd_pd(xd, xd, sq[h]);
      }
    }
  }

  void Finish(int64_t count, QdqErrorSums* sums) const {
    if (bad != 0) ThrowInput("non-finite value in the block to quantize");
    if constexpr (kSums) {
      sums->count += count;
      sums->sse += _mm512_reduce_add_pd(_mm512_add_pd(sse[0], sse[1]));
      sums->sum_sq += _mm512_reduce_add_pd(_mm512_add_pd(sq[0], sq[1]));
      sums->max_abs = std::max(sums->max_abs, _mm512_reduce_max_ps(amax));
    }
  }
};

// ---------------------------------------------------------------------------
// int<b>: the element math of kernels.h's IntKernel, 16 lanes at a time.
// Bounds come first in max/min so that equal values (signed zeros) give the
// same operand std::max(q, lo) / std::min(q, hi) give.

struct IntParams {
  float s, offset, keep;
};

template <bool kAsym>
IntParams MakeParams(float lo, float hi, int levels) {
  IntParams p;
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
  return p;
}

template <bool kAsym, bool kTrunc>
__m512 IntElement(__m512 x, __m512 s, __m512 offset, __mmask16 keep, __m512 top) {
  constexpr int kMode =
      (kTrunc ? _MM_FROUND_TO_ZERO : _MM_FROUND_TO_NEAREST_INT) | _MM_FROUND_NO_EXC;
  if constexpr (kAsym) {
    __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_sub_ps(x, offset), s), kMode);
    q = _mm512_min_ps(top, _mm512_max_ps(_mm512_setzero_ps(), q));
    return _mm512_mask_blend_ps(keep, offset, _mm512_add_ps(_mm512_div_ps(q, s), offset));
  } else {
    __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(x, s), kMode);
    q = _mm512_min_ps(top, _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), top), q));
    return _mm512_maskz_div_ps(keep, q, s);
  }
}

// lo/hi +0 turns -0 into +0, as kernels.cpp's MinMax does.
void BlockMinMax(__m512 lo, __m512 hi, float& min, float& max) {
  min = _mm512_reduce_min_ps(lo) + 0.0f;
  max = _mm512_reduce_max_ps(hi) + 0.0f;
}

template <bool kAsym, bool kTrunc, class Source, class Out>
void IntHead(const FormatSpec& f, const HeadStats* stats, const Source& in, Out& sink,
             int64_t tokens, int d, int64_t chunk_len) {
  // A local copy keeps the accumulators in registers (the caller's Sink
  // lives in memory); written back at the end.
  Out out = sink;
  const int levels = kAsym ? (1 << f.bits) - 1 : (1 << (f.bits - 1)) - 1;
  const __m512 top = _mm512_set1_ps(static_cast<float>(levels));
  const int64_t n = tokens * d;
  constexpr float kInf = std::numeric_limits<float>::infinity();

  // Every value with the same parameters (tensor scale; one token when g == d).
  auto uniform = [&](int64_t begin, int64_t end, const IntParams& p) {
    const __m512 s = _mm512_set1_ps(p.s), offset = _mm512_set1_ps(p.offset);
    const __mmask16 keep = p.keep != 0 ? 0xffff : 0;
    for (int64_t i = begin; i < end; i += 16) {
      const __m512 x = in.Load(i);
      out.Put(i, x, IntElement<kAsym, kTrunc>(x, s, offset, keep, top));
    }
  };
  // Per-channel parameters [d] (channel, g<N>:token, g<N>:dim).
  std::vector<float> ps(static_cast<size_t>(d)), po(ps.size()), pk(ps.size());
  std::vector<float> lo(ps.size()), hi(ps.size());
  auto set = [&](int c, const IntParams& p) {
    ps[static_cast<size_t>(c)] = p.s;
    po[static_cast<size_t>(c)] = p.offset;
    pk[static_cast<size_t>(c)] = p.keep;
  };
  auto rows = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      for (int j = 0; j < d; j += 16) {
        const __m512 x = in.Load(t * d + j);
        const __mmask16 keep =
            _mm512_cmp_ps_mask(_mm512_loadu_ps(pk.data() + j), _mm512_setzero_ps(), _CMP_NEQ_OQ);
        out.Put(t * d + j, x,
                IntElement<kAsym, kTrunc>(x, _mm512_loadu_ps(ps.data() + j),
                                          _mm512_loadu_ps(po.data() + j), keep, top));
      }
    }
  };
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

  switch (f.granularity) {
    case Granularity::kTensor: {
      float min, max, amax;
      if (stats != nullptr) {
        min = stats->min;
        max = stats->max;
        amax = stats->amax;
      } else {
        __m512 vlo = _mm512_set1_ps(kInf), vhi = _mm512_set1_ps(-kInf);
        for (int64_t i = 0; i < n; i += 16) {
          const __m512 x = in.Load(i);
          vlo = _mm512_min_ps(vlo, x);
          vhi = _mm512_max_ps(vhi, x);
        }
        BlockMinMax(vlo, vhi, min, max);
        amax = std::max(std::fabs(min), std::fabs(max));
        if (n == 0) min = max = amax = 0;
      }
      uniform(0, n,
              kAsym ? MakeParams<true>(min, max, levels) : MakeParams<false>(-amax, amax, levels));
      break;
    }
    case Granularity::kChannel:
      if (stats != nullptr) {
        KVQ_CHECK(static_cast<int>(stats->channel_min.size()) == d);
        lo = stats->channel_min;
        hi = stats->channel_max;
      } else {
        channel_ranges(0, tokens);
      }
      for (int c = 0; c < d; ++c) {
        set(c, MakeParams<kAsym>(lo[static_cast<size_t>(c)], hi[static_cast<size_t>(c)], levels));
      }
      rows(0, tokens);
      break;
    case Granularity::kToken:
    case Granularity::kGroupDim: {
      const int g = f.granularity == Granularity::kToken ? d : f.group;
      for (int64_t t = 0; t < tokens; ++t) {
        for (int c0 = 0; c0 < d; c0 += g) {
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
          IntParams p;
          if (kAsym) {
            float min, max;
            BlockMinMax(vlo, vhi, min, max);
            p = MakeParams<true>(min, max, levels);
          } else {
            const float amax = _mm512_reduce_max_ps(vhi);
            p = MakeParams<false>(-amax, amax, levels);
          }
          if (g == d) {
            uniform(i0, i0 + g, p);
          } else {
            for (int c = c0; c < c0 + g; ++c) set(c, p);
          }
        }
        if (g != d) rows(t, t + 1);
      }
      break;
    }
    case Granularity::kGroupToken: {
      const int64_t len = chunk_len > 0 ? chunk_len : tokens;
      for (int64_t b = 0; b < tokens; b += len) {
        const int64_t e = std::min(tokens, b + len);
        for (int64_t t0 = b; t0 < e; t0 += f.group) {
          const int64_t t1 = std::min(e, t0 + f.group);
          channel_ranges(t0, t1);
          for (int c = 0; c < d; ++c) {
            set(c,
                MakeParams<kAsym>(lo[static_cast<size_t>(c)], hi[static_cast<size_t>(c)], levels));
          }
          rows(t0, t1);
        }
      }
      break;
    }
  }
  sink = out;
}

// ---------------------------------------------------------------------------
// fp16 and fp8 (kernels.cpp's Fp16Fast / RoundMiniFloat, vectorised).

template <class Source, class Out>
void Fp16Head(const Source& in, Out& sink, int64_t n) {
  // A local copy keeps the accumulators in registers (the caller's Sink
  // lives in memory); written back at the end.
  Out out = sink;
  for (int64_t i = 0; i < n; i += 16) {
    const __m512 x = in.Load(i);
    out.Put(i, x,
            _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
  }
  sink = out;
}

template <class Source, class Out>
void Fp8Head(const FormatSpec& f, const HeadStats* stats, const Source& in, Out& sink, int64_t n) {
  // A local copy keeps the accumulators in registers (the caller's Sink
  // lives in memory); written back at the end.
  Out out = sink;
  const bool e4m3 = f.kind == FormatKind::kFp8E4M3;
  const int man_bits = e4m3 ? 3 : 2, bias = e4m3 ? 7 : 15;
  const float fmax = e4m3 ? 448.0f : 57344.0f;
  float amax;
  if (stats != nullptr) {
    amax = stats->amax;
  } else {
    __m512 m = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(in.Load(i)));
    amax = _mm512_reduce_max_ps(m);
  }
  const float s = amax / fmax;
  const __m512 vs = _mm512_set1_ps(s), vmax = _mm512_set1_ps(fmax);
  const __m512 min_exp = _mm512_set1_ps(static_cast<float>(1 - bias));
  const __m512 man = _mm512_set1_ps(static_cast<float>(man_bits));
  const __m512 one = _mm512_set1_ps(1.0f), sign = _mm512_set1_ps(-0.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __m512 x = in.Load(i);
    if (s == 0) {
      out.Put(i, x, _mm512_setzero_ps());
      continue;
    }
    // v = x / s; a = |v|; quantum = 2^(max(floor(log2 a), 1 - bias) - man_bits);
    // r = min(rint(a / quantum) * quantum, max), r = max where !(a < max);
    // y = copysign(r, v) * s. (getexp(0) = -inf picks 1 - bias, where frexp
    // picks -1: both round 0 to 0.)
    const __m512 v = _mm512_div_ps(x, vs);
    const __m512 a = _mm512_abs_ps(v);
    const __m512 e = _mm512_max_ps(_mm512_getexp_ps(a), min_exp);
    const __m512 quantum = _mm512_scalef_ps(one, _mm512_sub_ps(e, man));
    __m512 r = _mm512_mul_ps(_mm512_roundscale_ps(_mm512_div_ps(a, quantum),
                                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                             quantum);
    r = _mm512_min_ps(vmax, r);
    r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, vmax, _CMP_LT_OQ), vmax, r);
    r = _mm512_or_ps(r, _mm512_and_ps(v, sign));
    out.Put(i, x, _mm512_mul_ps(r, vs));
  }
  sink = out;
}

// ---------------------------------------------------------------------------
// ggml q8_0 / q4_0 / q4_1 (kernels.cpp's QuantizeQ* + GgmlDequantizeRow),
// one 32-value block as two vectors. A block whose scale or inverse scale is
// not finite (only float input can get there: amax below ~1e-36 or a range
// overflowing float) goes through the scalar code, whatever it does.

float HalfRound(float v) { return HalfToFloat(FloatToHalf(v)); }

__m512 RoundHalfAway(__m512 v) {  // roundf: exact, since v - trunc(v) is.
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __mmask16 up =
      _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 step = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
  return _mm512_mask_add_ps(t, up, t, step);
}

// Index of the first of the 32 lanes (v0 then v1) equal to value.
int FirstEqual(__m512 v0, __m512 v1, float value) {
  const __m512 m = _mm512_set1_ps(value);
  const uint32_t mask = _mm512_cmp_ps_mask(v0, m, _CMP_EQ_OQ) |
                        (static_cast<uint32_t>(_mm512_cmp_ps_mask(v1, m, _CMP_EQ_OQ)) << 16);
  return __builtin_ctz(mask);
}

template <class Source, class Out>
void GgmlHead(FormatKind kind, const Source& in, Out& sink, int64_t n) {
  // A local copy keeps the accumulators in registers (the caller's Sink
  // lives in memory); written back at the end.
  Out out = sink;
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 32) {
    const __m512 v0 = in.Load(i), v1 = in.Load(i + 16);
    float d, id;
    __m512 y0, y1;
    if (kind == FormatKind::kQ8_0) {
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
      d = amax / 127.0f;
      id = d != 0 ? 1.0f / d : 0.0f;
      const __m512 vid = _mm512_set1_ps(id), dh = _mm512_set1_ps(HalfRound(d));
      // (float)(int8_t)roundf(v): +0 for a rounded -0.
      y0 = _mm512_mul_ps(_mm512_add_ps(RoundHalfAway(_mm512_mul_ps(v0, vid)), zero), dh);
      y1 = _mm512_mul_ps(_mm512_add_ps(RoundHalfAway(_mm512_mul_ps(v1, vid)), zero), dh);
    } else if (kind == FormatKind::kQ4_0) {
      // max: the signed value of largest magnitude, the first one on ties; +0
      // for an all-zero block.
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
      float max = 0.0f;
      if (amax != 0) {
        const __m512 m = _mm512_set1_ps(amax);
        const uint32_t mask =
            _mm512_cmp_ps_mask(_mm512_abs_ps(v0), m, _CMP_EQ_OQ) |
            (static_cast<uint32_t>(_mm512_cmp_ps_mask(_mm512_abs_ps(v1), m, _CMP_EQ_OQ)) << 16);
        max = in.At(i + __builtin_ctz(mask));
      }
      d = max / -8.0f;
      id = d != 0 ? 1.0f / d : 0.0f;
      const __m512 vid = _mm512_set1_ps(id), dh = _mm512_set1_ps(HalfRound(d));
      const __m512 half8 = _mm512_set1_ps(8.5f), fifteen = _mm512_set1_ps(15.0f);
      const __m512 eight = _mm512_set1_ps(8.0f);
      auto one = [&](__m512 v) {
        __m512 q = _mm512_roundscale_ps(_mm512_add_ps(_mm512_mul_ps(v, vid), half8),
                                        _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        q = _mm512_min_ps(fifteen, q);
        return _mm512_mul_ps(_mm512_sub_ps(q, eight), dh);
      };
      y0 = one(v0);
      y1 = one(v1);
    } else {
      // min / max: the first value reaching them (decides the sign of a zero).
      float min = _mm512_reduce_min_ps(_mm512_min_ps(v0, v1));
      float max = _mm512_reduce_max_ps(_mm512_max_ps(v0, v1));
      if (min == 0) min = in.At(i + FirstEqual(v0, v1, min));
      if (max == 0) max = in.At(i + FirstEqual(v0, v1, max));
      d = (max - min) / 15.0f;
      id = d != 0 ? 1.0f / d : 0.0f;
      const __m512 vid = _mm512_set1_ps(id), dh = _mm512_set1_ps(HalfRound(d));
      const __m512 vmin = _mm512_set1_ps(min), mh = _mm512_set1_ps(HalfRound(min));
      const __m512 half = _mm512_set1_ps(0.5f), fifteen = _mm512_set1_ps(15.0f);
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
    if (!std::isfinite(d) || !std::isfinite(id)) {
      alignas(64) float x[32], y[32];
      uint8_t bytes[34];
      _mm512_store_ps(x, v0);
      _mm512_store_ps(x + 16, v1);
      GgmlQuantizeRow(kind, false, x, 32, bytes);
      GgmlDequantizeRow(kind, bytes, 32, y);
      y0 = _mm512_load_ps(y);
      y1 = _mm512_load_ps(y + 16);
    }
    out.Put(i, v0, y0);
    out.Put(i + 16, v1, y1);
  }
  sink = out;
}

// ---------------------------------------------------------------------------

template <class Source, class Out>
void Dispatch(const FormatSpec& f, int64_t chunk_len, const Source& in, int64_t tokens, int d,
              const HeadStats* stats, Out& out) {
  const int64_t n = tokens * d;
  switch (f.kind) {
    case FormatKind::kFp16:
      Fp16Head(in, out, n);
      return;
    case FormatKind::kFp8E4M3:
    case FormatKind::kFp8E5M2:
      Fp8Head(f, stats, in, out, n);
      return;
    case FormatKind::kQ8_0:
    case FormatKind::kQ4_0:
    case FormatKind::kQ4_1:
      GgmlHead(f.kind, in, out, n);
      return;
    case FormatKind::kInt: {
      const bool trunc = f.rounding == Rounding::kTrunc;
      if (f.zero_point) {
        if (trunc) {
          IntHead<true, true>(f, stats, in, out, tokens, d, chunk_len);
        } else {
          IntHead<true, false>(f, stats, in, out, tokens, d, chunk_len);
        }
      } else if (trunc) {
        IntHead<false, true>(f, stats, in, out, tokens, d, chunk_len);
      } else {
        IntHead<false, false>(f, stats, in, out, tokens, d, chunk_len);
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
  if (sums != nullptr) {
    Sink<true> out{y};
    Dispatch(f, chunk_len, in, tokens, d, stats, out);
    out.Finish(tokens * d, sums);
  } else {
    Sink<false> out{y};
    Dispatch(f, chunk_len, in, tokens, d, stats, out);
    out.Finish(tokens * d, sums);
  }
}

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
      return true;
    case FormatKind::kQ8_0:
    case FormatKind::kQ4_0:
    case FormatKind::kQ4_1:
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
