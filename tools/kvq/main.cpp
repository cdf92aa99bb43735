// kvq: the command-line front end. Exit codes: 0 success, 1 runtime failure,
// 2 bad usage or input.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <map>

#include "command.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/version.h"

namespace kvq::cli {

std::vector<Command>& Registry() {
  static std::vector<Command> commands;
  return commands;
}

bool StderrIsTerminal() { return ::isatty(STDERR_FILENO) == 1; }

}  // namespace kvq::cli

int main(int argc, char** argv) {
  kvq::InstallSignalHandlers();

  CLI::App app{"kvq: how far can a model's KV cache be compressed before attention breaks?"};
  app.set_version_flag("--version", kvq::kVersion);
  app.require_subcommand(1);

  auto& commands = kvq::cli::Registry();
  std::sort(commands.begin(), commands.end(),
            [](const auto& a, const auto& b) { return std::string(a.name) < b.name; });
  std::map<CLI::App*, kvq::cli::Runner> runners;
  for (const auto& command : commands) {
    CLI::App* sub = app.add_subcommand(command.name, command.description);
    runners[sub] = command.setup(*sub);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version print through CLI11; a usage error is one line
    // like every other error, with argv's control bytes escaped.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "kvq: error: %s (see kvq --help)\n", kvq::Printable(e.what()).c_str());
    return 2;
  }

  try {
    for (auto& [sub, run] : runners) {
      if (sub->parsed()) run();
    }
  } catch (const kvq::InputError& e) {
    std::fprintf(stderr, "kvq: error: %s\n", kvq::Printable(e.what()).c_str());
    return 2;
  } catch (const kvq::RuntimeError& e) {
    std::fprintf(stderr, "kvq: error: %s\n", kvq::Printable(e.what()).c_str());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "kvq: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvq: error: %s\n", kvq::Printable(e.what()).c_str());
    return 1;
  }
  return 0;
}
