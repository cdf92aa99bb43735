// `kvq ppl`: perplexity and KL with the quantized KV cache inside the forward pass.
#include <chrono>
#include <cstdio>

#include "command.h"
#include "kvq/common/io.h"
#include "kvq/metrics/perplexity.h"
#include "model_arg.h"
#include "paths.h"
#include "perplexity_progress.h"
#include "token_source.h"

namespace kvq::cli {
namespace {

struct Options {
  ModelArg model;
  TokenSource source;
  std::string strategies, json, csv;
};

void Run(const Options& o) {
  const std::vector<Strategy> strategies = ParseStrategyList(o.strategies);
  const auto dir = o.model.Resolve();
  std::vector<PathArg> inputs = o.source.Inputs(dir);
  for (PathArg& plan : PlanInputs("--strategy", o.strategies)) inputs.push_back(std::move(plan));
  CheckOutputs({{"--json", o.json}, {"--csv", o.csv}}, inputs);
  const std::vector<int32_t> ids = o.source.Load(dir);
  Model model = Model::Load(dir);
  o.source.CheckPromptLength(model.config(), static_cast<int64_t>(ids.size()));
  const int passes = 1 + static_cast<int>(strategies.size());
  const auto start = std::chrono::steady_clock::now();
  const PerplexityReport report =
      EvaluatePerplexityWithProgress(model, ids, o.source.chunk_len, strategies);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf("%zu tokens in prompts of %lld; %lld next-token predictions\n", ids.size(),
              static_cast<long long>(report.chunk_len),
              static_cast<long long>(report.baseline.predictions));
  std::printf("%-36s %10s %10s %10s %11s %11s %8s\n", "strategy", "nll", "ppl", "delta_ppl",
              "kl_mean", "kl_max", "top1");
  std::printf("%-36s %10.5f %10.4f %10s %11s %11s %8s\n", "baseline (unquantized)",
              report.baseline.nll(), report.baseline.ppl(), "-", "-", "-", "-");
  bool any_calibrated = false;
  for (const auto& s : report.strategies) {
    any_calibrated |= s.calibrated;
    std::printf("%-36s %10.5f %10.4f %+10.4f %11.3e %11.3e %8.4f%s\n", s.strategy.c_str(),
                s.total.nll(), s.total.ppl(), s.total.ppl() - report.baseline.ppl(),
                s.total.kl_mean(), s.total.kl_max, s.total.top1(), s.calibrated ? " *" : "");
  }
  if (any_calibrated) {
    std::printf(
        "* sequence-global scales (int8:tensor, channel, fp8, nvfp4) calibrated on the "
        "baseline pass over the same text\n");
  }
  std::fprintf(stderr, "ppl: %d forward passes over %zu tokens in %.1f s\n", passes, ids.size(),
               seconds);
  if (!o.json.empty()) WriteTextFileAtomic(o.json, PerplexityJson(report));
  if (!o.csv.empty()) WriteTextFileAtomic(o.csv, PerplexityCsv(report));
}

Runner Setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  AddModelOptions(app, o->model);
  o->source.AddOptions(app);
  app.add_option("--strategy", o->strategies,
                 "Strategies, e.g. strat1,strat3 or k=int8:channel,v=int4:g32:token")
      ->required();
  app.add_option("--json", o->json, "Write the report as JSON");
  app.add_option("--csv", o->csv, "Write one row per (strategy, prompt) as CSV");
  return [o] { Run(*o); };
}

KVQ_COMMAND("ppl",
            "Perplexity and KL of the model with a quantized KV cache vs the unquantized run",
            Setup);

}  // namespace
}  // namespace kvq::cli
