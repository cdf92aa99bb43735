// `kvq needle`: passkey retrieval at long context, per strategy against the
// fp16 cache, on the same prompts.
#include <cstdio>
#include <memory>

#include "command.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/generate/needle.h"
#include "kvq/tokenizer/tokenizer.h"
#include "model_arg.h"
#include "paths.h"
#include "progress.h"

namespace kvq::cli {
namespace {

struct Options {
  ModelArg model;
  std::string strategies, tokenizer, csv, json, svg;
  std::vector<int64_t> lengths;
  std::vector<double> depths = NeedleOptions{}.depths;
  int seeds = 3;
};

// 1024, 2048, ... up to the longest prompt that fits max_position_embeddings
// with its answer (and it, when it is not a power of two: 32,761 for a 32k
// model); 1024..4096 when the config does not give max_position_embeddings.
std::vector<int64_t> DefaultLengths(const ModelConfig& config) {
  const int64_t max_length = NeedleMaxLength(config, NeedleOptions{}.answer_tokens);
  const int64_t top = max_length > 0 ? max_length : 4096;
  std::vector<int64_t> lengths;
  for (int64_t n = 1024; n <= top; n *= 2) lengths.push_back(n);
  if (lengths.empty() || lengths.back() != top) lengths.push_back(top);
  return lengths;
}

void Run(const Options& o) {
  const std::vector<Strategy> strategies = ParseStrategyList(o.strategies);
  const auto dir = o.model.Resolve();
  std::vector<PathArg> inputs = PlanInputs("--strategy", o.strategies);
  inputs.push_back({"--tokenizer", o.tokenizer});
  CheckOutputs({{"--csv", o.csv}, {"--json", o.json}, {"--svg", o.svg}}, inputs);
  if (o.tokenizer.empty() && !std::filesystem::exists(dir / "tokenizer.json")) {
    ThrowInput(
        "{}: no tokenizer.json; kvq needle builds its prompts from text, so it needs the "
        "model's tokenizer: pass --tokenizer FILE",
        dir.string());
  }
  const Tokenizer tokenizer =
      Tokenizer::Load(o.tokenizer.empty() ? dir : std::filesystem::path(o.tokenizer));
  Model model = Model::Load(dir);
  NeedleOptions options;
  options.lengths = o.lengths.empty() ? DefaultLengths(model.config()) : o.lengths;
  options.depths = o.depths;
  options.seeds = o.seeds;
  const int64_t trials = static_cast<int64_t>(options.lengths.size() * options.depths.size()) *
                         options.seeds * static_cast<int64_t>(1 + strategies.size());
  Progress progress("needle", trials, "trials");
  const NeedleReport report = RunNeedle(model, tokenizer, strategies, options,
                                        [&](int64_t done, int64_t) { progress.Update(done); });
  progress.Finish();

  // Accuracy per strategy and length (over depths), then per cell in the CSV.
  std::printf("%-36s", "accuracy by length");
  for (int64_t length : options.lengths) std::printf(" %8lld", static_cast<long long>(length));
  std::printf("\n");
  for (const std::string& strategy : report.strategies) {
    std::printf("%-36s", strategy.c_str());
    for (int64_t length : options.lengths) {
      int correct = 0, total = 0;
      for (const NeedleCell& c : report.cells) {
        if (c.strategy == strategy && c.length == length) {
          correct += c.correct;
          total += c.trials;
        }
      }
      std::printf(" %8.3f", total > 0 ? static_cast<double>(correct) / total : 0.0);
    }
    std::printf("\n");
  }
  if (!o.csv.empty()) WriteTextFileAtomic(o.csv, NeedleCsv(report));
  if (!o.json.empty()) WriteTextFileAtomic(o.json, NeedleJson(report));
  if (!o.svg.empty()) {
    WriteTextFileAtomic(o.svg, NeedleHeatmapSvg(report, model.config().architecture));
  }
}

Runner Setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  AddModelOptions(app, o->model);
  app.add_option("--strategy", o->strategies, "Strategies, e.g. int8:token,k=int4:g32:token")
      ->required();
  app.add_option("--lengths", o->lengths,
                 "Prompt lengths in tokens (default: 1024, 2048, ... up to the longest prompt "
                 "whose answer fits the model's max_position_embeddings)")
      ->delimiter(',')
      ->check(PositiveInteger());
  app.add_option("--depths", o->depths, "Depths of the key in the filler, percent [0, 100]")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--seeds", o->seeds, "Trials per (length, depth) cell, each with its own key")
      ->capture_default_str()
      ->check(PositiveInteger());
  app.add_option("--tokenizer", o->tokenizer,
                 "tokenizer.json or its folder (default: the model folder's)");
  app.add_option("--csv", o->csv, "Write accuracy per (strategy, length, depth) as CSV");
  app.add_option("--json", o->json, "Write the cells and every trial as JSON");
  app.add_option("--svg", o->svg, "Write the accuracy heatmaps (one panel per strategy)");
  return [o] { Run(*o); };
}

KVQ_COMMAND("needle", "Passkey retrieval at long context: accuracy per strategy, length and depth",
            Setup);

}  // namespace
}  // namespace kvq::cli
