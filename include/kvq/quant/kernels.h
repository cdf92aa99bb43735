#pragma once
// The quantize-dequantize kernels behind every FormatSpec, one row of a
// table per format kind (ggml's type_traits idea): a plain scalar reference,
// an optional fast path that tests check against it bit for bit, and the
// element math written out below. All arithmetic is float32, every operation
// rounded on its own (the build uses -ffp-contract=off).
//
// Inputs must be finite (KvDump rejects NaN/Inf naming layer and head; the
// layer API checks again). A zero-range group never divides by zero.
//
// kInt, symmetric, b bits, qmax = 2^(b-1) - 1, over the group's amax:
//   s = qmax / amax;  q = clamp(rint(x * s), -qmax, qmax);  y = q / s
//   rint = nearbyintf (ties to even), or truncation toward zero for +trunc
//   (the C cast `(int8_t)(x * s)`). amax == 0 or s not finite (amax below
//   ~4e-37): y = 0.
// kInt, asymmetric (zero point), L = 2^b - 1, over the group's [lo, hi]:
//   s = L / (hi - lo);  q = clamp(rint((x - lo) * s), 0, L);  y = q / s + lo
//   hi == lo or s not finite: y = lo.
// fp16 / bf16: y = x rounded to the type (nearest even).
// fp8 (e4m3 OCP "fn": max 448, no inf; e5m2: max 57344), per-head scale:
//   s = amax / max;  y = fp8(x / s) * s, fp8() rounding to nearest even and
//   saturating to +-max. amax == 0 or s == 0: y = 0.
// nvfp4: G = amax / (6 * 448) per head; per 16 values along head_dim
//   Sb = e4m3((bmax / 6) / G), S = Sb * G;  y = e2m1(x / S) * S with e2m1 in
//   {0, .5, 1, 1.5, 2, 3, 4, 6} (nearest, ties to even code, saturating).
//   S == 0: y = 0.
// q8_0, q4_0, q4_1, iq4_nl: ggml's reference quantizers exactly (blocks of 32
//   along head_dim); see docs/formats.md and tests/data/ggml-quants/README.md.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kvq/quant/format.h"

namespace kvq {

// Sequence-global statistics of one head, in the quantizer's working basis
// (after the Hadamard / pre-RoPE / bias modifiers), over the tokens the format
// quantizes (sink and recent tokens excluded).
struct HeadStats {
  int64_t count = 0;  // Values seen.
  float amax = 0;     // max |x|
  float min = 0;      // min x (0 when count == 0)
  float max = 0;      // max x
  // [head_dim]: per-channel min and max; filled for kInt channel granularity only.
  std::vector<float> channel_min, channel_max;

  void Merge(const HeadStats& other);
};

// Accumulates the statistics of x [rows, head_dim] into stats.
void AccumulateStats(const FormatSpec& format, const float* x, int64_t rows, int head_dim,
                     HeadStats& stats);

// Quantize-dequantize x -> y, both [rows, head_dim], in the working basis.
// Rows are consecutive tokens of one prompt; kGroupToken groups start at row 0.
// y may equal x. `stats` is read by the formats whose NeedsStats() is true.
using QdqFn = void (*)(const FormatSpec& format, const HeadStats& stats, const float* x, float* y,
                       int64_t rows, int head_dim);

// The fused kernel of a format (quant/fused.h; src/quant/fused/).
struct FusedCall;
using FusedFn = void (*)(const FusedCall& call);

// One ggml block of 32 values: quantize x into out (`search`: iq4_nl's
// scale search), dequantize in into y.
using GgmlQuantizeFn = void (*)(const float* x, uint8_t* out, bool search);
using GgmlDequantizeFn = void (*)(const uint8_t* in, float* y);

// Every per-format fact, one row per FormatKind (ggml's type_traits): adding
// a format is one row here (kernels.cpp) plus its kernels; format.cpp,
// fused.cpp and the table tests read the rest from the row. kInt is a family
// whose geometry, cost and statistics depend on its granularity and group
// (FormatSpec's methods say how); its row holds the rest.
struct FormatTraits {
  FormatKind kind;
  const char* name;  // The base name (kInt: "int", spelled int<b>).
  int bits;          // Bits per value (kInt: parsed from the name).
  // Storage: head_dim is a multiple of `block` values; each block costs
  // `block_bytes` (values and their scales); a sequence adds
  // `sequence_bytes` of constants (a per-head fp32 scale).
  int block = 1;
  double block_bytes = 0;
  double sequence_bytes = 0;
  bool needs_stats = false;   // The scale depends on the whole sequence (quantize.h).
  QdqFn reference = nullptr;  // Plain scalar code, the definition.
  QdqFn fast = nullptr;       // nullptr when the reference is the only scalar implementation.
  FusedFn fused = nullptr;    // The SIMD kernel; nullptr: none (QuantizeHead runs `fast`).
  GgmlQuantizeFn ggml_quantize = nullptr;  // ggml blocks only.
  GgmlDequantizeFn ggml_dequantize = nullptr;
  // Canonical names the table tests run, one per parameter choice (space
  // separated; for kInt the tests add 8, 4, 3 and 2 bits and +trunc).
  const char* examples = "";
  // Error band: the NMSE of every example's round trip of N(0, 1) data
  // stays at most this (tests/unit/quant_format_test.cpp).
  double max_gauss_nmse = 0;
};

std::span<const FormatTraits> FormatTable();
const FormatTraits& Traits(FormatKind kind);

// The scale of an int group (the formulas above), from its range [lo, hi]:
// symmetric, s = qmax / max(|lo|, |hi|) and offset 0; asymmetric, s = L /
// (hi - lo) and offset lo. usable is false for a zero or non-finite range
// (then y = offset and s = 1). `levels` is qmax or L.
struct IntScale {
  float s, offset;
  bool usable;
};
inline IntScale MakeIntScale(bool asym, float lo, float hi, int levels) {
  float s, offset;
  bool usable;
  if (asym) {
    s = static_cast<float>(levels) / (hi - lo);
    usable = hi != lo && std::isfinite(s) && s > 0;
    offset = lo;
  } else {
    const float amax = std::max(std::fabs(lo), std::fabs(hi));
    s = static_cast<float>(levels) / amax;
    usable = amax != 0 && std::isfinite(s);
    offset = 0.0f;
  }
  return {usable ? s : 1.0f, offset, usable};
}

// iq4_nl's 16 levels (ggml's kvalues_iq4nl), ascending.
inline constexpr int8_t kIq4NlLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// fp8: exact decode of a code, and encoding to nearest even with saturation.
enum class Fp8Type { kE4M3, kE5M2 };
float Fp8Decode(uint8_t code, Fp8Type type);
uint8_t Fp8Encode(float value, Fp8Type type);     // Fast: exponent arithmetic.
uint8_t Fp8EncodeRef(float value, Fp8Type type);  // Reference: nearest of all codes.
float Fp8Max(Fp8Type type);                       // 448 or 57344.

// e2m1 (fp4): magnitude code 0..7 of {0, .5, 1, 1.5, 2, 3, 4, 6}, sign in bit 3.
uint8_t E2m1Encode(float value);
float E2m1Decode(uint8_t code);

// ggml block formats (kQ8_0, kQ4_0, kQ4_1, kIq4Nl). n is a multiple of 32;
// out holds n / 32 blocks of Traits(kind).block_bytes bytes, laid out
// exactly as ggml's structs. `search` selects iq4_nl's scale-searching
// quantizer.
void GgmlQuantizeRow(FormatKind kind, bool search, const float* x, int64_t n, uint8_t* out);
void GgmlDequantizeRow(FormatKind kind, const uint8_t* in, int64_t n, float* y);

// The orthonormal Walsh-Hadamard transform H / sqrt(n) of each row of x
// [rows, n], in place; n a power of two. It is its own inverse.
void HadamardRows(float* x, int64_t rows, int n);

}  // namespace kvq
