#include "kvq/common/half.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace kvq {
namespace {

uint16_t ReferenceHalf(float f) {
  const NativeHalf h = static_cast<NativeHalf>(f);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

TEST(Half, WideningIsExactForEveryCode) {
  for (uint32_t code = 0; code < 0x10000; ++code) {
    NativeHalf h;
    const auto bits = static_cast<uint16_t>(code);
    std::memcpy(&h, &bits, 2);
    const float expected = static_cast<float>(h);
    const float got = HalfToFloat(bits);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << code;
    } else {
      EXPECT_EQ(FloatBits(got), FloatBits(expected)) << code;
    }
  }
}

TEST(Half, NarrowingMatchesIeeeConversion) {
  // Every float whose low 12 bits are one of a few patterns covers all
  // exponents, ties, near-ties and the overflow and subnormal edges.
  for (uint32_t high = 0; high < (1u << 20); ++high) {
    for (uint32_t low : {0x000u, 0x001u, 0x7ffu, 0x800u, 0x801u, 0xfffu}) {
      const uint32_t bits = (high << 12) | low;
      const float f = BitsToFloat(bits);
      if (std::isnan(f)) continue;
      ASSERT_EQ(FloatToHalf(f), ReferenceHalf(f)) << std::hex << bits;
    }
  }
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::quiet_NaN()) & 0x7c00u, 0x7c00u);
}

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f808000u)), 0x3f80);  // tie, even stays
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f818000u)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f808001u)), 0x3f81);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(Bf16ToFloat(0x4049), BitsToFloat(0x40490000u));
}

}  // namespace
}  // namespace kvq
