#pragma once
// Quantize-then-dequantize KV tensors: THE code path of kvq. The tensor-error
// benchmark (kvq quant) calls QuantizeHeadError; attention fidelity, the planner
// and the perplexity forward pass call QuantizeLayer (or QuantizeHead). Each
// runs the fused kernel (fused.h) where it applies and the generic path
// below elsewhere, with the same results.
//
// For one head's block x [tokens, head_dim] and a FormatSpec, per prompt
// (tokens [c * chunk_len, (c + 1) * chunk_len), position p = t % chunk_len):
//   1. sink / recent tokens of the prompt: y = fp16(x);
//   2. the other tokens go to the working basis, in this order:
//        +bias     x <- x - R(p) b_k         (b_k the layer's k_proj bias)
//        +prerope  x <- R(p)^-1 x             (undo RoPE)
//        +had      x <- H x / sqrt(head_dim)  (orthonormal Walsh-Hadamard)
//      are quantized and dequantized by the format's kernel (kernels.h),
//      and brought back by the inverse steps in reverse order.
// Formats whose scale is sequence-global (NeedsStats(): int tensor/channel,
// fp8, nvfp4) take it from HeadStats: by default computed from the block
// itself, or given by the caller from a calibration pass over a whole
// sequence (Calibrate*), so that prompt-by-prompt callers quantize each
// prompt with the scales of the whole dump.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kvq/model/rope.h"
#include "kvq/model/safetensors.h"
#include "kvq/quant/format.h"
#include "kvq/quant/fused.h"
#include "kvq/quant/kernels.h"
#include "kvq/quant/strategy.h"

namespace kvq {

// What the modifiers need to know about one head's block.
struct HeadContext {
  int64_t chunk_len = 0;  // Prompt length: position of token t is first_position + t % chunk_len.
  const RopeTable* rope = nullptr;  // Covers positions [0, first_position + chunk_len); for
                                    // +prerope / +bias.
  const float* k_bias = nullptr;    // [head_dim] k_proj bias of this head; nullptr: none
                                    // (+bias is then a no-op).
  bool use_reference = false;       // Run the scalar reference kernels (tests).
  int64_t first_position = 0;       // Non-zero when the block continues a sequence (a
                                    // decoding cache quantizing its newest tokens).
};

// The statistics of x [tokens, head_dim] that the format's scale needs.
HeadStats CalibrateHead(const FormatSpec& format, const HeadContext& ctx, const float* x,
                        int64_t tokens, int head_dim);

// y = dequantize(quantize(x)), both [tokens, head_dim]; y may equal x.
// stats: from CalibrateHead (of this block or of a whole sequence); nullptr
// computes them from x. Throws InputError if x holds a non-finite value.
void QuantizeHead(const FormatSpec& format, const HeadContext& ctx, const float* x, float* y,
                  int64_t tokens, int head_dim, const HeadStats* stats = nullptr);

// The error sums of one head's round trip, x [tokens, head_dim] at flat
// index `first` of a dump tensor (F16, F32 or BF16), with statistics from
// the whole head and positions t % ctx.chunk_len. The fused kernel reads an
// F16 / F32 head straight from the mapping; otherwise the head is widened
// into per-thread scratch and quantized prompt by prompt (QuantizeHead),
// each prompt measured while in cache. Throws InputError naming the token
// of a non-finite value.
QdqErrorSums QuantizeHeadError(const FormatSpec& format, const HeadContext& ctx,
                               const TensorView& x, int64_t first, int64_t tokens, int head_dim);

// Everything QuantizeLayer needs besides the data.
struct LayerContext {
  int num_kv_heads = 0;
  int head_dim = 0;
  int64_t chunk_len = 0;                  // Position of token t is t % chunk_len.
  std::shared_ptr<const RopeTable> rope;  // Positions [0, chunk_len); may be null when no
                                          // format uses +prerope / +bias.
  std::vector<float> k_bias;              // [num_kv_heads, head_dim]; empty: no bias.

  // One head's context: the k bias of `head` for K, none for V.
  HeadContext ForHead(KvTensor tensor, int head) const;
};

// QuantizeLayer runs heads in parallel from this many values (x.size()) on.
inline constexpr int64_t kParallelLayerValues = int64_t{1} << 21;

// [num_kv_heads]
using LayerStats = std::vector<HeadStats>;

// Calibration pass: the statistics of every kv head of x
// [num_kv_heads, tokens, head_dim] under the strategy's formats.
LayerStats CalibrateLayer(const Strategy& strategy, KvTensor tensor, int layer,
                          const LayerContext& ctx, std::span<const float> x);

// Quantize-then-dequantize the K (or V) of one layer, all kv heads:
// x, out [num_kv_heads, tokens, head_dim] (tokens = x.size() / (heads * head_dim));
// out may be x itself (in place). stats: nullptr computes each head's scale
// from x; else one HeadStats per kv head from CalibrateLayer. Runs the heads
// in parallel (OpenMP) when the layer holds at least kParallelLayerValues
// values, else serially (a parallel region's barrier costs more than a small
// layer: callers parallelise across layers). Throws InputError naming layer
// and head for a non-finite value.
void QuantizeLayer(const Strategy& strategy, KvTensor tensor, int layer, const LayerContext& ctx,
                   std::span<const float> x, std::span<float> out,
                   const LayerStats* stats = nullptr);

}  // namespace kvq
