#pragma once
// A KV dump: what `kvq capture` writes and every analysis reads. safetensors:
//   layers.{L}.q       [num_heads, tokens, head_dim]     post-RoPE Q (F16 or F32)
//   layers.{L}.k       [num_kv_heads, tokens, head_dim]  post-RoPE K, as cached
//   layers.{L}.v       [num_kv_heads, tokens, head_dim]  V, as cached
//   layers.{L}.k_bias  [num_kv_heads, head_dim] F32      k_proj bias (only for models with one)
//   input_ids          [tokens] I32
// and __metadata__ (DumpInfo below; every field is a string). The token
// stream is cut into independent prompts of chunk_len tokens: the position of
// token t is t % chunk_len, and attention never crosses prompts.
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "kvq/model/rope.h"
#include "kvq/model/safetensors.h"
#include "kvq/quant/quantize.h"

namespace kvq {

struct DumpInfo {
  std::string model;         // Name or path the dump was captured from.
  std::string architecture;  // e.g. Qwen2ForCausalLM
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int64_t tokens = 0;
  int64_t chunk_len = 0;  // Equals tokens when the stream is one prompt.
  RopeConfig rope;
  DType dtype = DType::kF16;  // Storage of q, k, v.
  bool has_k_bias = false;
  std::string corpus;  // Free text: where the tokens came from.

  int64_t num_chunks() const { return tokens / chunk_len; }
  int group_size() const { return num_heads / num_kv_heads; }
  std::map<std::string, std::string> ToMetadata() const;
  // Validates every field; throws InputError naming `where` and the field.
  static DumpInfo FromMetadata(const std::map<std::string, std::string>& metadata,
                               const std::string& where);
};

class KvDump {
 public:
  // Opens and validates (shapes of every tensor against the metadata).
  static KvDump Open(const std::filesystem::path& path);

  const DumpInfo& info() const { return info_; }
  const std::filesystem::path& path() const { return file_.path(); }

  // Widened to float32. Q: [num_heads, tokens, head_dim]; K, V:
  // [num_kv_heads, tokens, head_dim]; K bias: [num_kv_heads, head_dim] (empty
  // when the model has none). Throws InputError naming layer and head when
  // a value is NaN or Inf.
  void ReadQ(int layer, std::span<float> dst) const;
  void ReadK(int layer, std::span<float> dst) const;
  void ReadV(int layer, std::span<float> dst) const;
  std::vector<float> ReadKBias(int layer) const;
  std::vector<int32_t> InputIds() const;

  const TensorView& Tensor(const std::string& name) const { return file_.Get(name); }

 private:
  void Read(int layer, const char* which, int heads, std::span<float> dst) const;

  SafeTensorsFile file_;
  DumpInfo info_;
};

// Streams a dump layer by layer (input_ids first, then layers in order).
class DumpWriter {
 public:
  DumpWriter(const std::filesystem::path& path, const DumpInfo& info);

  void WriteInputIds(std::span<const int32_t> ids);
  // q: [num_heads, tokens, head_dim]; k, v: [num_kv_heads, tokens, head_dim];
  // k_bias: [num_kv_heads, head_dim], required iff info.has_k_bias.
  void WriteLayer(int layer, std::span<const float> q, std::span<const float> k,
                  std::span<const float> v, std::span<const float> k_bias);
  void Commit();

 private:
  void WriteFloats(const std::string& name, std::span<const float> values, DType dtype);

  DumpInfo info_;
  SafeTensorsWriter writer_;
  std::vector<uint8_t> scratch_;
};

// The quantizer's context for one layer of a dump: geometry, chunk_len and
// the RoPE table from its info; the layer's k bias from KvDump::ReadKBias
// (may be empty). The table is the same for every layer: pass the first
// context's `rope` to the others to build it once (it costs chunk_len *
// head_dim sin/cos).
LayerContext DumpLayerContext(const DumpInfo& info, std::vector<float> k_bias = {},
                              std::shared_ptr<const RopeTable> rope = nullptr);

}  // namespace kvq
