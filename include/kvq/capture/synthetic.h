#pragma once
// Synthetic KV dumps shaped like a real model's, for tests and benchmarks
// (deterministic: splitmix64 + Box-Muller, no std distributions).
//
// K = R(p) (k0 + b): k0 ~ N(0, 1) per channel with per-head scales, plus
// outlier channels in the heads of `outlier_heads` (layer 0 reaches
// max|K| ~ 130 like Qwen2.5-0.5B); b a k_proj bias when has_k_bias.
// V ~ N(0, 0.06^2) (max|V| ~ 0.3). Q ~ N(0, 1).
#include <cstdint>
#include <filesystem>
#include <utility>
#include <vector>

#include "kvq/capture/dump.h"

namespace kvq {

struct SyntheticDumpOptions {
  int num_layers = 24;
  int num_heads = 14;
  int num_kv_heads = 2;
  int head_dim = 64;
  int64_t tokens = 4096;
  int64_t chunk_len = 512;
  bool has_k_bias = true;
  uint64_t seed = 20250101;
  // (layer, kv head) pairs that get outlier channels in K.
  std::vector<std::pair<int, int>> outlier_heads = {{0, 0}, {0, 1}, {1, 1}, {2, 0}, {2, 1}, {8, 0}};

  DumpInfo Info() const;  // Qwen2-like metadata (rope theta 1e6, F16).
};

// K, V of one layer: [num_kv_heads, tokens, head_dim] each, and the k bias
// [num_kv_heads, head_dim] (empty without bias). Q is not generated here.
struct SyntheticLayer {
  std::vector<float> k, v, k_bias;
};
SyntheticLayer MakeSyntheticLayer(const SyntheticDumpOptions& options, int layer);

// Writes the whole dump (Q included) through DumpWriter.
void WriteSyntheticDump(const std::filesystem::path& path, const SyntheticDumpOptions& options);

}  // namespace kvq
