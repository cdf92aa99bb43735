#include "kvq/model/rope.h"

#include <cmath>
#include <numbers>

#include <nlohmann/json.hpp>

#include "kvq/common/error.h"
#include "kvq/common/json.h"

namespace kvq {

std::string RopeConfig::ToJson() const {
  nlohmann::json j = {{"theta", theta}, {"scaling", scaling}};
  if (scaling == "llama3") {
    j["factor"] = factor;
    j["low_freq_factor"] = low_freq_factor;
    j["high_freq_factor"] = high_freq_factor;
    j["original_max_position_embeddings"] = original_max_position;
  }
  return j.dump();
}

void RopeConfig::Validate(const std::string& where) const {
  if (!(theta >= 1 && theta <= 1e30)) {
    ThrowInput(
        "{}: rope theta {} is outside [1, 1e30] (a RoPE base must be at least 1 and its "
        "powers finite in float32)",
        where, theta);
  }
  if (scaling != "llama3") return;
  for (const auto& [name, value] : {std::pair{"factor", factor},
                                    {"low_freq_factor", low_freq_factor},
                                    {"high_freq_factor", high_freq_factor}}) {
    if (!(value > 0 && value <= 1e6)) {
      ThrowInput("{}: rope_scaling.{} {} is not a positive number up to 1e6", where, name, value);
    }
  }
  if (!(high_freq_factor > low_freq_factor)) {
    ThrowInput("{}: rope_scaling.high_freq_factor {} must be above low_freq_factor {}", where,
               high_freq_factor, low_freq_factor);
  }
  if (original_max_position <= 0 || original_max_position > (int64_t{1} << 40)) {
    ThrowInput(
        "{}: rope_scaling.original_max_position_embeddings {} is not a positive context "
        "length",
        where, original_max_position);
  }
}

RopeConfig RopeConfig::FromJson(const std::string& json, const std::string& where) {
  RopeConfig rope;
  try {
    const auto j = ParseJson(json, where);
    if (!j.is_object()) ThrowInput("{}: not a JSON object", where);
    if (!j.at("theta").is_number()) ThrowInput("{}: 'theta' is not a number", where);
    rope.theta = j.at("theta").get<double>();
    rope.scaling = j.value("scaling", "default");
    if (rope.scaling == "llama3") {
      rope.factor = j.at("factor").get<double>();
      rope.low_freq_factor = j.at("low_freq_factor").get<double>();
      rope.high_freq_factor = j.at("high_freq_factor").get<double>();
      // An integer, checked: converting a huge float would be undefined.
      const auto& max_position = j.at("original_max_position_embeddings");
      if (!max_position.is_number_integer()) {
        ThrowInput("{}: original_max_position_embeddings must be an integer", where);
      }
      rope.original_max_position = max_position.get<int64_t>();
    } else if (rope.scaling != "default") {
      ThrowInput("{}: rope scaling '{}' is not implemented (kvq knows default and llama3)", where,
                 Printable(rope.scaling, 40));
    }
  } catch (const nlohmann::json::exception& e) {
    ThrowInput("{}: malformed rope configuration: {}", where, JsonErrorText(e));
  }
  rope.Validate(where);
  return rope;
}

std::vector<float> RopeInverseFrequencies(const RopeConfig& rope, int head_dim) {
  KVQ_CHECK(head_dim > 0 && head_dim % 2 == 0);
  const int half = head_dim / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  const auto base = static_cast<float>(rope.theta);
  for (int i = 0; i < half; ++i) {
    // transformers: 1.0 / base ** (arange(0, dim, 2).float() / dim), in float32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[static_cast<size_t>(i)] = 1.0f / std::pow(base, exponent);
  }
  if (rope.scaling == "llama3") {
    // transformers' _compute_llama3_parameters, in float32 like the tensor ops there.
    const auto factor = static_cast<float>(rope.factor);
    const auto low = static_cast<float>(rope.low_freq_factor);
    const auto high = static_cast<float>(rope.high_freq_factor);
    const auto old_context = static_cast<float>(rope.original_max_position);
    const float low_freq_wavelen = old_context / low;
    const float high_freq_wavelen = old_context / high;
    for (float& f : inv_freq) {
      const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
      float scaled = wavelen > low_freq_wavelen ? f / factor : f;
      const float smooth = (old_context / wavelen - low) / (high - low);
      const float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
      const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
      f = medium ? smoothed : scaled;
    }
  }
  return inv_freq;
}

RopeTable::RopeTable(const RopeConfig& rope, int dim, int64_t positions) : head_dim(dim) {
  const auto inv_freq = RopeInverseFrequencies(rope, dim);
  const size_t half = inv_freq.size();
  cos.resize(static_cast<size_t>(positions) * half);
  sin.resize(cos.size());
  for (int64_t p = 0; p < positions; ++p) {
    for (size_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * inv_freq[i];
      cos[static_cast<size_t>(p) * half + i] = std::cos(angle);
      sin[static_cast<size_t>(p) * half + i] = std::sin(angle);
    }
  }
}

void ApplyRope(const RopeTable& table, float* x, int64_t rows, int64_t row_stride,
               int64_t first_position, bool inverse) {
  const int64_t half = table.head_dim / 2;
  KVQ_CHECK(first_position >= 0 &&
            (first_position + rows) * half <= static_cast<int64_t>(table.cos.size()));
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * row_stride;
    const float* c = table.cos.data() + (first_position + r) * half;
    const float* s = table.sin.data() + (first_position + r) * half;
    for (int64_t i = 0; i < half; ++i) {
      const float a = row[i];
      const float b = row[i + half];
      const float sn = inverse ? -s[i] : s[i];
      row[i] = a * c[i] - b * sn;
      row[i + half] = b * c[i] + a * sn;
    }
  }
}

}  // namespace kvq
