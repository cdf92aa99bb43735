#pragma once
// Random-weight models of real geometries, so kvq can be tried, tested and
// benchmarked without downloading weights.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "kvq/model/config.h"
#include "kvq/model/safetensors.h"

namespace kvq {

// The vocabulary size of Qwen2, Qwen2.5 and Qwen3 checkpoints (the tokenizer
// has 151,665 entries; the embedding is padded).
inline constexpr int kQwenVocabSize = 151936;

struct ModelPreset {
  const char* name;
  const char* description;
  ModelConfig config;
};

const std::vector<ModelPreset>& ModelPresets();
// Throws InputError listing the known presets.
const ModelPreset& FindModelPreset(std::string_view name);

// config.json text in the Hugging Face layout for `config`.
std::string ConfigJson(const ModelConfig& config);

// Writes config.json and model.safetensors into `dir` (created if needed).
// Linear and embedding weights ~ N(0, 0.02), biases ~ N(0, 0.5), norm
// weights ~ U(0.5, 1.5); each tensor has its own stream derived from `seed`,
// so the output does not depend on the thread count. dtype: F32, F16 or BF16.
void WriteRandomModel(const ModelConfig& config, uint64_t seed, DType dtype,
                      const std::filesystem::path& dir);

}  // namespace kvq
