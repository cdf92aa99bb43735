// Pinning the SIMD target: every supported target can be pinned and is then
// the one dispatch reports; unknown names are refused by name.
#include "kvq/common/simd_target.h"

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "kvq/common/error.h"
#include "test_util.h"

namespace kvq {
namespace {

// Highway's portable fallback: EMU128, or SCALAR where Highway avoids EMU128
// for a compiler bug (GCC before 12.3, e.g. Debian 12's GCC 12.2).
const std::string kFallback = hwy::TargetName(HWY_BASELINE_SCALAR);

TEST(SimdTarget, BestIsFirstAndPinningSelects) {
  const std::vector<std::string> targets = SimdTargets();
  ASSERT_FALSE(targets.empty());
  EXPECT_EQ(SimdTarget(), targets.front());
  // The portable fallback is supported everywhere and comes last, unless the
  // build leaves it out (KVQ_DISABLED_SIMD_TARGETS: CI's arm64 job).
  if ((HWY_TARGETS & HWY_BASELINE_SCALAR) != 0) {
    EXPECT_EQ(targets.back(), kFallback);
  }
  std::vector<std::string> seen;
  test::ForEachSimdTarget([&](const std::string& target) {
    EXPECT_EQ(SimdTarget(), target);
    seen.push_back(target);
  });
  EXPECT_EQ(seen, targets);
  EXPECT_EQ(SimdTarget(), targets.front());
}

TEST(SimdTarget, PinIsCaseInsensitiveAndRefusesUnknown) {
  const std::string weakest = SimdTargets().back();
  std::string lower = weakest;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  PinSimdTarget(lower);
  EXPECT_EQ(SimdTarget(), weakest);
  UnpinSimdTarget();
  try {
    PinSimdTarget("avx1024");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("avx1024"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(weakest), std::string::npos) << e.what();
  }
  EXPECT_EQ(SimdTarget(), SimdTargets().front());
}

// Runs where the environment names the SIMD targets the CPU must offer
// (KVQ_EXPECT_SIMD_TARGETS, comma-separated: scripts/test-arm64.sh sets it for
// each emulated CPU), so that a dispatch or detection regression cannot make
// the kernel tests silently cover fewer targets. Prints the targets.
TEST(SimdTarget, OffersTheExpectedTargets) {
  const std::vector<std::string> targets = SimdTargets();
  std::string list;
  for (const std::string& target : targets) list += (list.empty() ? "" : ", ") + target;
  std::cout << "SIMD targets: " << list << "\n";
  const char* expected = std::getenv("KVQ_EXPECT_SIMD_TARGETS");
  if (expected == nullptr) GTEST_SKIP() << "KVQ_EXPECT_SIMD_TARGETS is not set";
  std::istringstream names(expected);
  for (std::string name; std::getline(names, name, ',');) {
    EXPECT_NE(std::find(targets.begin(), targets.end(), name), targets.end())
        << name << " is not among " << list;
  }
}

}  // namespace
}  // namespace kvq
