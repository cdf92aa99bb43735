// FastExp against std::exp: max ULP over a dense sweep of its domain, and its
// documented edges.
#include "kvq/common/fast_math.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "test_util.h"

namespace kvq {
namespace {

int64_t UlpDistance(float a, float b) {
  // Both positive here: the bit patterns are ordered like the values.
  return std::abs(static_cast<int64_t>(std::bit_cast<int32_t>(a)) -
                  static_cast<int64_t>(std::bit_cast<int32_t>(b)));
}

TEST(FastExpTest, MaxUlpOverDomain) {
  // Every 2^-12-spaced point of [kFastExpMin, kFastExpMax] plus a sweep of
  // small arguments where exp is near 1.
  std::vector<float> xs;
  for (double x = kFastExpMin; x <= kFastExpMax; x += 1.0 / 4096)
    xs.push_back(static_cast<float>(x));
  for (double x = -1e-3; x <= 1e-3; x += 1e-7) xs.push_back(static_cast<float>(x));
  std::vector<float> got(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) got[i] = FastExp(xs[i]);  // The vectorised form.
  int64_t worst = 0;
  float worst_x = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const float want = static_cast<float>(std::exp(static_cast<double>(xs[i])));
    const int64_t ulp = UlpDistance(got[i], want);
    if (ulp > worst) {
      worst = ulp;
      worst_x = xs[i];
    }
  }
  EXPECT_LE(worst, 2) << "at x = " << worst_x;
}

TEST(FastExpTest, Edges) {
  EXPECT_EQ(FastExp(0.0f), 1.0f);
  EXPECT_EQ(FastExp(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(FastExp(std::nextafter(kFastExpMin, -1000.0f)), 0.0f);
  EXPECT_EQ(FastExp(-1000.0f), 0.0f);
  EXPECT_GT(FastExp(kFastExpMin), 0.0f);
  EXPECT_TRUE(std::isnormal(FastExp(kFastExpMin)));
  EXPECT_EQ(FastExp(1000.0f), FastExp(kFastExpMax));
  EXPECT_TRUE(std::isfinite(FastExp(std::numeric_limits<float>::infinity())));
}

TEST(SiluTest, MatchesDoubleReference) {
  // Relative error within 4e-7 (a few ULP: one FastExp, one add, one divide).
  for (double x = -80.0; x <= 80.0; x += 1.0 / 512) {
    const auto xf = static_cast<float>(x);
    const double want = xf / (1.0 + std::exp(-static_cast<double>(xf)));
    const float got = Silu(xf);
    EXPECT_LE(std::abs(got - want), 4e-7 * std::abs(want) + 1e-38) << "x = " << xf;
  }
  EXPECT_EQ(Silu(0.0f), 0.0f);
  EXPECT_EQ(Silu(200.0f), 200.0f);
  EXPECT_LE(std::abs(Silu(-200.0f)), 1e-30f);
}

// The array forms run FastExpLanes on each target: the same 2-ULP bound, the
// same edges, and a length that leaves a partial vector.
TEST(FastExpTest, ArrayFormOnEveryTarget) {
  std::vector<float> xs;
  for (double x = kFastExpMin; x <= kFastExpMax; x += 1.0 / 1024)
    xs.push_back(static_cast<float>(x));
  for (double x = -1e-3; x <= 1e-3; x += 1e-6) xs.push_back(static_cast<float>(x));
  xs.push_back(-std::numeric_limits<float>::infinity());
  xs.push_back(std::nextafter(kFastExpMin, -1000.0f));
  xs.push_back(1000.0f);
  const float shift = 0.5f;
  test::ForEachSimdTarget([&](const std::string&) {
    std::vector<float> got(xs.size() + 1, -1.0f);
    FastExpShifted(xs.data(), -shift, got.data(), static_cast<int64_t>(xs.size()));
    EXPECT_EQ(got.back(), -1.0f) << "wrote past the end";
    int64_t worst = 0;
    for (size_t i = 0; i + 3 < xs.size(); ++i) {
      const float arg = xs[i] + shift;
      if (arg < kFastExpMin || arg > kFastExpMax) continue;
      const float want = static_cast<float>(std::exp(static_cast<double>(arg)));
      worst = std::max(worst, UlpDistance(got[i], want));
    }
    EXPECT_LE(worst, 2);
    const size_t n = xs.size();
    EXPECT_EQ(got[n - 3], 0.0f);
    EXPECT_EQ(got[n - 2], FastExp(xs[n - 2] + shift));
    EXPECT_EQ(got[n - 1], FastExp(kFastExpMax));
  });
}

TEST(SiluTest, GateFormOnEveryTarget) {
  std::vector<float> gate, up;
  for (double x = -80.0; x <= 80.0; x += 1.0 / 64) {
    gate.push_back(static_cast<float>(x));
    up.push_back(static_cast<float>(1.0 + x / 1000));
  }
  gate.push_back(200.0f);
  up.push_back(1.0f);
  test::ForEachSimdTarget([&](const std::string&) {
    std::vector<float> g = gate;
    g.push_back(-1.0f);
    SiluGate(g.data(), up.data(), static_cast<int64_t>(gate.size()));
    EXPECT_EQ(g.back(), -1.0f) << "wrote past the end";
    for (size_t i = 0; i < gate.size(); ++i) {
      const double x = gate[i];
      const double want = x / (1.0 + std::exp(-x)) * up[i];
      ASSERT_LE(std::abs(g[i] - want), 5e-7 * std::abs(want) + 1e-38) << "x = " << x;
    }
  });
}

}  // namespace
}  // namespace kvq
