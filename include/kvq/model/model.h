#pragma once
// A decoder-only transformer (Qwen2, Qwen3, Llama) run natively in float32.
//
// Weights stay memory-mapped in their stored dtype (F32, F16 or BF16). For a
// forward pass each layer's weights are widened into one reused float32
// arena just before the layer runs, so peak memory is one layer of float32
// weights plus the activations. The whole token stream goes through each
// layer at once (big GEMMs over blocks of rows); attention keeps prompts of
// chunk_len tokens apart. Decode steps (ForwardAt) read the stored weights
// directly instead (docs/generate.md). Memory per token: docs/long-context.md.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "kvq/common/huge_pages.h"
#include "kvq/model/config.h"
#include "kvq/model/safetensors.h"

namespace kvq {

// What a layer hook sees: one layer's post-RoPE Q and K and its V, token-major:
// q [tokens, num_heads * head_dim], k and v [tokens, num_kv_heads * head_dim]
// (row t holds heads 0..n-1 concatenated). A hook may rewrite k and v in
// place (the quantized-cache evaluation does); attention reads them after.
struct LayerKV {
  int layer = 0;
  int64_t tokens = 0;
  int64_t chunk_len = 0;
  float* q = nullptr;
  float* k = nullptr;
  float* v = nullptr;
  const float* k_bias = nullptr;  // [num_kv_heads * head_dim], null without bias.
};

// After attention and after the whole layer: attn [tokens, num_heads *
// head_dim] (the input of o_proj) and out [tokens, hidden] (the residual
// stream after the layer).
struct LayerOutputs {
  int layer = 0;
  int64_t tokens = 0;
  const float* attn = nullptr;
  const float* out = nullptr;
};

class LayerHook {
 public:
  virtual ~LayerHook() = default;
  virtual void OnKV(LayerKV& kv) = 0;
  virtual void OnOutputs(const LayerOutputs&) {}
};

// Attention over a KV cache, for incremental decoding (Model::ForwardAt). It
// receives one layer's post-RoPE q, k and v of the new tokens (token-major,
// as LayerKV; the tokens sit at positions [position, position + kv.tokens)
// of one sequence), keeps k and v in its cache, and writes attn [kv.tokens,
// num_heads * head_dim], the input of o_proj.
class CachedAttention {
 public:
  virtual ~CachedAttention() = default;
  virtual void Attend(const LayerKV& kv, int64_t position, float* attn) = 0;
};

class Model {
 public:
  // dir: a Hugging Face model folder (config.json, model.safetensors or an
  // index with shards). Every weight's presence, shape and dtype is checked.
  static Model Load(const std::filesystem::path& dir);

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelConfig& config() const { return config_; }
  const std::filesystem::path& dir() const { return store_.dir(); }

  // Runs every layer over `ids` cut into prompts of chunk_len tokens (a
  // multiple-of-chunk_len length is required). Calls hook (may be null) per
  // layer. When final_hidden is not null it receives model.norm(x):
  // [tokens, hidden]. `progress(layer_done)` is called after each layer.
  // Numerics guards: a weight holding NaN or Inf throws InputError naming
  // the tensor and element as it is widened; after every layer the residual
  // stream is scanned and a NaN or Inf throws RuntimeError naming the layer,
  // the token (prompt and position) and the value.
  void Forward(std::span<const int32_t> ids, int64_t chunk_len, LayerHook* hook,
               std::vector<float>* final_hidden, const std::function<void(int)>& progress = {});

  // Incremental decoding: runs `ids`, the tokens at positions [position,
  // position + ids.size()) of one sequence, through the same layer code as
  // Forward (RoPE at those absolute positions), with attention delegated to
  // `attention`, which holds the KV cache. The weight matrices are read as
  // stored (bf16 or f16 widened in registers: MatVec, one matrix-vector
  // product per token and matrix), never copied to float32: a decode step is
  // bound by the bytes of weights it reads. Each layer's matrices are scanned
  // for NaN and Inf on the first call.
  void ForwardAt(std::span<const int32_t> ids, int64_t position, CachedAttention& attention,
                 std::vector<float>* final_hidden);

  // logits = hidden . W_lm^T for `rows` rows of final hidden states:
  // hidden [rows, hidden_size] -> logits [rows, vocab_size]. One row (a
  // decode step) reads the stored head directly; more rows use a float32
  // copy of it (widened once and kept) and one GEMM.
  void Logits(const float* hidden, int64_t rows, float* logits);

  // Bytes of the forward pass's working buffers now allocated (the float32
  // layer arena, the activations and the RoPE table; not the mapped
  // weights, the lm_head copy or a hook's buffers): for T tokens in prompts
  // of L, about T x (2 hidden + 2 num_heads x head_dim + 2 num_kv_heads x
  // head_dim) floats plus terms that do not grow with T (docs/long-context.md).
  size_t ScratchBytes() const;

 private:
  Model() = default;
  struct Scratch;
  void Run(std::span<const int32_t> ids, int64_t chunk_len, int64_t position, LayerHook* hook,
           CachedAttention* cached, std::vector<float>* final_hidden,
           const std::function<void(int)>& progress);

  ModelConfig config_;
  TensorStore store_;
  std::unique_ptr<Scratch> scratch_;
  HugeVector<float> lm_head_;     // Widened lazily for GEMMs when the stored dtype is not F32.
  bool lm_head_checked_ = false;  // A head read in place (one row, or F32) is scanned once.
};

}  // namespace kvq
