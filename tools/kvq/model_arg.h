#pragma once
// --model: a local Hugging Face folder.
#include <filesystem>
#include <string>

namespace kvq::cli {

std::filesystem::path ResolveModelArg(const std::string& model);

}  // namespace kvq::cli
