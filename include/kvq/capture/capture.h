#pragma once
// Capture: run a model over a token stream and stream its post-RoPE Q, K and
// V, layer by layer, into a KV dump (see dump.h).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "kvq/model/model.h"
#include "kvq/model/safetensors.h"

namespace kvq {

struct CaptureOptions {
  int64_t chunk_len = 0;      // 0: the whole stream is one prompt.
  DType dtype = DType::kF16;  // F16 (what the reference dumps held) or F32.
  std::string model_name;     // Recorded in the metadata.
  std::string corpus;         // Recorded in the metadata.
  std::function<void(int layers_done)> progress;
};

// Writes the dump atomically: nothing appears at `out` unless it completes.
void Capture(Model& model, std::span<const int32_t> ids, const CaptureOptions& options,
             const std::filesystem::path& out);

}  // namespace kvq

namespace kvq {

// Reads {"input_ids": [...]} (the fixtures' format; a flat list of
// non-negative integers). Throws InputError naming the file and the entry.
std::vector<int32_t> ReadInputIdsJson(const std::filesystem::path& path);

}  // namespace kvq
