#include "kvq/model/config.h"

#include <nlohmann/json.hpp>

#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/json.h"

namespace kvq {
namespace {

using Json = nlohmann::json;

// Upper bounds well past any released model, so that every loop over
// layers, heads or dimensions has a bound checked before it starts.
int64_t MaxCount(std::string_view key) {
  if (key == "num_hidden_layers") return 1024;
  if (key == "num_attention_heads" || key == "num_key_value_heads") return 1024;
  if (key == "head_dim") return 4096;
  if (key == "vocab_size") return int64_t{1} << 24;
  return int64_t{1} << 20;  // hidden_size, intermediate_size
}

int PositiveInt(const Json& config, const char* key, const std::string& where) {
  if (!config.contains(key)) ThrowInput("{}: missing '{}'", where, key);
  const Json& value = config[key];
  if (!value.is_number_integer() || value.get<int64_t>() <= 0) {
    ThrowInput("{}: '{}' must be a positive integer, got {}", where, key,
               Printable(value.dump(), 40));
  }
  if (value.get<int64_t>() > MaxCount(key)) {
    ThrowInput("{}: '{}' = {} is over kvq's limit of {}", where, key, value.get<int64_t>(),
               MaxCount(key));
  }
  return value.get<int>();
}

bool Flag(const Json& config, const char* key, bool fallback) {
  if (!config.contains(key) || config[key].is_null()) return fallback;
  return config[key].get<bool>();
}

RopeConfig ParseRope(const Json& config, const std::string& where) {
  RopeConfig rope;
  if (config.contains("rope_theta")) {
    if (!config["rope_theta"].is_number()) {
      ThrowInput("{}: 'rope_theta' must be a positive number", where);
    }
    rope.theta = config["rope_theta"].get<double>();
  }
  rope.Validate(where);
  if (!config.contains("rope_scaling") || config["rope_scaling"].is_null()) return rope;
  const Json& scaling = config["rope_scaling"];
  if (!scaling.is_object()) ThrowInput("{}: 'rope_scaling' is not an object", where);
  const std::string type = scaling.value("rope_type", scaling.value("type", std::string()));
  if (type == "default") return rope;
  if (type != "llama3") {
    ThrowInput("{}: rope_scaling type '{}' is not implemented (kvq runs plain RoPE and llama3)",
               where, type);
  }
  rope.scaling = "llama3";
  try {
    rope.factor = scaling.at("factor").get<double>();
    rope.low_freq_factor = scaling.at("low_freq_factor").get<double>();
    rope.high_freq_factor = scaling.at("high_freq_factor").get<double>();
    const Json& max_position = scaling.at("original_max_position_embeddings");
    if (!max_position.is_number_integer()) {
      ThrowInput("{}: rope_scaling.original_max_position_embeddings must be an integer", where);
    }
    rope.original_max_position = max_position.get<int64_t>();
  } catch (const Json::exception& e) {
    ThrowInput("{}: llama3 rope_scaling is incomplete: {}", where, e.what());
  }
  rope.Validate(where);
  return rope;
}

}  // namespace

ModelConfig ModelConfig::Load(const std::filesystem::path& config_json) {
  return Parse(ReadTextFile(config_json), config_json.string());
}

ModelConfig ModelConfig::Parse(const std::string& json_text, const std::string& where) {
  Json config;
  try {
    config = ParseJson(json_text, where);
  } catch (const Json::exception& e) {
    ThrowInput("{}: not valid JSON: {}", where, JsonErrorText(e));
  }
  if (!config.is_object()) ThrowInput("{}: not a JSON object", where);
  ModelConfig c;
  try {
    if (!config.contains("architectures") || !config["architectures"].is_array() ||
        config["architectures"].size() != 1 || !config["architectures"][0].is_string()) {
      ThrowInput("{}: 'architectures' must list exactly one architecture", where);
    }
    c.architecture = config["architectures"][0].get<std::string>();
    if (c.architecture == "Qwen2ForCausalLM") {
      c.qkv_bias = true;
    } else if (c.architecture == "Qwen3ForCausalLM") {
      c.qkv_bias = Flag(config, "attention_bias", false);
      c.o_bias = c.qkv_bias;
      c.qk_norm = true;
    } else if (c.architecture == "LlamaForCausalLM") {
      c.qkv_bias = Flag(config, "attention_bias", false);
      c.o_bias = c.qkv_bias;
      c.mlp_bias = Flag(config, "mlp_bias", false);
    } else {
      ThrowInput(
          "{}: architecture '{}' is not implemented (kvq runs Qwen2ForCausalLM, "
          "Qwen3ForCausalLM and LlamaForCausalLM)",
          where, c.architecture);
    }
    const std::string act = config.value("hidden_act", std::string("silu"));
    if (act != "silu") ThrowInput("{}: hidden_act '{}' is not implemented (only silu)", where, act);
    if (Flag(config, "use_sliding_window", false)) {
      ThrowInput("{}: use_sliding_window is true; kvq implements full causal attention only",
                 where);
    }
    if (config.contains("pretraining_tp") && config["pretraining_tp"] != 1) {
      ThrowInput("{}: pretraining_tp other than 1 is not implemented", where);
    }
    c.hidden_size = PositiveInt(config, "hidden_size", where);
    c.num_layers = PositiveInt(config, "num_hidden_layers", where);
    c.num_heads = PositiveInt(config, "num_attention_heads", where);
    c.num_kv_heads =
        config.contains("num_key_value_heads") && !config["num_key_value_heads"].is_null()
            ? PositiveInt(config, "num_key_value_heads", where)
            : c.num_heads;
    c.intermediate_size = PositiveInt(config, "intermediate_size", where);
    c.vocab_size = PositiveInt(config, "vocab_size", where);
    if (config.contains("head_dim") && !config["head_dim"].is_null()) {
      c.head_dim = PositiveInt(config, "head_dim", where);
    } else {
      if (c.hidden_size % c.num_heads != 0) {
        ThrowInput("{}: hidden_size {} is not divisible by num_attention_heads {}", where,
                   c.hidden_size, c.num_heads);
      }
      c.head_dim = c.hidden_size / c.num_heads;
    }
    if (c.num_heads % c.num_kv_heads != 0) {
      ThrowInput("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", where,
                 c.num_heads, c.num_kv_heads);
    }
    if (c.head_dim % 2 != 0)
      ThrowInput("{}: head_dim {} is odd; RoPE needs it even", where, c.head_dim);
    if (config.contains("rms_norm_eps")) {
      const Json& eps = config["rms_norm_eps"];
      if (!eps.is_number() || !(eps.get<double>() > 0 && eps.get<double>() < 1)) {
        ThrowInput("{}: 'rms_norm_eps' must be a number in (0, 1), got {}", where,
                   Printable(eps.dump(), 40));
      }
      c.rms_norm_eps = eps.get<double>();
    }
    c.tie_word_embeddings = Flag(config, "tie_word_embeddings", false);
    c.torch_dtype = config.value("torch_dtype", std::string("float32"));
    c.rope = ParseRope(config, where);
    if (config.contains("max_position_embeddings") &&
        !config["max_position_embeddings"].is_null()) {
      const Json& max = config["max_position_embeddings"];
      if (!max.is_number_integer() || max.get<int64_t>() <= 0) {
        ThrowInput("{}: 'max_position_embeddings' must be a positive integer, got {}", where,
                   Printable(max.dump(), 40));
      }
      c.max_position_embeddings = max.get<int64_t>();
    }
    c.source = where;
  } catch (const Json::exception& e) {
    ThrowInput("{}: unexpected value: {}", where, e.what());
  }
  return c;
}

void ModelConfig::CheckPositions(int64_t positions, std::string_view hint) const {
  if (max_position_embeddings > 0 && positions > max_position_embeddings) {
    ThrowInput("{}: {} positions are more than the model's max_position_embeddings {}; {}", source,
               positions, max_position_embeddings, hint);
  }
}

}  // namespace kvq
