// `kvq make-model`: a random-weight model folder of a real geometry.
#include <cstdio>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "command.h"
#include "kvq/common/error.h"
#include "kvq/model/random_model.h"
#include "kvq/tokenizer/corpus.h"

namespace kvq::cli {
namespace {

struct Options {
  std::string preset, dtype = "bf16", out;
  uint64_t seed = 0;
};

// The folder must not hold model files this command would not overwrite: a
// shard index or shards left from an older model would be loaded instead of
// (or mixed with) the new weights, an old tokenizer would not match the new
// vocabulary. Refused by name rather than deleted: they may be someone's.
void RefuseStaleModelFiles(const std::filesystem::path& out, bool writes_tokenizer) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  if (!fs::is_directory(out, ec)) ThrowInput("--out {}: exists and is not a folder", out.string());
  size_t entries = 0;
  for (fs::directory_iterator it(out, ec), end; !ec && it != end; it.increment(ec)) {
    if (++entries > 100000) break;
    const std::string name = it->path().filename().string();
    const bool stale = name == "model.safetensors.index.json" ||
                       (name.ends_with(".safetensors") && name != "model.safetensors") ||
                       (name == "tokenizer.json" && !writes_tokenizer);
    if (stale) {
      ThrowInput(
          "--out {}: holds {}, which is not part of the model make-model writes and would be "
          "loaded with it; remove it or choose an empty folder",
          out.string(), name);
    }
  }
}

Runner Setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  std::string presets;
  for (const auto& p : ModelPresets())
    presets += fmt::format("\n  {:<14} {}", p.name, p.description);
  app.add_option("--preset", o->preset, "Geometry:" + presets)->required();
  app.add_option("--seed", o->seed, "Random seed");
  app.add_option("--dtype", o->dtype, "Weight storage")
      ->check(CLI::IsMember({"bf16", "f16", "f32"}));
  app.add_option("--out", o->out, "Output folder")->required();
  return [o] {
    const ModelPreset& preset = FindModelPreset(o->preset);
    RefuseStaleModelFiles(o->out, preset.config.vocab_size == kQwenVocabSize);
    const DType dtype = o->dtype == "f32"   ? DType::kF32
                        : o->dtype == "f16" ? DType::kF16
                                            : DType::kBF16;
    WriteRandomModel(preset.config, o->seed, dtype, o->out);
    // Qwen-vocabulary models get the shipped Qwen2.5 tokenizer, which makes
    // the folder complete: it runs on real text.
    if (preset.config.vocab_size == kQwenVocabSize) {
      const auto tokenizer = DataDir() / "tokenizer/qwen2.5/tokenizer.json";
      std::filesystem::copy_file(tokenizer, std::filesystem::path(o->out) / "tokenizer.json",
                                 std::filesystem::copy_options::overwrite_existing);
    }
    std::fprintf(stderr, "make-model: %s (%s) -> %s\n", preset.name, o->dtype.c_str(),
                 o->out.c_str());
  };
}

KVQ_COMMAND("make-model", "Write a random-weight model folder with a real model's geometry", Setup);

}  // namespace
}  // namespace kvq::cli
