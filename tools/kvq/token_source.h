#pragma once
// Where a command's tokens come from: --input-ids FILE.json, or --corpus
// NAME|PATH tokenized with the model's tokenizer.json (or --tokenizer), cut to
// --tokens; --chunk-len splits the stream into independent prompts.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kvq/common/io.h"
#include "kvq/model/config.h"

namespace kvq::cli {

struct TokenSource {
  std::string input_ids, corpus, tokenizer;
  int64_t tokens = 0;     // 0: all of --input-ids, or 4096 of a corpus.
  int64_t chunk_len = 0;  // 0: one prompt.

  // Declares the flags. `default_chunk_len` is shown as the default.
  void AddOptions(CLI::App& app, int64_t default_chunk_len = 0);
  std::vector<int32_t> Load(const std::filesystem::path& model_dir) const;
  // InputError naming --chunk-len or --tokens when the prompts of the
  // `loaded` tokens are longer than the model's max_position_embeddings.
  void CheckPromptLength(const ModelConfig& config, int64_t loaded) const;
  // The files this source reads (and the model folder), for CheckOutputs.
  std::vector<PathArg> Inputs(const std::filesystem::path& model_dir) const;
  // "corpus:wikitext" or "input_ids:FILE", for metadata.
  std::string Describe() const;
};

}  // namespace kvq::cli
