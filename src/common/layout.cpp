#include "kvq/common/layout.h"

#include <algorithm>

namespace kvq {

// Each loop runs over its output's outer dimension, so every thread writes
// one contiguous range.
void ToHeadMajor(const float* x, int64_t tokens, int heads, int dim, float* out) {
#pragma omp parallel for schedule(static)
  for (int h = 0; h < heads; ++h) {
    for (int64_t t = 0; t < tokens; ++t) {
      std::copy_n(x + (t * heads + h) * dim, dim, out + (h * tokens + t) * dim);
    }
  }
}

void ToTokenMajor(const float* x, int64_t tokens, int heads, int dim, float* out) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      std::copy_n(x + (h * tokens + t) * dim, dim, out + (t * heads + h) * dim);
    }
  }
}

}  // namespace kvq
