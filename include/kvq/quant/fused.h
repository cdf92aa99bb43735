#pragma once
// The fused quantize-dequantize(-and-measure) kernel: one head's block read
// once (fp16 straight from a mapped dump, or float), quantized, dequantized
// and, when asked, its error summed, in one pass per block (two for formats
// whose scale is sequence-global: a statistics pass, then the round trip).
//
// The dequantized values are bit-identical to QuantizeHead (and so to the
// scalar references of kernels.h) on every SIMD target: the same float32
// operations in the same order, each rounded on its own, only evaluated in
// lanes (Highway, dispatched at run time; src/quant/fused/ and
// docs/formats.md say how each target keeps it exact). The error sums
// differ from a serial double sum only by rounding: from a float source
// they are kept in double lanes (about 1e-15 relative); from an fp16
// source, where float cannot overflow, in float lanes folded into double
// every 16 terms per lane: at most (16 + 4) * 2^-24 = 1.2e-6 relative.
// max|x| and the count are exact.
//
// Covered: the formats whose FormatTraits row (kernels.h) names a fused
// kernel (every kind but bf16: fp16, int<b> of every granularity with groups
// along head_dim a multiple of 16, fp8e4m3/e5m2, nvfp4, q8_0, q4_0, q4_1,
// iq4_nl), for head_dim a multiple of 16 (and of the format's block) and
// without modifiers but +had on the per-token int formats (int<b>:token+had,
// head_dim a power of two up to 256: the rotation, the round trip and the
// rotation back in one pass per token, the error in the original basis);
// HasFusedKernel says so. Callers go through QuantizeHead
// or QuantizeHeadError (quantize.h), which run it where it applies and the
// generic path elsewhere.
#include <cstdint>

#include "kvq/quant/format.h"
#include "kvq/quant/kernels.h"

namespace kvq {

// Error sums of one round trip (see TensorError for the derived metrics).
struct QdqErrorSums {
  int64_t count = 0;
  double sse = 0;     // sum (x - y)^2
  double sum_sq = 0;  // sum x^2
  float max_abs = 0;  // max |x|
};

bool HasFusedKernel(const FormatSpec& format, int head_dim);

// One head's block x [tokens, head_dim]: exactly one of x_half (fp16 bits)
// and x_float is non-null. chunk_len: prompt length (int g<N>:token groups
// restart at every prompt); 0 = one prompt. stats: the sequence-global
// statistics (CalibrateHead); nullptr computes them from the block.
// Exactly one output: y [tokens, head_dim] (from x_float only; may alias it)
// receives dequantize(quantize(x)), or sums receive the error.
// Throws InputError "non-finite value in the block to quantize".
// Requires HasFusedKernel(format, head_dim).
void FusedQuantizeHead(const FormatSpec& format, int64_t chunk_len, const uint16_t* x_half,
                       const float* x_float, int64_t tokens, int head_dim, const HeadStats* stats,
                       float* y, QdqErrorSums* sums);

}  // namespace kvq
