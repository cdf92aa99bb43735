// Pinning the SIMD target: every supported target can be pinned and is then
// the one dispatch reports; unknown names are refused by name.
#include "kvq/common/simd_target.h"

#include <gtest/gtest.h>

#include <cctype>
#include <string>

#include "kvq/common/error.h"
#include "test_util.h"

namespace kvq {
namespace {

// The portable scalar target, always compiled and supported: EMU128, or
// SCALAR where Highway disables EMU128 (GCC before 12.3).
bool IsScalarFallback(const std::string& target) {
  return target == "EMU128" || target == "SCALAR";
}

TEST(SimdTarget, BestIsFirstAndPinningSelects) {
  const std::vector<std::string> targets = SimdTargets();
  ASSERT_FALSE(targets.empty());
  EXPECT_EQ(SimdTarget(), targets.front());
  EXPECT_TRUE(IsScalarFallback(targets.back())) << targets.back();
  std::vector<std::string> seen;
  test::ForEachSimdTarget([&](const std::string& target) {
    EXPECT_EQ(SimdTarget(), target);
    seen.push_back(target);
  });
  EXPECT_EQ(seen, targets);
  EXPECT_EQ(SimdTarget(), targets.front());
}

TEST(SimdTarget, PinIsCaseInsensitiveAndRefusesUnknown) {
  const std::string fallback = SimdTargets().back();
  ASSERT_TRUE(IsScalarFallback(fallback)) << fallback;
  std::string lower = fallback;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  PinSimdTarget(lower);
  EXPECT_EQ(SimdTarget(), fallback);
  UnpinSimdTarget();
  try {
    PinSimdTarget("avx1024");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("avx1024"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(fallback), std::string::npos) << e.what();
  }
  EXPECT_EQ(SimdTarget(), SimdTargets().front());
}

}  // namespace
}  // namespace kvq
