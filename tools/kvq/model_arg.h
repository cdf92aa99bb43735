#pragma once
// --model for every command that runs a model: a local Hugging Face folder,
// or ORG/NAME[@REVISION] resolved in (and, unless offline, downloaded into)
// the Hugging Face cache.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>

namespace kvq::cli {

struct ModelArg {
  std::string model;
  bool offline = false;

  std::filesystem::path Resolve() const;
};

// Declares --model (required unless `fallback` is given) and --offline.
void AddModelOptions(CLI::App& app, ModelArg& arg, const std::string& fallback = "");

}  // namespace kvq::cli
