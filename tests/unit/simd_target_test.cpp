// Pinning the SIMD target: every supported target can be pinned and is then
// the one dispatch reports; unknown names are refused by name.
#include "kvq/common/simd_target.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "kvq/common/error.h"
#include "test_util.h"

namespace kvq {
namespace {

TEST(SimdTarget, BestIsFirstAndPinningSelects) {
  const std::vector<std::string> targets = SimdTargets();
  ASSERT_FALSE(targets.empty());
  EXPECT_EQ(SimdTarget(), targets.front());
  // The portable scalar target (EMU128, or SCALAR where Highway's baseline
  // is that) is always compiled and supported, and the weakest.
  EXPECT_TRUE(targets.back() == "EMU128" || targets.back() == "SCALAR") << targets.back();
  std::vector<std::string> seen;
  test::ForEachSimdTarget([&](const std::string& target) {
    EXPECT_EQ(SimdTarget(), target);
    seen.push_back(target);
  });
  EXPECT_EQ(seen, targets);
  EXPECT_EQ(SimdTarget(), targets.front());
}

TEST(SimdTarget, PinIsCaseInsensitiveAndRefusesUnknown) {
  const std::string scalar = SimdTargets().back();
  std::string lower = scalar;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  PinSimdTarget(lower);
  EXPECT_EQ(SimdTarget(), scalar);
  UnpinSimdTarget();
  try {
    PinSimdTarget("avx1024");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("avx1024"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(scalar), std::string::npos) << e.what();
  }
  EXPECT_EQ(SimdTarget(), SimdTargets().front());
}

}  // namespace
}  // namespace kvq
