// `kvq capture`: run a model over tokens and dump post-RoPE Q, K and V.
#include <chrono>
#include <cstdio>

#include "command.h"
#include "kvq/capture/capture.h"
#include "kvq/common/error.h"
#include "model_arg.h"
#include "paths.h"
#include "progress.h"
#include "token_source.h"

namespace kvq::cli {
namespace {

struct Options {
  ModelArg model;
  TokenSource source;
  std::string out, dtype = "f16";
};

void Run(const Options& o) {
  const auto dir = o.model.Resolve();
  CheckOutputs({{"--out", o.out}}, o.source.Inputs(dir));
  const std::vector<int32_t> ids = o.source.Load(dir);
  Model model = Model::Load(dir);
  o.source.CheckPromptLength(model.config(), static_cast<int64_t>(ids.size()));
  CaptureOptions options;
  options.chunk_len = o.source.chunk_len;
  options.dtype = o.dtype == "f32" ? DType::kF32 : DType::kF16;
  options.model_name = o.model.model;
  options.corpus = o.source.Describe();
  const int layers = model.config().num_layers;
  Progress progress("capture", layers, "layers", static_cast<double>(ids.size()) / layers, "tok");
  options.progress = [&](int done) { progress.Update(done); };
  const auto start = std::chrono::steady_clock::now();
  Capture(model, ids, options, o.out);
  progress.Finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "capture: %zu tokens, %d layers -> %s (%.2f s, %.0f tok/s)\n", ids.size(),
               layers, o.out.c_str(), seconds, static_cast<double>(ids.size()) / seconds);
}

Runner Setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  AddModelOptions(app, o->model);
  o->source.AddOptions(app);
  app.add_option("--dtype", o->dtype, "Storage of Q, K, V in the dump")
      ->check(CLI::IsMember({"f16", "f32"}));
  app.add_option("--out", o->out, "Output .safetensors dump")->required();
  return [o] { Run(*o); };
}

KVQ_COMMAND("capture", "Run a model over tokens and dump post-RoPE Q, K, V per layer and head",
            Setup);

}  // namespace
}  // namespace kvq::cli
