#include "token_source.h"

#include <fmt/format.h>

#include "kvq/capture/capture.h"
#include "kvq/common/error.h"
#include "kvq/tokenizer/corpus.h"
#include "kvq/tokenizer/tokenizer.h"
#include "paths.h"

namespace kvq::cli {

void TokenSource::AddOptions(CLI::App& app, int64_t default_chunk_len) {
  chunk_len = default_chunk_len;
  auto* ids = app.add_option("--input-ids", input_ids, "JSON file {\"input_ids\": [...]}");
  auto* text = app.add_option("--corpus", corpus,
                              "wikitext, c4 (shipped), or a text / JSON-lines (.gz) file");
  ids->excludes(text);
  app.add_option("--tokenizer", tokenizer,
                 "tokenizer.json or its folder (default: the model folder's)");
  app.add_option("--tokens", tokens, "Tokens to use (default: all input ids, or 4096 of a corpus)")
      ->check(PositiveInteger());
  auto* chunk = app.add_option("--chunk-len", chunk_len,
                               "Split the stream into independent prompts of L tokens");
  chunk->check(PositiveInteger());
  if (default_chunk_len > 0) chunk->capture_default_str();
}

std::vector<int32_t> TokenSource::Load(const std::filesystem::path& model_dir) const {
  if (input_ids.empty() == corpus.empty())
    ThrowInput("give exactly one of --input-ids and --corpus");
  if (!input_ids.empty()) {
    std::vector<int32_t> ids = ReadInputIdsJson(input_ids);
    if (tokens > 0) {
      if (static_cast<int64_t>(ids.size()) < tokens) {
        ThrowInput("--input-ids {} holds {} tokens, fewer than --tokens {}", input_ids, ids.size(),
                   tokens);
      }
      ids.resize(static_cast<size_t>(tokens));
    }
    return ids;
  }
  const std::filesystem::path tokenizer_path =
      tokenizer.empty() ? model_dir : std::filesystem::path(tokenizer);
  if (tokenizer.empty() && !std::filesystem::exists(model_dir / "tokenizer.json")) {
    ThrowInput("{}: no tokenizer.json; pass --tokenizer FILE", model_dir.string());
  }
  const Tokenizer tok = Tokenizer::Load(tokenizer_path);
  return CorpusTokens(tok, corpus, tokens > 0 ? tokens : 4096);
}

void TokenSource::CheckPromptLength(const ModelConfig& config, int64_t loaded) const {
  if (chunk_len > 0) {
    config.CheckPositions(chunk_len, fmt::format("lower --chunk-len {}", chunk_len));
  } else {
    config.CheckPositions(loaded, fmt::format("the {} tokens are one prompt: split them with "
                                              "--chunk-len or use fewer (--tokens)",
                                              loaded));
  }
}

std::vector<PathArg> TokenSource::Inputs(const std::filesystem::path& model_dir) const {
  // Files first, the model folder (which stands for its files too) last, so
  // that a message names the flag that gave the file.
  std::vector<PathArg> inputs{{"--input-ids", input_ids}, {"--tokenizer", tokenizer}};
  if (!corpus.empty()) {
    try {
      inputs.push_back({"--corpus", CorpusFile(corpus)});
    } catch (const InputError&) {
      inputs.push_back({"--corpus", corpus});  // refused by name when it is read
    }
  }
  inputs.push_back({"--model", model_dir});
  return inputs;
}

std::string TokenSource::Describe() const {
  return input_ids.empty() ? "corpus:" + corpus : "input_ids:" + input_ids;
}

}  // namespace kvq::cli
