// Replays the fuzz targets' inputs through their entry points in the normal
// build: every crash input a fuzzer found (tests/data/fuzz-regressions/
// <target>/) and the seed corpora (fuzz/corpus/<target>/), which also keeps
// the harness itself compiling and running without clang.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>

#include "../../fuzz/entry_points.h"
#include "test_util.h"

namespace kvq {
namespace {

namespace fs = std::filesystem;

// Files of `dir` in name order (none when it does not exist).
std::vector<fs::path> Inputs(const fs::path& dir) {
  std::vector<fs::path> files;
  if (!fs::is_directory(dir)) return files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().filename() != "README.md") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

void Replay(const fs::path& root, bool need_inputs) {
  for (const fuzz::Target& target : fuzz::kTargets) {
    const std::vector<fs::path> files = Inputs(root / target.name);
    if (need_inputs) {
      EXPECT_FALSE(files.empty()) << "no seeds for " << target.name;
    }
    for (const fs::path& file : files) {
      SCOPED_TRACE(file.string());
      std::ifstream in(file, std::ios::binary);
      const std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in),
                                       std::istreambuf_iterator<char>()};
      EXPECT_NO_THROW(target.run(bytes));
    }
  }
}

TEST(FuzzRegression, CrashInputsAreRefusedCleanly) {
  Replay(test::DataDir() / "fuzz-regressions", false);
}

TEST(FuzzRegression, SeedsRunThroughTheEntryPoints) {
  Replay(test::DataDir() / "../../fuzz/corpus", true);
}

}  // namespace
}  // namespace kvq
