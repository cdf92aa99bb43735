#include "kvq/model/random_model.h"

#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvq/common/error.h"
#include "kvq/common/half.h"
#include "kvq/common/io.h"
#include "kvq/common/random.h"

namespace kvq {
namespace {

ModelConfig Qwen2(int hidden, int layers, int heads, int kv_heads, int intermediate, int vocab,
                  double theta, bool tied) {
  ModelConfig c;
  c.architecture = "Qwen2ForCausalLM";
  c.hidden_size = hidden;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.intermediate_size = intermediate;
  c.vocab_size = vocab;
  c.rms_norm_eps = 1e-6;
  c.rope.theta = theta;
  c.tie_word_embeddings = tied;
  c.qkv_bias = true;
  return c;
}

ModelConfig Llama(int hidden, int layers, int heads, int kv_heads, int head_dim, int intermediate,
                  int vocab, double theta, double eps) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.hidden_size = hidden;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.intermediate_size = intermediate;
  c.vocab_size = vocab;
  c.rms_norm_eps = eps;
  c.rope.theta = theta;
  c.tie_word_embeddings = true;
  return c;
}

ModelConfig Llama32() {
  ModelConfig c = Llama(2048, 16, 32, 8, 64, 8192, 128256, 500000.0, 1e-5);
  c.rope.scaling = "llama3";
  c.rope.factor = 32.0;
  c.rope.low_freq_factor = 1.0;
  c.rope.high_freq_factor = 4.0;
  c.rope.original_max_position = 8192;
  return c;
}

ModelConfig Qwen3(int hidden, int layers, int heads, int kv_heads, int head_dim, int intermediate,
                  int vocab) {
  ModelConfig c = Llama(hidden, layers, heads, kv_heads, head_dim, intermediate, vocab, 1e6, 1e-6);
  c.architecture = "Qwen3ForCausalLM";
  c.qk_norm = true;
  return c;
}

}  // namespace

const std::vector<ModelPreset>& ModelPresets() {
  static const std::vector<ModelPreset> presets = {
      {"qwen2.5-0.5b", "Qwen2.5-0.5B geometry",
       Qwen2(896, 24, 14, 2, 4864, kQwenVocabSize, 1e6, true)},
      {"tiny", "2-layer Qwen2 with the Qwen vocabulary (runs real text in seconds)",
       Qwen2(64, 2, 4, 2, 128, kQwenVocabSize, 1e6, true)},
      {"qwen3-0.6b", "Qwen3-0.6B geometry", Qwen3(1024, 28, 16, 8, 128, 3072, kQwenVocabSize)},
      {"tiny-qwen3", "2-layer Qwen3 with the Qwen vocabulary",
       Qwen3(64, 2, 4, 2, 32, 128, kQwenVocabSize)},
      {"llama-3.2-1b", "Llama-3.2-1B geometry (llama3 RoPE scaling)", Llama32()},
      {"smollm2-360m", "SmolLM2-360M geometry",
       Llama(960, 32, 15, 5, 64, 2560, 49152, 100000.0, 1e-5)},
  };
  return presets;
}

const ModelPreset& FindModelPreset(std::string_view name) {
  std::string known;
  for (const auto& preset : ModelPresets()) {
    if (name == preset.name) return preset;
    known += known.empty() ? preset.name : std::string(", ") + preset.name;
  }
  ThrowInput("unknown model preset '{}' (known: {})", name, known);
}

std::string ConfigJson(const ModelConfig& c) {
  nlohmann::ordered_json j;
  j["architectures"] = {c.architecture};
  j["attention_dropout"] = 0.0;
  if (c.architecture != "Qwen2ForCausalLM") {
    j["attention_bias"] = c.qkv_bias;
    j["head_dim"] = c.head_dim;
  }
  if (c.architecture == "LlamaForCausalLM") j["mlp_bias"] = c.mlp_bias;
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.hidden_size;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = c.intermediate_size;
  j["max_position_embeddings"] = c.max_position_embeddings > 0 ? c.max_position_embeddings
                                 : c.rope.scaling == "llama3"  ? 131072
                                                               : 32768;
  j["model_type"] = c.architecture == "Qwen2ForCausalLM"   ? "qwen2"
                    : c.architecture == "Qwen3ForCausalLM" ? "qwen3"
                                                           : "llama";
  j["num_attention_heads"] = c.num_heads;
  j["num_hidden_layers"] = c.num_layers;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["rms_norm_eps"] = c.rms_norm_eps;
  if (c.rope.scaling == "llama3") {
    j["rope_scaling"] = {{"factor", c.rope.factor},
                         {"high_freq_factor", c.rope.high_freq_factor},
                         {"low_freq_factor", c.rope.low_freq_factor},
                         {"original_max_position_embeddings", c.rope.original_max_position},
                         {"rope_type", "llama3"}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["rope_theta"] = c.rope.theta;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = c.torch_dtype.empty() ? "bfloat16" : c.torch_dtype;
  j["use_cache"] = true;
  j["use_sliding_window"] = false;
  j["vocab_size"] = c.vocab_size;
  return j.dump(2) + "\n";
}

void WriteRandomModel(const ModelConfig& config, uint64_t seed, DType dtype,
                      const std::filesystem::path& dir) {
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16) {
    ThrowInput("--dtype must be f32, f16 or bf16");
  }
  ModelConfig c = config;
  c.torch_dtype = dtype == DType::kF32 ? "float32" : dtype == DType::kF16 ? "float16" : "bfloat16";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) ThrowRuntime("{}: cannot create folder: {}", dir.string(), ec.message());

  enum class Init { kLinear, kBias, kNorm };
  struct Entry {
    TensorSpec spec;
    Init init;
  };
  std::vector<Entry> entries;
  const int64_t H = c.hidden_size, D = c.head_dim, I = c.intermediate_size, V = c.vocab_size;
  const int64_t nq = c.num_heads * D, nkv = c.num_kv_heads * D;
  auto add = [&](std::string name, std::vector<int64_t> shape, Init init) {
    entries.push_back({{std::move(name), dtype, std::move(shape)}, init});
  };
  add("model.embed_tokens.weight", {V, H}, Init::kLinear);
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    add(p + "input_layernorm.weight", {H}, Init::kNorm);
    add(p + "self_attn.q_proj.weight", {nq, H}, Init::kLinear);
    add(p + "self_attn.k_proj.weight", {nkv, H}, Init::kLinear);
    add(p + "self_attn.v_proj.weight", {nkv, H}, Init::kLinear);
    if (c.qkv_bias) {
      add(p + "self_attn.q_proj.bias", {nq}, Init::kBias);
      add(p + "self_attn.k_proj.bias", {nkv}, Init::kBias);
      add(p + "self_attn.v_proj.bias", {nkv}, Init::kBias);
    }
    if (c.qk_norm) {
      add(p + "self_attn.q_norm.weight", {D}, Init::kNorm);
      add(p + "self_attn.k_norm.weight", {D}, Init::kNorm);
    }
    add(p + "self_attn.o_proj.weight", {H, nq}, Init::kLinear);
    if (c.o_bias) add(p + "self_attn.o_proj.bias", {H}, Init::kBias);
    add(p + "post_attention_layernorm.weight", {H}, Init::kNorm);
    add(p + "mlp.gate_proj.weight", {I, H}, Init::kLinear);
    add(p + "mlp.up_proj.weight", {I, H}, Init::kLinear);
    add(p + "mlp.down_proj.weight", {H, I}, Init::kLinear);
    if (c.mlp_bias) {
      add(p + "mlp.gate_proj.bias", {I}, Init::kBias);
      add(p + "mlp.up_proj.bias", {I}, Init::kBias);
      add(p + "mlp.down_proj.bias", {H}, Init::kBias);
    }
  }
  add("model.norm.weight", {H}, Init::kNorm);
  if (!c.tie_word_embeddings) add("lm_head.weight", {V, H}, Init::kLinear);

  std::vector<TensorSpec> specs;
  specs.reserve(entries.size());
  for (const auto& e : entries) specs.push_back(e.spec);
  SafeTensorsWriter writer(dir / "model.safetensors", specs, {{"format", "pt"}});
  std::vector<uint8_t> bytes;
  const size_t element = DTypeSize(dtype);
  for (size_t index = 0; index < entries.size(); ++index) {
    const Entry& e = entries[index];
    int64_t numel = 1;
    for (int64_t d : e.spec.shape) numel *= d;
    bytes.resize(static_cast<size_t>(numel) * element);
    // Blocks of 64 Ki values, each with its own stream: thread-count independent.
    constexpr int64_t kBlock = 1 << 16;
    const int64_t blocks = (numel + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      SplitMix64 rng(seed * 0x100000001B3ull + index * 0x9E3779B97F4A7C15ull +
                     static_cast<uint64_t>(b));
      const int64_t begin = b * kBlock, end = std::min(numel, begin + kBlock);
      std::vector<float> values(static_cast<size_t>(end - begin));
      switch (e.init) {
        case Init::kLinear:
          rng.FillNormal(values, 0.02);
          break;
        case Init::kBias:
          rng.FillNormal(values, 0.5);
          break;
        case Init::kNorm:
          for (float& value : values) value = static_cast<float>(rng.Uniform(0.5, 1.5));
          break;
      }
      uint8_t* dst = bytes.data() + static_cast<size_t>(begin) * element;
      for (const float value : values) {
        if (dtype == DType::kF32) {
          std::memcpy(dst, &value, 4);
        } else {
          const uint16_t bits = dtype == DType::kF16 ? FloatToHalf(value) : FloatToBf16(value);
          std::memcpy(dst, &bits, 2);
        }
        dst += element;
      }
    }
    writer.Write(e.spec.name, bytes.data(), bytes.size());
  }
  writer.Commit();
  WriteTextFileAtomic(dir / "config.json", ConfigJson(c));
}

}  // namespace kvq
