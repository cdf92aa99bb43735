// `kvq download --model ORG/NAME[@REVISION] [--offline]`: resolves the model
// in the Hugging Face cache, downloading what is missing, and prints the
// local folder that other commands (and transformers) can load.
#include <cstdio>
#include <memory>
#include <string>

#include "command.h"
#include "hub_options.h"
#include "kvq/hub/hub.h"

namespace kvq::cli {
namespace {

struct Flags {
  std::string model;
  bool offline = false;
};

Runner Setup(CLI::App& app) {
  auto flags = std::make_shared<Flags>();
  app.add_option("--model", flags->model, "Hugging Face model id ORG/NAME[@REVISION], or a folder")
      ->required();
  app.add_flag("--offline", flags->offline,
               "Never touch the network: use the cache only (as HF_HUB_OFFLINE=1)");
  return [flags] {
    const auto folder = ResolveModel(flags->model, CliHubOptions(flags->offline));
    std::printf("%s\n", folder.c_str());
  };
}

KVQ_COMMAND("download", "Download a Hugging Face model into the cache and print its folder", Setup);

}  // namespace
}  // namespace kvq::cli
