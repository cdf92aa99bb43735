#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <random>
#include <string_view>

#include "kvq/common/random.h"
#include "kvq/common/strings.h"

namespace kvq::test {

std::filesystem::path DataDir() { return KVQ_TEST_DATA; }
std::filesystem::path RepoDataDir() { return KVQ_REPO_DATA; }
std::filesystem::path KvqBinary() { return KVQ_BINARY; }

ScratchDir::ScratchDir() {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto candidate = std::filesystem::temp_directory_path() /
                     ("kvq-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    if (std::filesystem::create_directory(candidate)) {
      path_ = candidate;
      return;
    }
  }
  std::abort();
}

ScratchDir::~ScratchDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

CommandResult RunKvq(const std::string& args) {
  const std::string command = KvqBinary().string() + " " + args + " 2>&1";
  CommandResult result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    result.output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::vector<FormatSpec> TableExamples(const FormatTraits& row, bool variants) {
  std::vector<FormatSpec> specs;
  for (const std::string_view name : SplitFields(row.examples, ' ')) {
    const FormatSpec spec = FormatSpec::Parse(name);
    if (spec.kind != FormatKind::kInt || !variants) {
      specs.push_back(spec);
      continue;
    }
    for (const int bits : {8, 4, 3, 2}) {
      for (const Rounding rounding : {Rounding::kNearestEven, Rounding::kTrunc}) {
        FormatSpec variant = spec;
        variant.bits = bits;
        variant.rounding = rounding;
        specs.push_back(variant);
      }
    }
  }
  return specs;
}

// Roughly normal with standard deviation `sigma`: a centred sum of 4 uniforms.
std::vector<float> RandomValues(size_t n, uint64_t seed, float sigma) {
  std::vector<float> out(n);
  SplitMix64 rng(seed);
  for (auto& x : out) {
    double sum = 0;
    for (int i = 0; i < 4; ++i) sum += rng.Uniform();
    x = static_cast<float>((sum - 2.0) * std::sqrt(3.0) * sigma);
  }
  return out;
}

}  // namespace kvq::test
