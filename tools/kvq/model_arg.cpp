#include "model_arg.h"

#include "kvq/common/error.h"

namespace kvq::cli {

std::filesystem::path ResolveModelArg(const std::string& model) {
  if (std::filesystem::is_directory(model)) return model;
  ThrowInput("--model {}: no such folder", model);
}

}  // namespace kvq::cli
