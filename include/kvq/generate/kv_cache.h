#pragma once
// A KV cache for incremental decoding that follows a Strategy per (K|V,
// layer, kv head) with quantize-on-append semantics, as a serving engine runs
// it (docs/generate.md). The cache is simulated: it holds each token's
// dequantized values, which are exactly the values the format stores
// (QuantizeHead, the one quantization path), plus the float32 values of the
// tokens still waiting to be quantized.
//
// Per (tensor, layer, head) with format f, over the tokens of one sequence:
//   - the first f.sink tokens are kept fp16 for good;
//   - the newest f.recent tokens are kept fp16; a token leaving that window
//     is quantized by the rule of f:
//       per-token     (int token, g<N>:dim, q8_0, q4_0, q4_1, iq4_nl, fp16,
//                      bf16): the token is quantized alone;
//       calibrated    (int tensor / channel, fp8, nvfp4): quantized alone
//                      with the per-sequence statistics calibrated on the
//                      prefill (the first Append of the layer; sink tokens
//                      excluded) and kept for every later token;
//       token-groups  (g<N>:token): fp16 residual until N tokens past the
//                      sink complete a group, then the group is quantized
//                      (KIVI).
//   - without a strategy (nullptr) the cache holds the float32 values as
//     computed (rule "exact").
// +prerope and +bias (K only) work as in kvq ppl: a token (or group) is
// quantized in the working basis of its absolute positions (RoPE undone,
// resp. R(p) b_k subtracted, with the layer's k_proj bias given to Append).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvq/model/config.h"
#include "kvq/model/rope.h"
#include "kvq/quant/kernels.h"
#include "kvq/quant/strategy.h"

namespace kvq {

enum class AppendRule { kExact, kPerToken, kCalibrated, kTokenGroups };
const char* AppendRuleName(AppendRule rule);  // "exact", "per-token", "calibrated", "token-groups"
AppendRule RuleFor(const FormatSpec& format);

class QuantizedKvCache {
 public:
  // strategy: nullptr for an exact float32 cache. Validates the strategy
  // against the model's geometry; throws InputError.
  QuantizedKvCache(const ModelConfig& config, const Strategy* strategy);
  QuantizedKvCache(QuantizedKvCache&&) noexcept;
  ~QuantizedKvCache();

  // Appends `tokens` tokens of one layer: k and v token-major [tokens,
  // num_kv_heads * head_dim], post-RoPE, at positions [length(layer),
  // length(layer) + tokens). The layer's first append is the prefill and
  // calibrates the formats that need it (InputError when it leaves no token
  // to calibrate on). k_bias [num_kv_heads * head_dim]: the layer's k_proj
  // bias for +bias (null: the model has none, and +bias is a no-op as in
  // kvq ppl).
  void Append(int layer, const float* k, const float* v, int64_t tokens,
              const float* k_bias = nullptr);

  int64_t length(int layer) const;
  // [length(layer), head_dim]: the values attention reads.
  const float* Values(KvTensor tensor, int layer, int head) const;
  // Tokens held in the format (the others are fp16 or, for no strategy, fp32).
  int64_t QuantizedTokens(KvTensor tensor, int layer, int head) const;
  AppendRule Rule(KvTensor tensor, int layer, int head) const;

  // Bytes the cache holds now: per (tensor, layer, head), quantized tokens x
  // FormatCost(format without sink/recent).per_token + its per_sequence
  // constants + fp16 tokens x 2 head_dim (4 head_dim per token without a
  // strategy).
  double Bytes() const;

 private:
  struct Head;
  Head& At(KvTensor tensor, int layer, int head);
  const Head& At(KvTensor tensor, int layer, int head) const;

  // The RoPE table for +prerope / +bias, covering positions [0, end) with
  // end >= `positions` (grown by doubling).
  const RopeTable& RopeCovering(int64_t positions);

  int num_layers_ = 0, num_kv_heads_ = 0, head_dim_ = 0;
  RopeConfig rope_config_;
  std::unique_ptr<RopeTable> rope_;
  std::vector<Head> heads_;  // [tensor][layer][head]
};

}  // namespace kvq
