#pragma once
// The decoder architectures kvq runs, as data: Qwen2 (q/k/v bias), Llama
// (plain or llama3 RoPE, optional attention/MLP bias), Qwen3 (per-head
// RMSNorm on q and k before RoPE). Anything else is refused by name.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "kvq/model/rope.h"

namespace kvq {

struct ModelConfig {
  std::string architecture;  // e.g. "Qwen2ForCausalLM"
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int intermediate_size = 0;
  int vocab_size = 0;
  double rms_norm_eps = 1e-6;
  RopeConfig rope;
  bool tie_word_embeddings = false;
  std::string torch_dtype;
  // The longest sequence the model was trained for: positions 0..max - 1. 0
  // when config.json does not say.
  int64_t max_position_embeddings = 0;
  std::string source;  // Where the config was read (for messages).

  bool qkv_bias = false;  // Qwen2; Llama with attention_bias.
  bool o_bias = false;    // Llama with attention_bias.
  bool mlp_bias = false;  // Llama with mlp_bias.
  bool qk_norm = false;   // Qwen3.

  int group_size() const { return num_heads / num_kv_heads; }
  // InputError "<source>: N positions are more than the model's
  // max_position_embeddings M; <hint>" when a sequence of `positions` tokens
  // would run past the trained context (no check when the config states none).
  void CheckPositions(int64_t positions, std::string_view hint) const;
  // Throws InputError naming the file and key for anything missing,
  // inconsistent or not implemented.
  static ModelConfig Load(const std::filesystem::path& config_json);
  static ModelConfig Parse(const std::string& json_text, const std::string& where);
};

}  // namespace kvq
