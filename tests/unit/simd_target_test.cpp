// Pinning the SIMD target: every supported target can be pinned and is then
// the one dispatch reports; unknown names are refused by name.
#include "kvq/common/simd_target.h"

#include <gtest/gtest.h>

#include "kvq/common/error.h"
#include "test_util.h"

namespace kvq {
namespace {

TEST(SimdTarget, BestIsFirstAndPinningSelects) {
  const std::vector<std::string> targets = SimdTargets();
  ASSERT_FALSE(targets.empty());
  EXPECT_EQ(SimdTarget(), targets.front());
  // The portable scalar target is always compiled and supported.
  EXPECT_NE(std::find(targets.begin(), targets.end(), "EMU128"), targets.end());
  std::vector<std::string> seen;
  test::ForEachSimdTarget([&](const std::string& target) {
    EXPECT_EQ(SimdTarget(), target);
    seen.push_back(target);
  });
  EXPECT_EQ(seen, targets);
  EXPECT_EQ(SimdTarget(), targets.front());
}

TEST(SimdTarget, PinIsCaseInsensitiveAndRefusesUnknown) {
  PinSimdTarget("emu128");
  EXPECT_EQ(SimdTarget(), "EMU128");
  UnpinSimdTarget();
  try {
    PinSimdTarget("avx1024");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("avx1024"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("EMU128"), std::string::npos) << e.what();
  }
  EXPECT_EQ(SimdTarget(), SimdTargets().front());
}

}  // namespace
}  // namespace kvq
