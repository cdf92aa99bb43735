// Token-major <-> head-major transposes against the index formula.
#include "kvq/common/layout.h"

#include <gtest/gtest.h>

#include <vector>

namespace kvq {
namespace {

TEST(Layout, TransposesMatchTheIndexFormulaAndRoundTrip) {
  constexpr int64_t kTokens = 37;
  constexpr int kHeads = 3, kDim = 5;
  std::vector<float> token_major(kTokens * kHeads * kDim);
  for (size_t i = 0; i < token_major.size(); ++i) token_major[i] = static_cast<float>(i);

  std::vector<float> head_major(token_major.size());
  ToHeadMajor(token_major.data(), kTokens, kHeads, kDim, head_major.data());
  for (int h = 0; h < kHeads; ++h) {
    for (int64_t t = 0; t < kTokens; ++t) {
      for (int d = 0; d < kDim; ++d) {
        ASSERT_EQ(head_major[(h * kTokens + t) * kDim + d],
                  token_major[(t * kHeads + h) * kDim + d])
            << "head " << h << " token " << t << " dim " << d;
      }
    }
  }

  std::vector<float> back(token_major.size());
  ToTokenMajor(head_major.data(), kTokens, kHeads, kDim, back.data());
  EXPECT_EQ(back, token_major);
}

}  // namespace
}  // namespace kvq
