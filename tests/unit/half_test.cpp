#include "kvq/common/half.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "test_util.h"

namespace kvq {
namespace {

// The compiler's own IEEE binary16 type, the independent reference: __fp16
// on AArch64 (IEEE format there; GCC 12 has _Float16 only in C on Arm),
// _Float16 elsewhere (GCC 12 on x86, clang 15).
#if defined(__aarch64__) && defined(__ARM_FP16_FORMAT_IEEE)
using NativeHalf = __fp16;
#else
using NativeHalf = _Float16;
#endif

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

// The lane form: every code, at an odd byte address (mapped files need not
// be aligned) and with a length that leaves a tail, bit for bit with
// HalfToFloat on every SIMD target; a NaN stays a NaN (F16C quiets a
// signalling one, as IEEE says).
TEST(Half, ArrayWideningIsExactForEveryCodeOnEveryTarget) {
  std::vector<uint16_t> codes(0x10000 + 1);
  for (uint32_t code = 0; code < 0x10000; ++code) codes[code] = static_cast<uint16_t>(code);
  std::vector<uint8_t> bytes(2 * codes.size() + 1);
  std::memcpy(bytes.data() + 1, codes.data(), 2 * codes.size());
  test::ForEachSimdTarget([&](const std::string&) {
    std::vector<float> got(codes.size() + 1, -1.0f);
    HalfToFloatArray(bytes.data() + 1, got.data(), static_cast<int64_t>(codes.size()));
    for (uint32_t i = 0; i < codes.size(); ++i) {
      const float want = HalfToFloat(codes[i]);
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan(got[i])) << "code " << codes[i];
      } else {
        ASSERT_EQ(FloatBits(got[i]), FloatBits(want)) << "code " << codes[i];
      }
    }
    EXPECT_EQ(got.back(), -1.0f) << "wrote past the end";
  });
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
