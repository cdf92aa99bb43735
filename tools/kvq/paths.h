#pragma once
// What a command reads, for CheckOutputs (include/kvq/common/io.h): every
// command lists its inputs and outputs before any work, so that no output
// overwrites an input and no two outputs share a file.
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "kvq/common/io.h"

namespace kvq::cli {

// The plan files named by a --strategy list ("strat1,plan:a.json;plan:b.json").
std::vector<PathArg> PlanInputs(const std::string& flag, const std::string& strategies);

// A flag value that must be a positive integer: its message says so in
// words (CLI::PositiveNumber prints the 300-digit double limit).
CLI::Validator PositiveInteger();

}  // namespace kvq::cli
