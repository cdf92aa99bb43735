#pragma once
// Shared helpers for the tests: paths to test data and the kvq binary, a
// scratch directory per test, and running the CLI.
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kvq/common/simd_target.h"
#include "kvq/quant/kernels.h"

namespace kvq::test {

// Runs body(target) once per SIMD target this CPU supports, each pinned in
// turn (best first), so that the AVX2, SSE4 and scalar paths are tested on
// an AVX-512 machine too; a failure names the target. Dispatch is back to
// the best target afterwards.
template <class Body>
void ForEachSimdTarget(Body&& body) {
  for (const std::string& target : SimdTargets()) {
    PinSimdTarget(target);
    SCOPED_TRACE("SIMD target " + target);
    body(target);
  }
  UnpinSimdTarget();
}

// True when the tests run under an emulator: the arm64 cross build runs the
// kernel tests under qemu-user (its ctest preset sets KVQ_TEST_EMULATED=1),
// where they took 6 to 30 times as long as natively (measured on the
// project's 2-core machine), and `make test-arm64` runs them twice. An
// exhaustive sweep (every float of a binade, every significand) that would
// take minutes there may then test an evenly spread subset plus the edges;
// native runs stay exhaustive.
inline bool Emulated() {
  const char* value = std::getenv("KVQ_TEST_EMULATED");
  return value != nullptr && *value != '\0' && std::string(value) != "0";
}

std::filesystem::path DataDir();      // tests/data
std::filesystem::path RepoDataDir();  // data/
std::filesystem::path KvqBinary();    // the kvq CLI of this build

// A fresh, empty directory under the system temp folder, removed on scope exit.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `kvq <args>` through the shell and captures its output.
CommandResult RunKvq(const std::string& args);

// A parameterized test's name from a fixture path: every character but a
// letter or digit becomes '_' ("qwen2-tiny/tied-bf16" -> "qwen2_tiny_tied_bf16").
inline std::string FixtureTestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name;
}

// The formats a row of the format table (kernels.h) is tested with: its
// examples and, for kInt with `variants`, each also at 8, 4, 3 and 2 bits,
// with and without +trunc.
std::vector<FormatSpec> TableExamples(const FormatTraits& row, bool variants);

// Roughly normal with standard deviation `sigma`: a centred sum of 4 uniforms.
std::vector<float> RandomValues(size_t n, uint64_t seed, float sigma);

}  // namespace kvq::test
