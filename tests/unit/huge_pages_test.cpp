#include "kvq/common/huge_pages.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>

namespace kvq {
namespace {

// Large buffers start on a 2 MiB boundary (where a huge page can back
// them), small ones come from operator new; both hold what is written.
TEST(HugePages, LargeVectorsAreHugePageAlignedAndUsable) {
  HugeVector<float> big((kHugePageThreshold / sizeof(float)) * 3 + 5, 1.5f);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(big.data()) % (std::uintptr_t{2} << 20), 0u);
  std::iota(big.begin(), big.end(), 0.0f);
  EXPECT_EQ(big.back(), static_cast<float>(big.size() - 1));

  HugeVector<float> small(100, 2.0f);
  EXPECT_EQ(std::accumulate(small.begin(), small.end(), 0.0f), 200.0f);

  // Growing across the threshold moves the data from one kind to the other.
  small.resize(big.size());
  EXPECT_EQ(small[99], 2.0f);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(small.data()) % (std::uintptr_t{2} << 20), 0u);
}

}  // namespace
}  // namespace kvq
