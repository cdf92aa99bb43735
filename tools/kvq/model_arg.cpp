#include "model_arg.h"

#include "hub_options.h"
#include "kvq/hub/hub.h"

namespace kvq::cli {

std::filesystem::path ModelArg::Resolve() const {
  return ResolveModel(model, CliHubOptions(offline));
}

void AddModelOptions(CLI::App& app, ModelArg& arg, const std::string& fallback) {
  auto* option = app.add_option("--model", arg.model,
                                "Model folder, or ORG/NAME[@REVISION] from the Hugging Face Hub");
  if (fallback.empty()) {
    option->required();
  } else {
    arg.model = fallback;
    option->capture_default_str();
  }
  app.add_flag("--offline", arg.offline,
               "Never touch the network (also HF_HUB_OFFLINE=1): use the cache or a folder");
}

}  // namespace kvq::cli
