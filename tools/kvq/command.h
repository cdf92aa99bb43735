#pragma once
// Each subcommand lives in its own cmd_*.cpp: it declares its flags on a
// CLI11 subcommand and returns the function that runs it. Commands register
// themselves with a static KVQ_COMMAND, so adding one touches no other file.
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace kvq::cli {

using Runner = std::function<void()>;
// Declares the flags of `app` (already named and described) and returns the
// function that runs the command once they are parsed.
using Setup = Runner (*)(CLI::App& app);

struct Command {
  const char* name;
  const char* description;
  Setup setup;
};

std::vector<Command>& Registry();

struct Registrar {
  explicit Registrar(Command command) { Registry().push_back(command); }
};

// True when stderr is a terminal: progress lines are drawn only then.
bool StderrIsTerminal();

}  // namespace kvq::cli

#define KVQ_COMMAND(name, description, setup)                 \
  static const ::kvq::cli::Registrar kvq_command_registrar_ { \
    { name, description, setup }                              \
  }
