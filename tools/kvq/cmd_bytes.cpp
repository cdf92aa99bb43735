// `kvq bytes`: the KV-cache size table, bytes per token and the cache for a
// context length, per strategy, with per-sequence constants shown apart.
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "command.h"
#include "kvq/capture/dump.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/quant/strategy.h"

namespace kvq::cli {
namespace {

// The presets plus every literature format, as whole-cache strategies.
constexpr const char* kDefaultStrategies =
    "fp16;strat1;strat2;strat3;bf16;fp8e4m3;fp8e5m2;int8:channel;"
    "k=int8:channel,v=int8:token;k=int4:g32:token,v=int4:g32:dim;"
    "k=int2:g32:token,v=int2:g32:dim;int4:g32:dim+had;q8_0;q4_0;q4_1;iq4_nl;nvfp4";

struct Options {
  std::string model, preset, kv;
  int64_t tokens = 4096;
  std::string strategies = kDefaultStrategies;
};

// The KV geometry from a Hugging Face config.json (the few fields it needs).
KvGeometry GeometryFromConfig(const std::filesystem::path& dir) {
  const auto path = dir / "config.json";
  try {
    const auto j = nlohmann::json::parse(ReadTextFile(path));
    const auto& c = j.contains("text_config") ? j.at("text_config") : j;
    // Every count a positive integer: no division by zero, no overflow.
    const auto positive = [&](const char* key) {
      const auto& value = c.at(key);
      if (!value.is_number_integer() || value.get<int64_t>() <= 0 ||
          value.get<int64_t>() > (1 << 30)) {
        ThrowInput("{}: '{}' must be a positive integer, got {}", path.string(), key, value.dump());
      }
      return value.get<int>();
    };
    const auto given = [&](const char* key) { return c.contains(key) && !c.at(key).is_null(); };
    const int heads = positive("num_attention_heads");
    const int kv_heads = given("num_key_value_heads") ? positive("num_key_value_heads") : heads;
    const int head_dim = given("head_dim") ? positive("head_dim") : positive("hidden_size") / heads;
    if (head_dim <= 0)
      ThrowInput("{}: hidden_size is smaller than num_attention_heads", path.string());
    return {positive("num_hidden_layers"), kv_heads, head_dim};
  } catch (const nlohmann::json::exception& e) {
    ThrowInput("{}: cannot read the model geometry: {}", path.string(), e.what());
  }
}

std::string Thousands(double v) {
  const bool integral = v == static_cast<double>(static_cast<int64_t>(v));
  std::string digits = fmt::format("{}", static_cast<int64_t>(v));
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  if (!integral)
    out += fmt::format("{:.2f}", v - static_cast<double>(static_cast<int64_t>(v))).substr(1);
  return out;
}

// printf rounds an exact tie to even (26.25 -> 26.2), as the reference's figures do.
std::string MiB(double mib) {
  char text[64];
  std::snprintf(text, sizeof text, "(%.1f MiB)", mib);
  return text;
}

Runner Setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* model = app.add_option("--model", o->model, "Model folder (reads config.json)");
  auto* preset = app.add_option("--preset", o->preset, "Known geometry: qwen2.5-0.5b");
  auto* kv = app.add_option("--kv", o->kv, "KV dump (its geometry and chunk length)");
  model->excludes(preset)->excludes(kv);
  preset->excludes(kv);
  app.add_option("--tokens", o->tokens, "Context length for the cache size (default 4096)")
      ->check(CLI::PositiveNumber);
  app.add_option("--strategy", o->strategies,
                 "Strategies (',' or ';' separated; default: presets and literature formats)");
  return [o] {
    KvGeometry g{24, 2, 64};  // Qwen2.5-0.5B, the default.
    int64_t prompt_len = o->tokens;
    std::string source = "qwen2.5-0.5b";
    if (!o->model.empty()) {
      g = GeometryFromConfig(o->model);
      source = o->model;
    } else if (!o->kv.empty()) {
      const KvDump dump = KvDump::Open(o->kv);
      g = {dump.info().num_layers, dump.info().num_kv_heads, dump.info().head_dim};
      prompt_len = dump.info().chunk_len;
      source = o->kv;
    } else if (!o->preset.empty() && o->preset != "qwen2.5-0.5b") {
      ThrowInput("--preset '{}' is not known (known: qwen2.5-0.5b)", o->preset);
    }
    const auto strategies = ParseStrategyList(o->strategies);
    for (const auto& s : strategies) s.Validate(g);
    std::printf("%s\n", fmt::format("{}: {} layers x {} kv heads x head_dim {}, {} tokens", source,
                                    g.num_layers, g.num_kv_heads, g.head_dim, o->tokens)
                            .c_str());
    std::printf("%-36s %12s %14s %8s %16s\n", "strategy", "bytes/token", "cache", "vs fp16",
                "per-sequence");
    const double fp16 = 2.0 * 2 * g.num_layers * g.num_kv_heads * g.head_dim;
    for (const auto& s : strategies) {
      const ByteCost c = s.Cost(g, prompt_len);
      // The cache counts per-token bytes; the constants are the last column.
      const double mib = c.per_token * static_cast<double>(o->tokens) / (1024.0 * 1024.0);
      std::printf("%s\n", fmt::format("{:<36} {:>12} {:>14} {:>7.1f}% {:>14} B", s.name,
                                      Thousands(c.per_token), MiB(mib), 100.0 * c.per_token / fp16,
                                      Thousands(c.per_sequence))
                              .c_str());
    }
  };
}

KVQ_COMMAND("bytes", "KV-cache bytes per token and cache size per strategy", Setup);

}  // namespace
}  // namespace kvq::cli
