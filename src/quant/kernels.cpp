#include "kvq/quant/kernels.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/array_ops.h"
#include "kvq/common/error.h"
#include "kvq/common/half.h"
#include "quant/fused/families.h"

namespace kvq {
namespace {

// ---------------------------------------------------------------------------
// Statistics.

void MinMax(const float* x, int64_t n, float& lo, float& hi) {
  MinMaxOf(x, n, lo, hi);
  // Adding +0 turns -0 into +0, so the result does not depend on which of
  // two signed zeros a scan met first.
  lo += 0.0f;
  hi += 0.0f;
}

// ---------------------------------------------------------------------------
// Integer formats: the reference (the fast path is the fused kernel, fused/int.cpp).

float RoundQ(float v, bool trunc) { return trunc ? std::trunc(v) : std::nearbyint(v); }

// y for one element of a group with scale `scale` (MakeIntScale).
float QdqRef(float x, const IntScale& scale, int levels, bool asym, bool trunc) {
  if (!scale.usable) return scale.offset;
  const auto top = static_cast<float>(levels);
  if (asym) {
    const float q = std::min(std::max(RoundQ((x - scale.offset) * scale.s, trunc), 0.0f), top);
    return q / scale.s + scale.offset;
  }
  const float q = std::min(std::max(RoundQ(x * scale.s, trunc), -top), top);
  return q / scale.s;
}

int QMax(const FormatSpec& f) { return (1 << (f.bits - 1)) - 1; }
int Levels(const FormatSpec& f) { return (1 << f.bits) - 1; }

// Reference: visits each group explicitly, computes its range from its own
// members (or from stats for tensor / channel), then applies the element math.
void IntReference(const FormatSpec& f, const HeadStats& stats, const float* x, float* y,
                  int64_t rows, int d) {
  const bool trunc = f.rounding == Rounding::kTrunc;
  std::vector<int64_t> members;
  const int levels = f.zero_point ? Levels(f) : QMax(f);
  auto apply = [&](float lo, float hi) {
    const IntScale scale = MakeIntScale(f.zero_point, lo, hi, levels);
    for (int64_t i : members) y[i] = QdqRef(x[i], scale, levels, f.zero_point, trunc);
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

void PutHalf(uint8_t* p, float v) {
  const uint16_t h = FloatToHalf(v);
  std::memcpy(p, &h, 2);
}
float GetHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return HalfToFloat(h);
}

void QuantizeQ8_0(const float* x, uint8_t* out, bool) {
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

void QuantizeQ4_0(const float* x, uint8_t* out, bool) {
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

void QuantizeQ4_1(const float* x, uint8_t* out, bool) {
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
    // ggml's q4_1 reference rounds v >= 0 by adding 1/2 and truncating; kvq
    // reproduces its blocks bit for bit.
    q[j] = static_cast<uint8_t>(
        std::min(15, static_cast<int>(v + 0.5f)));  // NOLINT(bugprone-incorrect-roundings)
  }
  PackNibbles(q, out + 4);
}

int Iq4NlNearest(float a) {
  const int8_t* t = kIq4NlLevels;
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
    const auto q = static_cast<float>(kIq4NlLevels[k[j]]);
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

// Dequantizers: y = q * d (+ m), d (and m) the block's fp16 scale (minimum).
void DequantizeQ8_0(const uint8_t* in, float* y) {
  const float d = GetHalf(in);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(in[2 + j])) * d;
}

void DequantizeQ4_0(const uint8_t* in, float* y) {
  const float d = GetHalf(in);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((in[2 + j] & 0x0f) - 8) * d;
    y[j + 16] = static_cast<float>((in[2 + j] >> 4) - 8) * d;
  }
}

void DequantizeQ4_1(const uint8_t* in, float* y) {
  const float d = GetHalf(in), m = GetHalf(in + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(in[4 + j] & 0x0f) * d + m;
    y[j + 16] = static_cast<float>(in[4 + j] >> 4) * d + m;
  }
}

void DequantizeIq4Nl(const uint8_t* in, float* y) {
  const float d = GetHalf(in);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(kIq4NlLevels[in[2 + j] & 0x0f]);
    y[j + 16] = d * static_cast<float>(kIq4NlLevels[in[2 + j] >> 4]);
  }
}

void GgmlReference(const FormatSpec& f, const HeadStats&, const float* x, float* y, int64_t rows,
                   int d) {
  std::vector<uint8_t> bytes(static_cast<size_t>(d / 32) *
                             static_cast<size_t>(Traits(f.kind).block_bytes));
  for (int64_t t = 0; t < rows; ++t) {
    GgmlQuantizeRow(f.kind, f.search, x + t * d, d, bytes.data());
    GgmlDequantizeRow(f.kind, bytes.data(), d, y + t * d);
  }
}

// clang-format off
constexpr FormatTraits kTable[] = {
    {.kind = FormatKind::kFp16, .name = "fp16", .bits = 16, .block = 1, .block_bytes = 2,
     .reference = Fp16Reference, .fast = Fp16Fast, .fused = FusedFp16Head,
     .examples = "fp16", .max_gauss_nmse = 6e-8},
    {.kind = FormatKind::kBf16, .name = "bf16", .bits = 16, .block = 1, .block_bytes = 2,
     .reference = Bf16Reference,
     .examples = "bf16", .max_gauss_nmse = 4e-6},
    // Geometry, cost and statistics by granularity: FormatSpec's methods.
    {.kind = FormatKind::kInt, .name = "int", .bits = 8,
     .reference = IntReference, .fused = FusedIntHead,
     .examples = "int4:tensor int4:token int4:channel int4:g32:dim int4:g16:dim int4:g64:dim "
                 "int4:g8:dim:sym int4:g16:token int4:g7:token int4:tensor:asym "
                 "int4:token:asym int4:channel:asym int4:g32:dim:sym int4:g32:token:sym",
     .max_gauss_nmse = 0.03},
    {.kind = FormatKind::kFp8E4M3, .name = "fp8e4m3", .bits = 8, .block = 1, .block_bytes = 1,
     .sequence_bytes = 4, .needs_stats = true,
     .reference = Fp8Reference, .fast = Fp8Fast, .fused = FusedFp8Head,
     .examples = "fp8e4m3", .max_gauss_nmse = 1e-3},
    {.kind = FormatKind::kFp8E5M2, .name = "fp8e5m2", .bits = 8, .block = 1, .block_bytes = 1,
     .sequence_bytes = 4, .needs_stats = true,
     .reference = Fp8Reference, .fast = Fp8Fast, .fused = FusedFp8Head,
     .examples = "fp8e5m2", .max_gauss_nmse = 3.5e-3},
    {.kind = FormatKind::kQ8_0, .name = "q8_0", .bits = 8, .block = 32, .block_bytes = 34,
     .reference = GgmlReference, .fused = FusedQ8_0Head,
     .ggml_quantize = QuantizeQ8_0, .ggml_dequantize = DequantizeQ8_0,
     .examples = "q8_0", .max_gauss_nmse = 4e-5},
    {.kind = FormatKind::kQ4_0, .name = "q4_0", .bits = 4, .block = 32, .block_bytes = 18,
     .reference = GgmlReference, .fused = FusedQ4_0Head,
     .ggml_quantize = QuantizeQ4_0, .ggml_dequantize = DequantizeQ4_0,
     .examples = "q4_0", .max_gauss_nmse = 9e-3},
    {.kind = FormatKind::kQ4_1, .name = "q4_1", .bits = 4, .block = 32, .block_bytes = 20,
     .reference = GgmlReference, .fused = FusedQ4_1Head,
     .ggml_quantize = QuantizeQ4_1, .ggml_dequantize = DequantizeQ4_1,
     .examples = "q4_1", .max_gauss_nmse = 8e-3},
    {.kind = FormatKind::kIq4Nl, .name = "iq4_nl", .bits = 4, .block = 32, .block_bytes = 18,
     .reference = GgmlReference, .fused = FusedIq4NlHead,
     .ggml_quantize = QuantizeIq4Nl, .ggml_dequantize = DequantizeIq4Nl,
     .examples = "iq4_nl iq4_nl:search", .max_gauss_nmse = 8e-3},
    // 16 e2m1 nibbles and one e4m3 block scale; an fp32 global scale per head.
    {.kind = FormatKind::kNvfp4, .name = "nvfp4", .bits = 4, .block = 16, .block_bytes = 9,
     .sequence_bytes = 4, .needs_stats = true,
     .reference = Nvfp4Reference, .fused = FusedNvfp4Head,
     .examples = "nvfp4", .max_gauss_nmse = 0.011},
};
// clang-format on

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

// The rows follow FormatKind's order, so a kind is its row's index.
static_assert([] {
  for (size_t i = 0; i < std::size(kTable); ++i) {
    if (static_cast<size_t>(kTable[i].kind) != i) return false;
  }
  return true;
}());

const FormatTraits& Traits(FormatKind kind) {
  const auto i = static_cast<size_t>(kind);
  KVQ_CHECK(i < std::size(kTable));
  return kTable[i];
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

void GgmlQuantizeRow(FormatKind kind, bool search, const float* x, int64_t n, uint8_t* out) {
  const FormatTraits& t = Traits(kind);
  KVQ_CHECK(n % 32 == 0 && t.ggml_quantize != nullptr);
  for (int64_t b = 0; b < n / 32; ++b) {
    t.ggml_quantize(x + b * 32, out + static_cast<size_t>(b) * static_cast<size_t>(t.block_bytes),
                    search);
  }
}

void GgmlDequantizeRow(FormatKind kind, const uint8_t* in, int64_t n, float* y) {
  const FormatTraits& t = Traits(kind);
  KVQ_CHECK(n % 32 == 0 && t.ggml_dequantize != nullptr);
  for (int64_t b = 0; b < n / 32; ++b) {
    t.ggml_dequantize(in + static_cast<size_t>(b) * static_cast<size_t>(t.block_bytes), y + b * 32);
  }
}

void HadamardRows(float* x, int64_t rows, int n) {
  KVQ_CHECK(n > 0 && (n & (n - 1)) == 0);
  HadamardButterflyRows(x, rows, n, 1.0f / std::sqrt(static_cast<float>(n)));
}

}  // namespace kvq
