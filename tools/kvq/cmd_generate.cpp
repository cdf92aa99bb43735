// `kvq generate`: incremental decoding with a quantized KV cache, per
// strategy against the fp16-cache run of the same prompt.
#include <cstdio>
#include <memory>
#include <optional>

#include "command.h"
#include "kvq/capture/capture.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/generate/generate.h"
#include "kvq/tokenizer/corpus.h"
#include "kvq/tokenizer/tokenizer.h"
#include "model_arg.h"

namespace kvq::cli {
namespace {

struct Options {
  ModelArg model;
  std::string prompt, prompt_file, input_ids, corpus, tokenizer, strategies, json, csv;
  int64_t tokens = 0;
  int64_t max_new_tokens = 128;
  bool ignore_eos = false;
  SamplingOptions sampling;
};

std::optional<Tokenizer> LoadTokenizer(const Options& o, const std::filesystem::path& dir,
                                       bool required) {
  if (!o.tokenizer.empty()) return Tokenizer::Load(o.tokenizer);
  if (std::filesystem::exists(dir / "tokenizer.json")) return Tokenizer::Load(dir);
  if (required) ThrowInput("{}: no tokenizer.json; pass --tokenizer FILE", dir.string());
  return std::nullopt;
}

void Run(const Options& o) {
  const int sources =
      !o.prompt.empty() + !o.prompt_file.empty() + !o.input_ids.empty() + !o.corpus.empty();
  if (sources != 1) {
    ThrowInput("give exactly one of --prompt, --prompt-file, --input-ids and --corpus");
  }
  if (!o.corpus.empty() && o.tokens <= 0) ThrowInput("--corpus needs --tokens N");
  if (o.tokens > 0 && o.corpus.empty() && o.input_ids.empty()) {
    ThrowInput("--tokens applies to --corpus and --input-ids");
  }
  const std::vector<Strategy> strategies = ParseStrategyList(o.strategies);
  const auto dir = o.model.Resolve();
  const std::optional<Tokenizer> tokenizer = LoadTokenizer(o, dir, o.input_ids.empty());
  std::vector<int32_t> prompt;
  if (!o.input_ids.empty()) {
    prompt = ReadInputIdsJson(o.input_ids);
    if (o.tokens > 0) {
      if (static_cast<int64_t>(prompt.size()) < o.tokens) {
        ThrowInput("--input-ids {} holds {} tokens, fewer than --tokens {}", o.input_ids,
                   prompt.size(), o.tokens);
      }
      prompt.resize(static_cast<size_t>(o.tokens));
    }
  } else if (!o.corpus.empty()) {
    prompt = CorpusTokens(*tokenizer, o.corpus, o.tokens);
  } else {
    prompt = tokenizer->Encode(o.prompt.empty() ? ReadTextFile(o.prompt_file) : o.prompt);
  }
  if (prompt.empty()) ThrowInput("the prompt has no tokens");

  Model model = Model::Load(dir);
  const std::vector<int32_t> eos =
      o.ignore_eos ? std::vector<int32_t>{} : EosTokenIds(dir, model.config().vocab_size);
  const GenerateReport report =
      CompareGeneration(model, prompt, strategies, o.max_new_tokens, o.sampling,
                        tokenizer ? &*tokenizer : nullptr, eos);

  std::printf("%lld prompt tokens, %lld new tokens, %s\n",
              static_cast<long long>(report.prompt_tokens),
              static_cast<long long>(o.max_new_tokens),
              o.sampling.temperature > 0
                  ? fmt::format("sampling (temperature {}, top-p {}, seed {})",
                                o.sampling.temperature, o.sampling.top_p, o.sampling.seed)
                        .c_str()
                  : "greedy");
  std::printf("%-36s %7s %6s %8s %8s %11s %10s %12s\n", "strategy", "tokens", "stop", "diverge",
              "match", "kl_mean", "tok/s", "cache_bytes");
  auto line = [](const GenerateResult& r) {
    std::printf("%-36s %7zu %6s %8s %8.4f %11.3e %10.1f %12.0f\n", r.strategy.c_str(),
                r.tokens.size(), StopReasonName(r.stop),
                r.first_divergence ? std::to_string(*r.first_divergence).c_str() : "-",
                r.match_fraction, r.kl_mean, r.tokens_per_s, r.cache_bytes);
  };
  line(report.baseline);
  for (const auto& r : report.strategies) line(r);
  auto details = [](const GenerateResult& r) {
    std::printf("\n[%s] cache rules:", r.strategy.c_str());
    for (const auto& [format, rule] : r.rules) {
      std::printf(" %s=%s", format.c_str(), AppendRuleName(rule));
    }
    std::printf("\n");
    if (r.text) std::printf("%s\n", r.text->c_str());
  };
  details(report.baseline);
  for (const auto& r : report.strategies) details(r);
  if (!o.json.empty()) WriteTextFileAtomic(o.json, GenerateJson(report));
  if (!o.csv.empty()) WriteTextFileAtomic(o.csv, GenerateCsv(report));
}

Runner Setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  AddModelOptions(app, o->model);
  app.add_option("--prompt", o->prompt, "Prompt text (tokenized with the model's tokenizer)");
  app.add_option("--prompt-file", o->prompt_file, "Read the prompt text from a file");
  app.add_option("--input-ids", o->input_ids, "JSON file {\"input_ids\": [...]}");
  app.add_option("--corpus", o->corpus, "wikitext, c4, or a text file: its first --tokens ids");
  app.add_option("--tokens", o->tokens, "Prompt tokens from --corpus or --input-ids")
      ->check(CLI::PositiveNumber);
  app.add_option("--tokenizer", o->tokenizer,
                 "tokenizer.json or its folder (default: the model folder's)");
  app.add_option("--strategy", o->strategies, "Strategies, e.g. int8:token,k=int4:g32:token")
      ->required();
  app.add_option("--max-new-tokens", o->max_new_tokens,
                 "Most tokens to generate (fewer when the model emits its eos_token_id)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--ignore-eos", o->ignore_eos,
               "Do not stop at the model's eos_token_id: exactly --max-new-tokens tokens");
  app.add_option("--temperature", o->sampling.temperature, "0: greedy; else sample")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-p", o->sampling.top_p, "Nucleus sampling mass, (0, 1]")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", o->sampling.seed, "Sampling seed")->capture_default_str();
  app.add_option("--json", o->json, "Write the report as JSON");
  app.add_option("--csv", o->csv, "Write one row per strategy as CSV");
  return [o] { Run(*o); };
}

KVQ_COMMAND("generate",
            "Decode with a quantized KV cache; compare each strategy with the fp16-cache run",
            Setup);

}  // namespace
}  // namespace kvq::cli
