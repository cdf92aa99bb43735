#include "kvq/capture/capture.h"

#include <nlohmann/json.hpp>

#include "kvq/capture/dump.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/json.h"
#include "kvq/common/layout.h"

namespace kvq {
namespace {

class DumpHook : public LayerHook {
 public:
  DumpHook(DumpWriter& writer, const ModelConfig& config) : writer_(writer), config_(config) {}

  void OnKV(LayerKV& kv) override {
    auto head_major = [&](const float* x, int heads, std::vector<float>& out) {
      out.resize(static_cast<size_t>(kv.tokens * heads * config_.head_dim));
      ToHeadMajor(x, kv.tokens, heads, config_.head_dim, out.data());
    };
    head_major(kv.q, config_.num_heads, q_);
    head_major(kv.k, config_.num_kv_heads, k_);
    head_major(kv.v, config_.num_kv_heads, v_);
    std::span<const float> bias;
    if (kv.k_bias) {
      bias = {kv.k_bias, static_cast<size_t>(config_.num_kv_heads * config_.head_dim)};
    }
    writer_.WriteLayer(kv.layer, q_, k_, v_, bias);
  }

 private:
  DumpWriter& writer_;
  const ModelConfig& config_;
  std::vector<float> q_, k_, v_;  // Head-major: [heads, tokens, head_dim].
};

}  // namespace

void Capture(Model& model, std::span<const int32_t> ids, const CaptureOptions& options,
             const std::filesystem::path& out) {
  const ModelConfig& c = model.config();
  const auto tokens = static_cast<int64_t>(ids.size());
  const int64_t chunk_len = options.chunk_len > 0 ? options.chunk_len : tokens;
  if (tokens == 0) ThrowInput("capture: no tokens to run");
  if (tokens % chunk_len != 0) {
    ThrowInput("--chunk-len {} does not divide the {} tokens", chunk_len, tokens);
  }
  if (options.dtype != DType::kF16 && options.dtype != DType::kF32) {
    ThrowInput("--dtype must be f16 or f32");
  }
  DumpInfo info;
  info.model = options.model_name.empty() ? model.dir().string() : options.model_name;
  info.architecture = c.architecture;
  info.num_layers = c.num_layers;
  info.num_heads = c.num_heads;
  info.num_kv_heads = c.num_kv_heads;
  info.head_dim = c.head_dim;
  info.tokens = tokens;
  info.chunk_len = chunk_len;
  info.rope = c.rope;
  info.dtype = options.dtype;
  info.has_k_bias = c.qkv_bias;
  info.corpus = options.corpus;

  DumpWriter writer(out, info);
  writer.WriteInputIds(ids);
  DumpHook hook(writer, c);
  model.Forward(ids, chunk_len, &hook, nullptr, options.progress);
  writer.Commit();
}

}  // namespace kvq

namespace kvq {

std::vector<int32_t> ReadInputIdsJson(const std::filesystem::path& path) {
  nlohmann::json json;
  try {
    json = ParseJson(ReadTextFile(path), path.string());
  } catch (const nlohmann::json::exception& e) {
    ThrowInput("{}: not valid JSON: {}", path.string(), e.what());
  }
  if (!json.is_object() || !json.contains("input_ids") || !json["input_ids"].is_array()) {
    ThrowInput("{}: expected {{\"input_ids\": [...]}}", path.string());
  }
  std::vector<int32_t> ids;
  for (const auto& id : json["input_ids"]) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      ThrowInput("{}: input_ids[{}] = {} is not a token id", path.string(), ids.size(), id.dump());
    }
    ids.push_back(id.get<int32_t>());
  }
  if (ids.empty()) ThrowInput("{}: input_ids is empty", path.string());
  return ids;
}

}  // namespace kvq
