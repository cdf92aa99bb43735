// `kvq bytes`: the KV-cache size table, bytes per token and the cache for a
// context length, per strategy, with per-sequence constants shown apart.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "command.h"
#include "kvq/capture/dump.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/model/config.h"
#include "kvq/quant/strategy.h"
#include "paths.h"

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

// The KV geometry from the model's config.json, through the one config
// parser every command shares (capture accepts exactly what this accepts).
KvGeometry GeometryFromConfig(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) ThrowInput("{}: no such folder", dir.string());
  const ModelConfig c = ModelConfig::Load(dir / "config.json");
  return {c.num_layers, c.num_kv_heads, c.head_dim};
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
      ->check(PositiveInteger());
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
    std::vector<Strategy> strategies = ParseStrategyList(o->strategies);
    if (o->strategies == kDefaultStrategies) {
      // The defaults are a menu: those that do not fit this geometry (a
      // group of 32 on head_dim 16) are left out, as kvq run does.
      std::erase_if(strategies, [&](const Strategy& s) {
        try {
          s.Validate(g);
          return false;
        } catch (const InputError&) {
          return true;
        }
      });
    }
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
