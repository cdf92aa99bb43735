#pragma once
// Rotary position embeddings in the Hugging Face "rotate-half" convention:
// for position p and i < D/2, angle = p * inv_freq[i] is used for both
// dimensions i and i + D/2:
//   out[i]       = x[i] * cos - x[i + D/2] * sin
//   out[i + D/2] = x[i + D/2] * cos + x[i] * sin
// inv_freq[i] = 1 / theta^(2i / D), optionally rescaled per frequency by the
// llama3 rule. Like transformers, inv_freq, the angle and cos/sin are float32.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kvq {

struct RopeConfig {
  double theta = 10000.0;
  // "default" (plain RoPE) or "llama3".
  std::string scaling = "default";
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 1.0;
  int64_t original_max_position = 0;

  // The JSON the dumps carry in their metadata, and back.
  std::string ToJson() const;
  // `where` names the file (and field) the JSON came from, for messages.
  static RopeConfig FromJson(const std::string& json, const std::string& where = "rope");

  // Throws InputError "<where>: <field> ..." unless every value is in its
  // physical range: theta in [1, 1e30] (a float power of it is then finite
  // and non-zero), llama3 factors finite and positive, low < high, the
  // original context a positive integer.
  void Validate(const std::string& where) const;
};

// [head_dim / 2]
std::vector<float> RopeInverseFrequencies(const RopeConfig& rope, int head_dim);

// cos and sin tables for positions [0, positions): [positions, head_dim / 2] each.
struct RopeTable {
  int head_dim = 0;
  std::vector<float> cos, sin;
  RopeTable(const RopeConfig& rope, int head_dim, int64_t positions);
};

// Rotates `rows` vectors of length head_dim in place; row r of the block sits at
// x + r * row_stride and has position first_position + r. `inverse` undoes
// the rotation (rotation by -angle).
void ApplyRope(const RopeTable& table, float* x, int64_t rows, int64_t row_stride,
               int64_t first_position, bool inverse = false);

}  // namespace kvq
