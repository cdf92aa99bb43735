#include "kvq/quant/kernels.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/array_ops.h"
#include "kvq/common/error.h"
#include "kvq/common/half.h"

namespace kvq {
namespace {

// ---------------------------------------------------------------------------
// Statistics.

float AbsMax(const float* x, int64_t n) { return AbsMaxOf(x, n); }

void MinMax(const float* x, int64_t n, float& lo, float& hi) {
  MinMaxOf(x, n, lo, hi);
  // Adding +0 turns -0 into +0, so the result does not depend on which of
  // two signed zeros a scan met first.
  lo += 0.0f;
  hi += 0.0f;
}

// ---------------------------------------------------------------------------
// Integer formats. The per-element math, shared by reference and fast path.

float RoundQ(float v, bool trunc) { return trunc ? std::trunc(v) : std::nearbyint(v); }

// Symmetric: s = qmax / amax. Returns y for one element.
float QdqSymRef(float x, float amax, int qmax, bool trunc) {
  const float s = static_cast<float>(qmax) / amax;
  if (amax == 0 || !std::isfinite(s)) return 0.0f;
  float q = RoundQ(x * s, trunc);
  q = std::min(std::max(q, -static_cast<float>(qmax)), static_cast<float>(qmax));
  return q / s;
}

// Asymmetric: s = L / (hi - lo).
float QdqAsymRef(float x, float lo, float hi, int levels, bool trunc) {
  const float s = static_cast<float>(levels) / (hi - lo);
  if (hi == lo || !std::isfinite(s) || !(s > 0)) return lo;
  float q = RoundQ((x - lo) * s, trunc);
  q = std::min(std::max(q, 0.0f), static_cast<float>(levels));
  return q / s + lo;
}

int QMax(const FormatSpec& f) { return (1 << (f.bits - 1)) - 1; }
int Levels(const FormatSpec& f) { return (1 << f.bits) - 1; }

// Reference: visits each group explicitly, computes its range from its own
// members (or from stats for tensor / channel), then applies the element math.
void IntReference(const FormatSpec& f, const HeadStats& stats, const float* x, float* y,
                  int64_t rows, int d) {
  const bool trunc = f.rounding == Rounding::kTrunc;
  std::vector<int64_t> members;
  auto apply = [&](float lo, float hi) {
    const float amax = std::max(std::fabs(lo), std::fabs(hi));
    for (int64_t i : members) {
      y[i] = f.zero_point ? QdqAsymRef(x[i], lo, hi, Levels(f), trunc)
                          : QdqSymRef(x[i], amax, QMax(f), trunc);
    }
  };
  auto own_range = [&] {
    float lo = std::numeric_limits<float>::infinity();
    float hi = -lo;
    for (int64_t i : members) {
      if (x[i] < lo) lo = x[i];
      if (x[i] > hi) hi = x[i];
    }
    apply(lo + 0.0f, hi + 0.0f);
  };
  switch (f.granularity) {
    case Granularity::kTensor:
      for (int64_t i = 0; i < rows * d; ++i) members.push_back(i);
      apply(f.zero_point ? stats.min : -stats.amax, f.zero_point ? stats.max : stats.amax);
      break;
    case Granularity::kChannel:
      KVQ_CHECK(static_cast<int>(stats.channel_min.size()) == d);
      for (int c = 0; c < d; ++c) {
        members.clear();
        for (int64_t t = 0; t < rows; ++t) members.push_back(t * d + c);
        apply(stats.channel_min[static_cast<size_t>(c)], stats.channel_max[static_cast<size_t>(c)]);
      }
      break;
    case Granularity::kToken:
    case Granularity::kGroupDim: {
      const int g = f.granularity == Granularity::kToken ? d : f.group;
      for (int64_t t = 0; t < rows; ++t) {
        for (int c0 = 0; c0 < d; c0 += g) {
          members.clear();
          for (int c = c0; c < c0 + g; ++c) members.push_back(t * d + c);
          own_range();
        }
      }
      break;
    }
    case Granularity::kGroupToken:
      for (int64_t t0 = 0; t0 < rows; t0 += f.group) {
        for (int c = 0; c < d; ++c) {
          members.clear();
          for (int64_t t = t0; t < std::min<int64_t>(rows, t0 + f.group); ++t) {
            members.push_back(t * d + c);
          }
          own_range();
        }
      }
      break;
  }
}

// Fast path: the same element math with the parameters hoisted out of
// branch-free loops the compiler vectorises.
template <bool kAsym, bool kTrunc>
struct IntKernel {
  int levels;  // qmax (symmetric) or 2^b - 1 (asymmetric)

  // Parameters of a group: s, lo, and whether the group is degenerate.
  void Params(float lo, float hi, float& s, float& offset, float& keep) const {
    if (kAsym) {
      s = static_cast<float>(levels) / (hi - lo);
      const bool ok = hi != lo && std::isfinite(s) && s > 0;
      keep = ok ? 1.0f : 0.0f;
      s = ok ? s : 1.0f;
      offset = lo;
    } else {
      const float amax = std::max(std::fabs(lo), std::fabs(hi));
      s = static_cast<float>(levels) / amax;
      const bool ok = amax != 0 && std::isfinite(s);
      keep = ok ? 1.0f : 0.0f;
      s = ok ? s : 1.0f;
      offset = 0.0f;
    }
  }

  static float Element(float x, float s, float offset, float keep, float top) {
    if (kAsym) {
      float q = (x - offset) * s;
      q = kTrunc ? std::trunc(q) : std::nearbyint(q);
      q = std::min(std::max(q, 0.0f), top);
      return keep != 0.0f ? q / s + offset : offset;
    }
    float q = x * s;
    q = kTrunc ? std::trunc(q) : std::nearbyint(q);
    q = std::min(std::max(q, -top), top);
    return keep != 0.0f ? q / s : 0.0f;
  }

  void Span(const float* x, float* y, int64_t n, float lo, float hi) const {
    float s, offset, keep;
    Params(lo, hi, s, offset, keep);
    const auto top = static_cast<float>(levels);
    for (int64_t i = 0; i < n; ++i) y[i] = Element(x[i], s, offset, keep, top);
  }

  void Range(const float* x, int64_t n, float& lo, float& hi) const {
    if (kAsym) {
      MinMax(x, n, lo, hi);
    } else {
      hi = AbsMax(x, n);
      lo = -hi;
    }
  }

  void Run(const FormatSpec& f, const HeadStats& stats, const float* x, float* y, int64_t rows,
           int d) const {
    const auto top = static_cast<float>(levels);
    switch (f.granularity) {
      case Granularity::kTensor:
        Span(x, y, rows * d, kAsym ? stats.min : -stats.amax, kAsym ? stats.max : stats.amax);
        return;
      case Granularity::kToken:
      case Granularity::kGroupDim: {
        const int g = f.granularity == Granularity::kToken ? d : f.group;
        for (int64_t i = 0; i < rows * d; i += g) {
          float lo, hi;
          Range(x + i, g, lo, hi);
          Span(x + i, y + i, g, lo, hi);
        }
        return;
      }
      case Granularity::kChannel:
      case Granularity::kGroupToken: {
        std::vector<float> s(static_cast<size_t>(d)), offset(s.size()), keep(s.size()),
            lo(s.size()), hi(s.size());
        const int64_t g = f.granularity == Granularity::kChannel ? rows : f.group;
        for (int64_t t0 = 0; t0 < rows; t0 += g) {
          const int64_t t1 = std::min(rows, t0 + g);
          if (f.granularity == Granularity::kChannel) {
            lo = stats.channel_min;
            hi = stats.channel_max;
          } else {
            std::fill(lo.begin(), lo.end(), std::numeric_limits<float>::infinity());
            std::fill(hi.begin(), hi.end(), -std::numeric_limits<float>::infinity());
            for (int64_t t = t0; t < t1; ++t) {
              for (int c = 0; c < d; ++c) {
                lo[static_cast<size_t>(c)] = std::min(lo[static_cast<size_t>(c)], x[t * d + c]);
                hi[static_cast<size_t>(c)] = std::max(hi[static_cast<size_t>(c)], x[t * d + c]);
              }
            }
            for (int c = 0; c < d; ++c) {
              lo[static_cast<size_t>(c)] += 0.0f;
              hi[static_cast<size_t>(c)] += 0.0f;
            }
          }
          for (size_t c = 0; c < s.size(); ++c) Params(lo[c], hi[c], s[c], offset[c], keep[c]);
          for (int64_t t = t0; t < t1; ++t) {
            const float* xr = x + t * d;
            float* yr = y + t * d;
            for (int c = 0; c < d; ++c) {
              const auto k = static_cast<size_t>(c);
              yr[c] = Element(xr[c], s[k], offset[k], keep[k], top);
            }
          }
        }
        return;
      }
    }
  }
};

void IntFast(const FormatSpec& f, const HeadStats& stats, const float* x, float* y, int64_t rows,
             int d) {
  const bool trunc = f.rounding == Rounding::kTrunc;
  if (f.zero_point) {
    if (trunc) {
      IntKernel<true, true>{Levels(f)}.Run(f, stats, x, y, rows, d);
    } else {
      IntKernel<true, false>{Levels(f)}.Run(f, stats, x, y, rows, d);
    }
  } else if (trunc) {
    IntKernel<false, true>{QMax(f)}.Run(f, stats, x, y, rows, d);
  } else {
    IntKernel<false, false>{QMax(f)}.Run(f, stats, x, y, rows, d);
  }
}

// ---------------------------------------------------------------------------
// fp16 / bf16.

void Fp16Reference(const FormatSpec&, const HeadStats&, const float* x, float* y, int64_t rows,
                   int d) {
  for (int64_t i = 0; i < rows * d; ++i) y[i] = RoundToHalf(x[i]);
}

// RoundToHalf in lanes.
void Fp16Fast(const FormatSpec&, const HeadStats&, const float* x, float* y, int64_t rows, int d) {
  RoundToHalfArray(x, y, rows * d);
}

void Bf16Reference(const FormatSpec&, const HeadStats&, const float* x, float* y, int64_t rows,
                   int d) {
  for (int64_t i = 0; i < rows * d; ++i) y[i] = RoundToBf16(x[i]);
}

// ---------------------------------------------------------------------------
// fp8.

struct MiniFloat {
  int man_bits;
  int bias;
  float max;
};

MiniFloat Layout(Fp8Type type) {
  return type == Fp8Type::kE4M3 ? MiniFloat{3, 7, 448.0f} : MiniFloat{2, 15, 57344.0f};
}

// Rounds a >= 0 to the minifloat grid, nearest even, saturating at max.
float RoundMiniFloat(float a, const MiniFloat& m) {
  if (!(a < m.max)) return m.max;
  int e;
  std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  const int exponent = std::max(e - 1, 1 - m.bias);
  const float quantum = std::ldexp(1.0f, exponent - m.man_bits);
  return std::min(std::nearbyint(a / quantum) * quantum, m.max);
}

void Fp8Qdq(const FormatSpec& f, const HeadStats& stats, const float* x, float* y, int64_t rows,
            int d, bool reference) {
  const Fp8Type type = f.kind == FormatKind::kFp8E4M3 ? Fp8Type::kE4M3 : Fp8Type::kE5M2;
  const MiniFloat m = Layout(type);
  const float s = stats.amax / m.max;
  for (int64_t i = 0; i < rows * d; ++i) {
    if (s == 0) {
      y[i] = 0.0f;
    } else if (reference) {
      y[i] = Fp8Decode(Fp8EncodeRef(x[i] / s, type), type) * s;
    } else {
      const float v = x[i] / s;
      const float r = RoundMiniFloat(std::fabs(v), m);
      y[i] = std::copysign(r, v) * s;
    }
  }
}

void Fp8Reference(const FormatSpec& f, const HeadStats& stats, const float* x, float* y,
                  int64_t rows, int d) {
  Fp8Qdq(f, stats, x, y, rows, d, true);
}
void Fp8Fast(const FormatSpec& f, const HeadStats& stats, const float* x, float* y, int64_t rows,
             int d) {
  Fp8Qdq(f, stats, x, y, rows, d, false);
}

// ---------------------------------------------------------------------------
// nvfp4.

constexpr float kE2m1[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

void Nvfp4Reference(const FormatSpec&, const HeadStats& stats, const float* x, float* y,
                    int64_t rows, int d) {
  const float global = stats.amax / (6.0f * 448.0f);
  for (int64_t b = 0; b < rows * d; b += 16) {
    float bmax = 0;
    for (int j = 0; j < 16; ++j) bmax = std::max(bmax, std::fabs(x[b + j]));
    const float block =
        global == 0 ? 0.0f
                    : Fp8Decode(Fp8Encode((bmax / 6.0f) / global, Fp8Type::kE4M3), Fp8Type::kE4M3);
    const float scale = block * global;
    for (int j = 0; j < 16; ++j) {
      y[b + j] = scale == 0 ? 0.0f : E2m1Decode(E2m1Encode(x[b + j] / scale)) * scale;
    }
  }
}

// ---------------------------------------------------------------------------
// ggml blocks.

constexpr int8_t kIq4NlTable[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1,    13,   25,  38,  53,  69,  89,  113};

void PutHalf(uint8_t* p, float v) {
  const uint16_t h = FloatToHalf(v);
  std::memcpy(p, &h, 2);
}
float GetHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return HalfToFloat(h);
}

void QuantizeQ8_0(const float* x, uint8_t* out) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  PutHalf(out, d);
  for (int j = 0; j < 32; ++j) {
    out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[j] * id)));
  }
}

void PackNibbles(const uint8_t* q, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
}

void QuantizeQ4_0(const float* x, uint8_t* out) {
  float amax = 0, max = 0;
  for (int j = 0; j < 32; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  PutHalf(out, d);
  uint8_t q[32];
  for (int j = 0; j < 32; ++j) {
    const float v = x[j] * id;
    q[j] = static_cast<uint8_t>(std::min(15, static_cast<int>(v + 8.5f)));
  }
  PackNibbles(q, out + 2);
}

void QuantizeQ4_1(const float* x, uint8_t* out) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < 32; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / 15.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  PutHalf(out, d);
  PutHalf(out + 2, min);
  uint8_t q[32];
  for (int j = 0; j < 32; ++j) {
    const float v = (x[j] - min) * id;
    q[j] = static_cast<uint8_t>(std::min(15, static_cast<int>(v + 0.5f)));
  }
  PackNibbles(q, out + 4);
}

int Iq4NlNearest(float a) {
  const int8_t* t = kIq4NlTable;
  if (a <= t[0]) return 0;
  if (a >= t[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (a < t[mid]) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return a - t[hi - 1] < t[hi] - a ? hi - 1 : hi;
}

// One fit of inverse scale s: indices into k, sums Sqx and Sqq (w = x^2).
void Iq4NlFit(const float* x, float s, uint8_t* k, float& sqx, float& sqq) {
  sqx = 0;
  sqq = 0;
  for (int j = 0; j < 32; ++j) {
    k[j] = static_cast<uint8_t>(Iq4NlNearest(s * x[j]));
    const auto q = static_cast<float>(kIq4NlTable[k[j]]);
    const float w = x[j] * x[j];
    const float wq = w * q;
    sqx = sqx + wq * x[j];
    sqq = sqq + wq * q;
  }
}

void QuantizeIq4Nl(const float* x, uint8_t* out, bool search) {
  float amax = 0, max = 0;
  for (int j = 0; j < 32; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  uint8_t k[32];
  if (amax < 1e-15f) {
    PutHalf(out, 0.0f);
    std::fill_n(out + 2, 16, static_cast<uint8_t>(0x88));
    return;
  }
  float d = search ? -max / -127.0f : max / -127.0f;
  float sqx, sqq;
  Iq4NlFit(x, 1.0f / d, k, sqx, sqq);
  d = sqq > 0 ? sqx / sqq : 0.0f;
  if (search) {
    float best = d * sqx;
    for (int t = -7; t <= 7; ++t) {
      const float s = static_cast<float>(t - 127) / max;
      uint8_t kt[32];
      Iq4NlFit(x, s, kt, sqx, sqq);
      if (sqq > 0 && sqx * sqx > best * sqq) {
        d = sqx / sqq;
        best = d * sqx;
      }
    }
    const float id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; ++j) k[j] = static_cast<uint8_t>(Iq4NlNearest(x[j] * id));
  }
  PutHalf(out, d);
  PackNibbles(k, out + 2);
}

void GgmlReference(const FormatSpec& f, const HeadStats&, const float* x, float* y, int64_t rows,
                   int d) {
  std::vector<uint8_t> bytes(static_cast<size_t>(d) / 32 * GgmlBlockBytes(f.kind));
  for (int64_t t = 0; t < rows; ++t) {
    GgmlQuantizeRow(f.kind, f.search, x + t * d, d, bytes.data());
    GgmlDequantizeRow(f.kind, bytes.data(), d, y + t * d);
  }
}

constexpr FormatTraits kTable[] = {
    {FormatKind::kFp16, "fp16", Fp16Reference, Fp16Fast},
    {FormatKind::kBf16, "bf16", Bf16Reference, nullptr},
    {FormatKind::kInt, "int", IntReference, IntFast},
    {FormatKind::kFp8E4M3, "fp8 e4m3", Fp8Reference, Fp8Fast},
    {FormatKind::kFp8E5M2, "fp8 e5m2", Fp8Reference, Fp8Fast},
    {FormatKind::kQ8_0, "ggml q8_0", GgmlReference, nullptr},
    {FormatKind::kQ4_0, "ggml q4_0", GgmlReference, nullptr},
    {FormatKind::kQ4_1, "ggml q4_1", GgmlReference, nullptr},
    {FormatKind::kIq4Nl, "ggml iq4_nl", GgmlReference, nullptr},
    {FormatKind::kNvfp4, "nvfp4", Nvfp4Reference, nullptr},
};

}  // namespace

void HeadStats::Merge(const HeadStats& other) {
  if (other.count == 0) return;
  if (count == 0) {
    *this = other;
    return;
  }
  count += other.count;
  amax = std::max(amax, other.amax);
  min = std::min(min, other.min);
  max = std::max(max, other.max);
  KVQ_CHECK(channel_min.size() == other.channel_min.size());
  for (size_t c = 0; c < channel_min.size(); ++c) {
    channel_min[c] = std::min(channel_min[c], other.channel_min[c]);
    channel_max[c] = std::max(channel_max[c], other.channel_max[c]);
  }
}

void AccumulateStats(const FormatSpec& format, const float* x, int64_t rows, int head_dim,
                     HeadStats& stats) {
  if (rows == 0) return;
  HeadStats add;
  add.count = rows * head_dim;
  MinMax(x, add.count, add.min, add.max);
  add.amax = std::max(std::fabs(add.min), std::fabs(add.max));
  if (format.kind == FormatKind::kInt && format.granularity == Granularity::kChannel) {
    add.channel_min.assign(static_cast<size_t>(head_dim), std::numeric_limits<float>::infinity());
    add.channel_max.assign(static_cast<size_t>(head_dim), -std::numeric_limits<float>::infinity());
    float* lo = add.channel_min.data();
    float* hi = add.channel_max.data();
    for (int64_t t = 0; t < rows; ++t) {
      for (int c = 0; c < head_dim; ++c) {
        lo[c] = std::min(lo[c], x[t * head_dim + c]);
        hi[c] = std::max(hi[c], x[t * head_dim + c]);
      }
    }
    for (int c = 0; c < head_dim; ++c) {
      lo[c] += 0.0f;
      hi[c] += 0.0f;
    }
  }
  stats.Merge(add);
}

std::span<const FormatTraits> FormatTable() { return kTable; }

const FormatTraits& Traits(FormatKind kind) {
  for (const auto& t : kTable) {
    if (t.kind == kind) return t;
  }
  KVQ_CHECK(false);
  return kTable[0];
}

float Fp8Max(Fp8Type type) { return Layout(type).max; }

float Fp8Decode(uint8_t code, Fp8Type type) {
  const MiniFloat m = Layout(type);
  const int exp_bits = 7 - m.man_bits;
  const int e = (code >> m.man_bits) & ((1 << exp_bits) - 1);
  const int man = code & ((1 << m.man_bits) - 1);
  const float sign = (code & 0x80) ? -1.0f : 1.0f;
  if (type == Fp8Type::kE4M3 && e == 15 && man == 7) return std::numeric_limits<float>::quiet_NaN();
  if (type == Fp8Type::kE5M2 && e == 31) {
    return man == 0 ? sign * std::numeric_limits<float>::infinity()
                    : std::numeric_limits<float>::quiet_NaN();
  }
  if (e == 0) return sign * std::ldexp(static_cast<float>(man), 1 - m.bias - m.man_bits);
  return sign * std::ldexp(static_cast<float>(man + (1 << m.man_bits)), e - m.bias - m.man_bits);
}

uint8_t Fp8Encode(float value, Fp8Type type) {
  const MiniFloat m = Layout(type);
  const uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  const float r = RoundMiniFloat(std::fabs(value), m);
  if (r == 0) return sign;
  int e;
  const float f = std::frexp(r, &e);  // r = f * 2^e
  int exponent = e - 1;
  if (exponent < 1 - m.bias) {  // Subnormal: r = man * 2^(1 - bias - man_bits).
    const auto man = static_cast<int>(std::ldexp(r, m.bias - 1 + m.man_bits));
    return static_cast<uint8_t>(sign | man);
  }
  const auto man = static_cast<int>(std::ldexp(f, m.man_bits + 1)) - (1 << m.man_bits);
  return static_cast<uint8_t>(sign | ((exponent + m.bias) << m.man_bits) | man);
}

uint8_t Fp8EncodeRef(float value, Fp8Type type) {
  const uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  const double a = std::fabs(static_cast<double>(value));
  int best = 0;
  if (a >= Fp8Max(type)) {  // Saturation (also where |a - v| would lose the difference).
    while (Fp8Decode(static_cast<uint8_t>(best), type) != Fp8Max(type)) ++best;
    return static_cast<uint8_t>(sign | best);
  }
  double best_err = std::numeric_limits<double>::infinity();
  for (int code = 0; code < 128; ++code) {
    const float v = Fp8Decode(static_cast<uint8_t>(code), type);
    if (!std::isfinite(v)) continue;
    const double err = std::fabs(a - static_cast<double>(v));
    // Codes ascend in value: a tie goes to the even code.
    if (err < best_err || (err == best_err && (code & 1) == 0)) {
      best = code;
      best_err = err;
    }
  }
  return static_cast<uint8_t>(sign | best);
}

uint8_t E2m1Encode(float value) {
  const uint8_t sign = std::signbit(value) ? 0x8 : 0x0;
  const float a = std::fabs(value);
  int best = 0;
  for (int c = 1; c < 8; ++c) {
    const float err = std::fabs(a - kE2m1[c]);
    const float best_err = std::fabs(a - kE2m1[best]);
    if (err < best_err || (err == best_err && (c & 1) == 0)) best = c;
  }
  return static_cast<uint8_t>(sign | best);
}

float E2m1Decode(uint8_t code) {
  const float v = kE2m1[code & 7];
  return (code & 8) ? -v : v;
}

size_t GgmlBlockBytes(FormatKind kind) {
  switch (kind) {
    case FormatKind::kQ8_0:
      return 34;
    case FormatKind::kQ4_0:
      return 18;
    case FormatKind::kQ4_1:
      return 20;
    case FormatKind::kIq4Nl:
      return 18;
    default:
      KVQ_CHECK(false);
  }
  return 0;
}

void GgmlQuantizeRow(FormatKind kind, bool search, const float* x, int64_t n, uint8_t* out) {
  KVQ_CHECK(n % 32 == 0);
  const size_t bytes = GgmlBlockBytes(kind);
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* xb = x + b * 32;
    uint8_t* ob = out + static_cast<size_t>(b) * bytes;
    switch (kind) {
      case FormatKind::kQ8_0:
        QuantizeQ8_0(xb, ob);
        break;
      case FormatKind::kQ4_0:
        QuantizeQ4_0(xb, ob);
        break;
      case FormatKind::kQ4_1:
        QuantizeQ4_1(xb, ob);
        break;
      case FormatKind::kIq4Nl:
        QuantizeIq4Nl(xb, ob, search);
        break;
      default:
        KVQ_CHECK(false);
    }
  }
}

void GgmlDequantizeRow(FormatKind kind, const uint8_t* in, int64_t n, float* y) {
  KVQ_CHECK(n % 32 == 0);
  const size_t bytes = GgmlBlockBytes(kind);
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* ib = in + static_cast<size_t>(b) * bytes;
    float* yb = y + b * 32;
    const float d = GetHalf(ib);
    switch (kind) {
      case FormatKind::kQ8_0:
        for (int j = 0; j < 32; ++j) yb[j] = static_cast<float>(static_cast<int8_t>(ib[2 + j])) * d;
        break;
      case FormatKind::kQ4_0:
        for (int j = 0; j < 16; ++j) {
          yb[j] = static_cast<float>((ib[2 + j] & 0x0f) - 8) * d;
          yb[j + 16] = static_cast<float>((ib[2 + j] >> 4) - 8) * d;
        }
        break;
      case FormatKind::kQ4_1: {
        const float m = GetHalf(ib + 2);
        for (int j = 0; j < 16; ++j) {
          yb[j] = static_cast<float>(ib[4 + j] & 0x0f) * d + m;
          yb[j + 16] = static_cast<float>(ib[4 + j] >> 4) * d + m;
        }
        break;
      }
      case FormatKind::kIq4Nl:
        for (int j = 0; j < 16; ++j) {
          yb[j] = d * static_cast<float>(kIq4NlTable[ib[2 + j] & 0x0f]);
          yb[j + 16] = d * static_cast<float>(kIq4NlTable[ib[2 + j] >> 4]);
        }
        break;
      default:
        KVQ_CHECK(false);
    }
  }
}

void HadamardRows(float* x, int64_t rows, int n) {
  KVQ_CHECK(n > 0 && (n & (n - 1)) == 0);
  HadamardButterflyRows(x, rows, n, 1.0f / std::sqrt(static_cast<float>(n)));
}

}  // namespace kvq
