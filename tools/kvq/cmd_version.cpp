// `kvq version`: the version and the build's compute configuration.
#include <cstdio>

#include "command.h"
#include "kvq/version.h"

namespace kvq::cli {
namespace {

Runner Setup(CLI::App&) {
  return [] { std::printf("kvq %s\n", kVersion); };
}

KVQ_COMMAND("version", "Print the kvq version", Setup);

}  // namespace
}  // namespace kvq::cli
