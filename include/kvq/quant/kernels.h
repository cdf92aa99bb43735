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

struct FormatTraits {
  FormatKind kind;
  const char* family;  // For listings: "fp16", "int", "ggml q8_0", ...
  QdqFn reference;     // Plain scalar code, the definition.
  QdqFn fast;          // nullptr when the reference is the only implementation.
};

std::span<const FormatTraits> FormatTable();
const FormatTraits& Traits(FormatKind kind);

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
// out holds n / 32 blocks of GgmlBlockBytes(kind) bytes, laid out exactly as
// ggml's structs. `search` selects iq4_nl's scale-searching quantizer.
size_t GgmlBlockBytes(FormatKind kind);
void GgmlQuantizeRow(FormatKind kind, bool search, const float* x, int64_t n, uint8_t* out);
void GgmlDequantizeRow(FormatKind kind, const uint8_t* in, int64_t n, float* y);

// The orthonormal Walsh-Hadamard transform H / sqrt(n) of each row of x
// [rows, n], in place; n a power of two. It is its own inverse.
void HadamardRows(float* x, int64_t rows, int n);

}  // namespace kvq
